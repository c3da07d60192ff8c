package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
)

// authSandbox is a Pinterest sandbox over HTTP for the auth and accounts
// commands, and a token file path in a fresh directory.
type authSandbox struct {
	sb        *sandbox.Server
	url       string
	tokenPath string
}

func newAuthSandbox(t *testing.T, cfg sandbox.Config) *authSandbox {
	t.Helper()
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	return &authSandbox{sb: sb, url: srv.URL, tokenPath: filepath.Join(t.TempDir(), "token.json")}
}

// env is the environment a user would set: app credentials and token file.
func (s *authSandbox) env() func(string) string {
	m := map[string]string{
		"PINSYNC_PINTEREST_APP_ID":           sandbox.DefaultAppID,
		"PINSYNC_PINTEREST_APP_SECRET":       sandbox.DefaultAppSecret,
		"PINSYNC_PINTEREST_TOKEN_STORE_PATH": s.tokenPath,
	}
	return func(k string) string { return m[k] }
}

// authRun is one `pinsync auth` running in the background.
type authRun struct {
	consent  string // the printed consent URL
	redirect string // its redirect_uri
	state    string
	exit     chan int
	out, err *lockedBuffer
}

// startAuth runs `pinsync auth` and reads its output up to the consent URL.
func startAuth(t *testing.T, ctx context.Context, getenv func(string) string, args ...string) *authRun {
	t.Helper()
	pr, pw := io.Pipe()
	r := &authRun{exit: make(chan int, 1), out: &lockedBuffer{}, err: &lockedBuffer{}}
	sio := &stdio{In: strings.NewReader(""), Out: io.MultiWriter(pw, r.out), Err: r.err, Getenv: getenv}
	go func() {
		r.exit <- runAuth(ctx, sio, append([]string{"--listen", "127.0.0.1:0", "--no-browser"}, args...))
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "http") {
			r.consent = line
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if r.consent == "" {
		t.Fatalf("no consent URL printed; stdout %q, stderr %q", r.out.String(), r.err.String())
	}
	u, err := url.Parse(r.consent)
	if err != nil {
		t.Fatal(err)
	}
	r.redirect, r.state = u.Query().Get("redirect_uri"), u.Query().Get("state")
	return r
}

func (r *authRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.exit:
		return code
	case <-time.After(20 * time.Second):
		t.Fatalf("pinsync auth did not finish; stdout %q, stderr %q", r.out.String(), r.err.String())
		return -1
	}
}

