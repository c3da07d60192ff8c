package pinterest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
)

func TestSecretIsRedactedEverywhere(t *testing.T) {
	const plain = "s3cr3t-app-secret"
	s := Secret(plain)
	cfg := Config{AppID: "1", AppSecret: s}
	var out strings.Builder
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s"} {
		fmt.Fprintf(&out, f+"\n", s)
		fmt.Fprintf(&out, f+"\n", cfg)
	}
	fmt.Fprintln(&out, s.String(), s.GoString())
	j, err := json.Marshal(struct{ AppSecret Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	logger := slog.New(slog.NewJSONHandler(&out, nil))
	logger.Info("x", "secret", s, "cfg", cfg)
	logger = slog.New(slog.NewTextHandler(&out, nil))
	logger.Info("x", "secret", s, "cfg", cfg)
	if strings.Contains(out.String(), plain) || strings.Contains(out.String(), fmt.Sprintf("%x", plain)) {
		t.Fatalf("secret leaked:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[REDACTED]") {
		t.Fatal("no placeholder printed")
	}
	if string(s) != plain {
		t.Fatal("the value itself is lost")
	}
}

func TestLogsHoldNoTokensSecretsOrRecords(t *testing.T) {
	sf := &savedFirst{saved: map[string]bool{}}
	e := newEnv(t, envOpts{
		sandbox: sandbox.Config{AccessTokenTTL: time.Hour},
		config: func(c *Config) {
			sf.TokenStore = c.TokenStore
			c.TokenStore = sf
		},
	})
	ctx := context.Background()
	recs := hashes("secret-record", 3)
	// Success, refresh, a 401 and its refresh, a client error, a
	// credentials rejection: every path that logs.
	l, err := e.client.CreateCustomerList(ctx, testAccount, "logged", ident.Email, recs)
	if err != nil {
		t.Fatal(err)
	}
	e.sb.Revoke(sandbox.Revocation{AccessTokens: true})
	if err := e.client.UpdateCustomerList(ctx, testAccount, l.ID, Remove, recs[:1]); err != nil {
		t.Fatal(err)
	}
	_ = e.client.UpdateCustomerList(ctx, testAccount, "1", Add, recs)
	e.clock.Advance(58 * time.Minute)
	e.sb.Revoke(sandbox.Revocation{AccessTokens: true, RefreshTokens: true})
	if _, err := e.client.AdAccounts(ctx); err == nil {
		t.Fatal("revoked credentials accepted")
	}
	e.client.log.Info("config", "app_secret", e.client.cfg.AppSecret)

	logs := e.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) || !strings.Contains(logs, "refreshed") {
		t.Fatalf("expected debug and refresh logs; got:\n%s", logs)
	}
	planted := []string{sandbox.DefaultAppSecret, sandbox.DefaultRefreshToken}
	sf.mu.Lock()
	for at := range sf.saved {
		planted = append(planted, at)
	}
	sf.mu.Unlock()
	if tok, err := e.store.Load(ctx); err == nil {
		planted = append(planted, tok.RefreshToken, tok.AccessToken)
	}
	for _, h := range recs {
		planted = append(planted, h.String())
	}
	if len(planted) < 8 {
		t.Fatalf("only %d secrets planted", len(planted))
	}
	for _, p := range planted {
		if p != "" && strings.Contains(logs, p) {
			t.Errorf("log output contains a secret or record %.8s…", p)
		}
	}
}

func BenchmarkAppendUpdate(b *testing.B) {
	recs := hashes("bench", DefaultMaxRecords)
	buf := make([]byte, 0, DefaultMaxBytes)
	b.SetBytes(int64(len(appendUpdate(nil, Add, recs))))
	b.ReportAllocs()
	for b.Loop() {
		buf = appendUpdate(buf[:0], Add, recs)
	}
}

func BenchmarkDedupe(b *testing.B) {
	recs := hashes("bench", DefaultMaxRecords)
	var scratch []ident.Hash
	b.ReportAllocs()
	for b.Loop() {
		scratch = dedupe(recs, scratch[:0])
	}
}
