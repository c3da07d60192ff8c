package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// Planted values: if any of them shows up where it must not, the test says
// which and where.
const (
	plantedEmail   = "Planted.Person+Privacy@Example.ORG"
	plantedIDFA    = "A1B2C3D4-1111-4222-8333-944455556666"
	plantedSecret  = "planted-app-secret-7f3a9c0d"
	plantedAccess  = "pina.planted-access-token-88e0b1"
	plantedRefresh = "pinr.planted-refresh-token-51d2c4"
)

// leakCheck looks for planted values in text, case-insensitively (a
// lowercased email is as much a leak as the original).
type leakCheck struct {
	t      *testing.T
	values map[string]string // lowercased value -> what it is
}

func (l *leakCheck) add(what, v string) {
	l.values[strings.ToLower(v)] = what
}

// none fails if text contains a planted value other than the allowed kinds.
func (l *leakCheck) none(where, text string, allowed ...string) {
	l.t.Helper()
	low := strings.ToLower(text)
	for v, what := range l.values {
		if strings.Contains(low, v) && !contains(allowed, what) {
			l.t.Errorf("%s contains the %s", where, what)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestPrivacyNoPlaintextIdentifierOrSecretLeaks(t *testing.T) {
	r := newSvcRig(t, 2, sandbox.Config{
		AppSecret: plantedSecret, RefreshToken: plantedRefresh, AccessToken: plantedAccess,
		AccessTokenTTL: time.Hour,
		Population:     []sandbox.User{{Type: "email", ID: plantedEmail}, {Type: "idfa", ID: plantedIDFA}},
	}, &oauth2.Token{AccessToken: plantedAccess, RefreshToken: plantedRefresh, TokenType: "bearer",
		Expiry: time.Now().Add(time.Hour), ExpiresIn: 3600})
	r.start()

	emailHash := hashHex(t, ident.Email, plantedEmail)
	idfaHash := hashHex(t, ident.IDFA, plantedIDFA)
	r.produce(
		segmentEntered("planted-profile", "vip", plantedEmail, plantedIDFA, nil),
		segmentEntered("other-profile", "vip", "someone.else@example.com", "", nil),
		segmentRecord("planted-profile", map[string]any{"type": "identify", "userId": "planted-profile",
			"traits": map[string]any{"email": strings.ToUpper(plantedEmail), "ios_idfa": strings.ToLower(plantedIDFA)}}),
		// Malformed (cut short) and carrying the email: it is dead-lettered.
		stream.Record{Key: []byte("planted-profile"), Value: []byte(`{"type":"identify","userId":"planted-profile","traits":{"email":"` + plantedEmail + `"`)},
	)
	waitFor(t, 20*time.Second, "the planted identifiers' hashes in the lists", func() bool {
		ls := r.lists()
		return contains(ls["pinsync vip EMAIL"].Records, emailHash) && contains(ls["pinsync vip IDFA"].Records, idfaHash)
	})
	r.waitAllCommitted()

	// Make the service refresh mid-run: the planted refresh token goes over
	// the wire and new tokens come back.
	r.sb.Revoke(sandbox.Revocation{AccessTokens: true})
	r.produce(segmentEntered("planted-profile", "vip2", plantedEmail, "", nil))
	waitFor(t, 20*time.Second, "the second audience's list", func() bool {
		return contains(r.lists()["pinsync vip2 EMAIL"].Records, emailHash)
	})
	r.waitAllCommitted()
	tok, err := pinterest.NewFileTokenStore(r.store.Path()).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == plantedRefresh {
		t.Fatal("no refresh happened; the test would not see the refresh request")
	}

	leaks := &leakCheck{t: t, values: map[string]string{}}
	leaks.add("email", plantedEmail)
	leaks.add("email (local part)", "planted.person+privacy")
	leaks.add("IDFA", plantedIDFA)
	leaks.add("app secret", plantedSecret)
	leaks.add("access token", plantedAccess)
	leaks.add("refresh token", plantedRefresh)
	leaks.add("access token", tok.AccessToken)
	leaks.add("refresh token", tok.RefreshToken)
	tokens := []string{"access token", "refresh token"}

	for _, path := range []string{"/metrics", "/status", "/", "/readyz", "/healthz"} {
		code, body := r.get(path)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", path, code)
		}
		leaks.none("GET "+path, body)
	}

	// Dead letters: only the headers are checked. The value of a dead
	// letter is the original record, unchanged, by design: it goes to a
	// topic with the same access controls as the input topic, so that an
	// operator can fix and replay it; its headers (reason, source) are
	// what tooling and dashboards read, and they must carry no value.
	dead := r.deadLetters()
	if len(dead) != 1 {
		t.Errorf("%d dead letters, want 1 (the malformed record)", len(dead))
	}
	for _, rec := range dead {
		if !strings.Contains(string(rec.Value), plantedEmail) {
			t.Errorf("dead letter value is not the original record: %q", rec.Value)
		}
		for _, h := range rec.Headers {
			leaks.none("dead-letter header "+h.Key, h.Key+"="+string(h.Value))
		}
	}

	// What went to Pinterest: identifiers only as hashes; tokens only in
	// the Authorization header and the token endpoint's request and
	// response bodies; the app secret only in the Authorization header
	// (HTTP Basic) of token requests.
	sawHash, sawBearer, sawRefreshBody := false, false, false
	for _, rq := range r.captured.all() {
		where := rq.Method + " " + rq.Path
		leaks.none(where+" URL", rq.Path+"?"+rq.RawQuery)
		for k, vs := range rq.Header {
			if http.CanonicalHeaderKey(k) == "Authorization" {
				sawBearer = sawBearer || contains(vs, "Bearer "+plantedAccess)
				continue
			}
			leaks.none(where+" header "+k, strings.Join(vs, "\n"))
		}
		if rq.Path == "/v5/oauth/token" {
			sawRefreshBody = sawRefreshBody || strings.Contains(string(rq.Body), "refresh_token="+plantedRefresh)
			leaks.none(where+" body", string(rq.Body), tokens...)
			leaks.none(where+" response", string(rq.Response), tokens...)
			continue
		}
		sawHash = sawHash || strings.Contains(string(rq.Body), emailHash)
		leaks.none(where+" body", string(rq.Body))
		leaks.none(where+" response", string(rq.Response))
	}
	if !sawHash || !sawBearer || !sawRefreshBody {
		t.Errorf("the capture missed traffic it must see: email hash in a body %t, planted bearer token %t, refresh with the planted token %t",
			sawHash, sawBearer, sawRefreshBody)
	}

	if err := r.stop(); err != nil {
		t.Errorf("service.Run: %v", err)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Error("the captured log has no debug lines; the check would be too weak")
	}
	leaks.none("the log", logs)
}

// deadLetters reads every committed record of the dead-letter topic (dead
// letters are written in transactions; the markers take offsets too).
func (r *svcRig) deadLetters() []*kgo.Record {
	r.t.Helper()
	return readTopic(r.t, r.brokers, r.cfg.Kafka.Group+".dlq", true)
}

func TestConsentWithdrawnRemovesProfileFromEveryAudience(t *testing.T) {
	r := newSvcRig(t, 2, sandbox.Config{}, nil)
	r.cfg.Sync.ConsentCategory = "advertising"
	r.start()

	const idfa = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
	yes := map[string]bool{"advertising": true, "analytics": true}
	r.produce(
		segmentEntered("withdrawer", "shoppers", "withdrawer@example.com", idfa, yes),
		segmentEntered("withdrawer", "travellers", "withdrawer@example.com", "", yes),
		segmentEntered("stayer", "shoppers", "stayer@example.com", "", yes),
	)
	gone, stays := hashHex(t, ident.Email, "withdrawer@example.com"), hashHex(t, ident.Email, "stayer@example.com")
	goneIDFA := hashHex(t, ident.IDFA, idfa)
	waitFor(t, 20*time.Second, "both audiences to be uploaded", func() bool {
		ls := r.lists()
		return contains(ls["pinsync shoppers EMAIL"].Records, gone) && contains(ls["pinsync shoppers EMAIL"].Records, stays) &&
			contains(ls["pinsync travellers EMAIL"].Records, gone) && contains(ls["pinsync shoppers IDFA"].Records, goneIDFA)
	})

	// The profile withdraws advertising consent in a plain identify.
	r.produce(segmentRecord("withdrawer", map[string]any{"type": "identify", "userId": "withdrawer",
		"traits":  map[string]any{"email": "withdrawer@example.com"},
		"context": map[string]any{"consent": map[string]any{"categoryPreferences": map[string]bool{"advertising": false, "analytics": true}}}}))
	waitFor(t, 20*time.Second, "the profile's hashes to leave every list", func() bool {
		for _, l := range r.lists() {
			if contains(l.Records, gone) || contains(l.Records, goneIDFA) {
				return false
			}
		}
		return true
	})
	r.waitAllCommitted()
	if !contains(r.lists()["pinsync shoppers EMAIL"].Records, stays) {
		t.Error("a profile that kept its consent left the list")
	}
	var st struct {
		Audiences []struct {
			Key          string `json:"key"`
			LocalMembers int    `json:"local_members"`
		} `json:"audiences"`
	}
	_, body := r.get("/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Audiences {
		want := map[string]int{"shoppers": 1, "travellers": 0}[a.Key]
		if a.LocalMembers != want {
			t.Errorf("audience %s has %d local members, want %d", a.Key, a.LocalMembers, want)
		}
	}
}