func TestAuthStoresTokenFromConsentRedirect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newAuthSandbox(t, sandbox.Config{})
	run := startAuth(t, ctx, s.env(), "--base-url", s.url)

	u, _ := url.Parse(run.consent)
	q := u.Query()
	if u.String()[:len(s.url)] != s.url || u.Path != "/oauth/" {
		t.Errorf("consent URL %s is not the sandbox's /oauth/", run.consent)
	}
	if q.Get("scope") != "ads:read,ads:write" || q.Get("client_id") != sandbox.DefaultAppID || q.Get("response_type") != "code" {
		t.Errorf("consent URL query = %v; want scope ads:read,ads:write, the app id and response_type code", q)
	}
	if len(run.state) < 32 {
		t.Errorf("state %q is too short to be unguessable", run.state)
	}
	if !strings.HasPrefix(run.redirect, "http://localhost:") {
		t.Errorf("redirect_uri %q: want http://localhost:<port>/", run.redirect)
	}

	// The test plays the browser: the sandbox grants at once and redirects
	// to the listener, which the client follows.
	resp, err := http.Get(run.consent)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("browser landed on %d: %s", resp.StatusCode, page)
	}
	if code := run.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr %q", code, run.err.String())
	}

	fi, err := os.Stat(s.tokenPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	store := pinterest.NewFileTokenStore(s.tokenPath)
	tok, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("stored token lacks a part: access %t refresh %t expiry %v", tok.AccessToken != "", tok.RefreshToken != "", tok.Expiry)
	}
	out := run.out.String() + run.err.String()
	for _, secret := range []string{tok.AccessToken, tok.RefreshToken, sandbox.DefaultAppSecret} {
		if strings.Contains(out, secret) {
			t.Errorf("the command printed a secret: %q", out)
		}
	}
	if !strings.Contains(out, "expires") || !strings.Contains(out, s.tokenPath) {
		t.Errorf("success message lacks the expiry or the token file: %q", out)
	}

	// The stored refresh token works: with the access token gone, the
	// client refreshes from it, and Pinterest rotates it.
	firstRefresh := tok.RefreshToken
	if err := store.Save(ctx, &oauth2.Token{RefreshToken: firstRefresh, Expiry: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	pin, err := pinterest.New(pinterest.Config{BaseURL: s.url, AppID: sandbox.DefaultAppID,
		AppSecret: sandbox.DefaultAppSecret, TokenStore: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := pin.CheckWriteAccess(ctx, sandbox.DefaultAdAccountID); err != nil {
		t.Fatalf("API call with the refreshed token: %v", err)
	}
	after, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.RefreshToken == firstRefresh || after.AccessToken == "" {
		t.Errorf("no refresh happened: the stored refresh token did not rotate")
	}
	if n := s.sb.State().Requests.ByOperation["oauth/token"]; n != 2 {
		t.Errorf("token endpoint called %d times, want 2 (code exchange, refresh)", n)
	}
}

func TestAuthRejectsRedirectWithWrongState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newAuthSandbox(t, sandbox.Config{})
	run := startAuth(t, ctx, s.env(), "--base-url", s.url)

	// A redirect this run did not start: a real code from the sandbox, but
	// another state (as a forged link or a stale tab would carry).
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	forged := strings.Replace(run.consent, url.QueryEscape(run.state), "forged-state", 1)
	if forged == run.consent {
		t.Fatal("could not replace the state in the consent URL")
	}
	resp, err := noFollow.Get(forged)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.Contains(loc, "state=forged-state") {
		t.Fatalf("sandbox answered %d to %s", resp.StatusCode, loc)
	}
	resp, err = http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the listener answered %d to a wrong state, want 400", resp.StatusCode)
	}
	if code := run.wait(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if msg := run.err.String(); !strings.Contains(msg, "state does not match") {
		t.Errorf("stderr %q does not say the state did not match", msg)
	}
	if _, err := os.Stat(s.tokenPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a token was stored despite the wrong state (stat: %v)", err)
	}
	if n := s.sb.State().Requests.ByOperation["oauth/token"]; n != 0 {
		t.Errorf("the code was exchanged (%d token requests) despite the wrong state", n)
	}
}

func TestAuthReportsConsentDenied(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newAuthSandbox(t, sandbox.Config{})
	run := startAuth(t, ctx, s.env(), "--base-url", s.url)
	resp, err := http.Get(run.redirect + "?error=access_denied&error_description=The+user+declined&state=" + url.QueryEscape(run.state))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code := run.wait(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if msg := run.err.String(); !strings.Contains(msg, "access_denied") || !strings.Contains(msg, "The user declined") {
		t.Errorf("stderr %q does not relay the provider's error", msg)
	}
	if _, err := os.Stat(s.tokenPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a token was stored after a denial (stat: %v)", err)
	}
}

func TestAuthGivesUpAfterTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newAuthSandbox(t, sandbox.Config{})
	run := startAuth(t, ctx, s.env(), "--base-url", s.url, "--timeout", "50ms")
	if code := run.wait(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if msg := run.err.String(); !strings.Contains(msg, "no answer from the browser") {
		t.Errorf("stderr %q does not explain the timeout", msg)
	}
}

func TestAuthNeedsOnlyThePinterestSection(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pinsync.yaml")
	yaml := "pinterest:\n  app_id: \"42\"\n  app_secret_file: " + filepath.Join(dir, "secret") + "\n  token_store:\n    path: " + filepath.Join(dir, "tok.json") + "\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadPinterestConfig(cfgPath, func(string) string { return "" }, "http://127.0.0.1:1", "")
	pc := cfg.Pinterest
	if err != nil {
		t.Fatalf("a config with only the pinterest section was refused: %v", err)
	}
	if pc.AppID != "42" || pc.AppSecret != "s3cret" || pc.AuthURL != "http://127.0.0.1:1/oauth/" {
		t.Errorf("loaded %+v", pc)
	}

	var errb strings.Builder
	sio := &stdio{In: strings.NewReader(""), Out: io.Discard, Err: &errb, Getenv: func(string) string { return "" }}
	if code := runAuth(context.Background(), sio, []string{"--no-browser"}); code != 2 {
		t.Errorf("exit %d without app credentials, want 2", code)
	}
	for _, key := range []string{"pinterest.app_id", "pinterest.app_secret"} {
		if !strings.Contains(errb.String(), key) {
			t.Errorf("error %q does not name %s", errb.String(), key)
		}
	}
	if strings.Contains(errb.String(), "kafka") || strings.Contains(errb.String(), "ad_account_id") {
		t.Errorf("auth complained about settings it does not need: %q", errb.String())
	}
}
