package pinterest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/pinterest/sandbox"
)

// savedFirst is a TokenStore that remembers every access token saved, and
// middleware that fails any API call with an access token not saved yet.
type savedFirst struct {
	TokenStore
	mu     sync.Mutex
	saved  map[string]bool
	unsafe atomic.Int64 // API calls made with an unsaved token
}

func (s *savedFirst) Save(ctx context.Context, tok *oauth2.Token) error {
	if err := s.TokenStore.Save(ctx, tok); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved[tok.AccessToken] = true
	return nil
}

func (s *savedFirst) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			s.mu.Lock()
			if !s.saved[tok] {
				s.unsafe.Add(1)
			}
			s.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func TestRotatedRefreshTokenIsSavedBeforeUse(t *testing.T) {
	sf := &savedFirst{saved: map[string]bool{}}
	e := newEnv(t, envOpts{
		sandbox: sandbox.Config{RefreshGrace: -1, AccessTokenTTL: time.Hour},
		wrap:    sf.wrap,
		config: func(c *Config) {
			sf.TokenStore = c.TokenStore
			c.TokenStore = sf
		},
	})
	ctx := context.Background()
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatal(err)
	}
	tok1, err := e.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok1.RefreshToken == sandbox.DefaultRefreshToken || tok1.RefreshToken == "" {
		t.Fatalf("stored refresh token was not rotated")
	}
	if want := e.clock.Now().Add(time.Hour); !tok1.Expiry.Equal(want) {
		t.Errorf("expiry = %v, want %v (from expires_in and the client's clock)", tok1.Expiry, want)
	}
	if got := e.client.TokenExpiry(); !got.Equal(tok1.Expiry) {
		t.Errorf("TokenExpiry = %v, want %v", got, tok1.Expiry)
	}
	if got := value(t, e.client.m.tokenExpiry); got != float64(tok1.Expiry.Unix()) {
		t.Errorf("token expiry metric = %v", got)
	}

	// Rotate once more via expiry; the second rotated token is saved too.
	e.clock.Advance(56 * time.Minute)
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatal(err)
	}
	tok2, _ := e.store.Load(ctx)
	if tok2.RefreshToken == tok1.RefreshToken || tok2.AccessToken == tok1.AccessToken {
		t.Fatal("token was not refreshed ahead of expiry")
	}
	if n := e.sb.State().Requests.ByStatus["401"]; n != 0 {
		t.Errorf("%d 401s; a token due to expire must be refreshed before use", n)
	}
	if n := sf.unsafe.Load(); n != 0 {
		t.Fatalf("%d API calls used an access token before it was saved", n)
	}
	if got := value(t, e.client.m.refreshes.WithLabelValues("ok")); got != 2 {
		t.Errorf("refreshes ok = %v, want 2", got)
	}

	// The replaced refresh tokens no longer work.
	hctx := context.WithValue(ctx, oauth2.HTTPClient, e.srv.Client())
	for _, old := range []string{sandbox.DefaultRefreshToken, tok1.RefreshToken} {
		_, err := e.client.OAuth2Config("").TokenSource(hctx, &oauth2.Token{RefreshToken: old}).Token()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Errorf("old refresh token: err = %v, want invalid_grant", err)
		}
	}
}

func TestExpiredAccessTokenIsRefreshedOnceOn401(t *testing.T) {
	// The sandbox's clock runs ahead of the client's: the client believes
	// its token is fresh, Pinterest says it expired.
	sbClock := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	e := newEnv(t, envOpts{sandbox: sandbox.Config{AccessTokenTTL: time.Hour, Now: sbClock.Now}})
	ctx := context.Background()
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatal(err)
	}
	sbClock.Advance(2 * time.Hour)
	accts, err := e.client.AdAccounts(ctx)
	if err != nil || len(accts) != 1 {
		t.Fatalf("AdAccounts after expiry = %v, %v", accts, err)
	}
	st := e.sb.State().Requests
	if st.ByStatus["401"] != 1 || st.ByOperation["oauth/token"] != 2 || st.ByOperation["ad_accounts/list"] != 3 {
		t.Fatalf("requests = %+v; want one 401, one refresh after it, one repeat", st)
	}

	// Revoked access tokens behave the same.
	e.sb.Revoke(sandbox.Revocation{AccessTokens: true})
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatalf("after access tokens were revoked: %v", err)
	}
	if n := e.sb.State().Requests.ByOperation["oauth/token"]; n != 3 {
		t.Errorf("token requests = %d, want 3", n)
	}
}

func TestRefreshAheadFailureKeepsUsingValidToken(t *testing.T) {
	var down atomic.Bool
	e := newEnv(t, envOpts{
		sandbox: sandbox.Config{AccessTokenTTL: time.Hour},
		wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if down.Load() && r.URL.Path == "/v5/oauth/token" {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusServiceUnavailable)
					w.Write([]byte(`{"code":503,"message":"unavailable"}`))
					return
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	ctx := context.Background()
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	e.clock.Advance(58 * time.Minute) // within the refresh margin, not expired
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatalf("a failed early refresh must not fail the call: %v", err)
	}
	if got := value(t, e.client.m.refreshes.WithLabelValues("error")); got != 1 {
		t.Errorf("refresh errors = %v, want 1", got)
	}
	if e.client.CredentialsError() != nil {
		t.Error("a 503 from the token endpoint counted as a credentials rejection")
	}
	e.clock.Advance(3 * time.Minute) // expired now
	_, err := e.client.AdAccounts(ctx)
	var pe *Error
	if !errors.As(err, &pe) || pe.StatusCode != 503 || !IsRetryable(err) {
		t.Fatalf("with an expired token and the token endpoint down: %v; want retryable *Error 503", err)
	}
	down.Store(false)
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestOneRefreshForConcurrentCalls(t *testing.T) {
	e := newEnv(t, envOpts{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := e.client.AdAccounts(context.Background())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.opCount("oauth/token"); n != 1 {
		t.Fatalf("%d token requests for 20 concurrent calls, want 1", n)
	}
}

func TestRejectedRefreshTokenNeedsReauthorisation(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatal(err)
	}
	if e.client.CredentialsError() != nil {
		t.Fatal("CredentialsError set while credentials work")
	}
	e.sb.Revoke(sandbox.Revocation{AccessTokens: true, RefreshTokens: true})
	_, err := e.client.AdAccounts(ctx)
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *AuthError", err)
	}
	if !strings.Contains(err.Error(), "`pinsync auth`") {
		t.Errorf("error %q does not tell the operator to run `pinsync auth`", err)
	}
	if IsRetryable(err) {
		t.Error("a credentials rejection is retryable")
	}
	if ce := e.client.CredentialsError(); !errors.As(ce, &ae) {
		t.Errorf("CredentialsError = %v, want the *AuthError", ce)
	}
	if got := value(t, e.client.m.credsRejected); got != 1 {
		t.Errorf("pinsync_credentials_rejected = %v, want 1", got)
	}
	before := e.opCount("oauth/token")
	if _, err := e.client.CustomerLists(ctx, testAccount); !errors.As(err, &ae) {
		t.Fatalf("later call: %v, want *AuthError", err)
	}
	if n := e.opCount("oauth/token") - before; n != 0 {
		t.Errorf("%d token requests after a rejection; a rejected refresh token must not be retried", n)
	}

	// Credentials answers from the store, without a request: refused
	// while the store holds the refused token.
	before = len(e.sb.Requests())
	if err := e.client.Credentials(ctx); !errors.As(err, &ae) {
		t.Errorf("Credentials with the refused token stored = %v, want the *AuthError", err)
	}

	// `pinsync auth` stores a new grant; the client picks it up.
	fresh, err := e.sb.GrantTokens()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Save(ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Credentials(ctx); err != nil {
		t.Errorf("Credentials after a new token was stored = %v, want nil", err)
	}
	if got := value(t, e.client.m.credsRejected); got != 0 {
		t.Errorf("pinsync_credentials_rejected = %v after a new token, want 0", got)
	}
	if n := len(e.sb.Requests()) - before; n != 0 {
		t.Errorf("Credentials sent %d requests to Pinterest, want none", n)
	}
	if _, err := e.client.AdAccounts(ctx); err != nil {
		t.Fatalf("after re-authorisation: %v", err)
	}
	if e.client.CredentialsError() != nil || value(t, e.client.m.credsRejected) != 0 {
		t.Error("rejection not cleared after re-authorisation")
	}
}

func TestCredentialProblemsAreAuthErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts envOpts
	}{
		{"empty store", envOpts{noToken: true}},
		{"wrong app secret", envOpts{config: func(c *Config) { c.AppSecret = "wrong" }}},
		{"unknown refresh token", envOpts{sandbox: sandbox.Config{RefreshToken: "pinr.other"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)
			_, err := e.client.AdAccounts(context.Background())
			var ae *AuthError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), "pinsync auth") {
				t.Fatalf("err = %v, want *AuthError mentioning pinsync auth", err)
			}
			if e.client.CredentialsError() == nil {
				t.Error("CredentialsError is nil")
			}
		})
	}
}

func TestAuthorizationCodeFlow(t *testing.T) {
	e := newEnv(t, envOpts{noToken: true})
	const redirect = "http://127.0.0.1:8085/callback"
	conf := e.client.OAuth2Config(redirect)
	conf.Endpoint.AuthURL = e.srv.URL + "/oauth/"
	u, err := url.Parse(conf.AuthCodeURL("st4te"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("scope") != "ads:read,ads:write" || q.Get("client_id") != sandbox.DefaultAppID ||
		q.Get("response_type") != "code" || q.Get("redirect_uri") != redirect {
		t.Fatalf("consent URL query = %v", q)
	}
	if conf.Endpoint.AuthStyle != oauth2.AuthStyleInHeader || !strings.HasSuffix(conf.Endpoint.TokenURL, "/v5/oauth/token") {
		t.Fatalf("endpoint = %+v", conf.Endpoint)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != "st4te" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect = %q (%v)", resp.Header.Get("Location"), err)
	}
	if _, err := e.client.Exchange(context.Background(), loc.Query().Get("code"), redirect); err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if tok, err := e.store.Load(context.Background()); err != nil || tok.RefreshToken == "" {
		t.Fatalf("stored token after Exchange: %v", err)
	}
	if _, err := e.client.AdAccounts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.opCount("oauth/token"); n != 1 {
		t.Errorf("token requests = %d, want 1 (the exchanged token is used as is)", n)
	}
	// A used code is refused, as a permanent error.
	_, err = e.client.Exchange(context.Background(), loc.Query().Get("code"), redirect)
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("reused code: %v, want *AuthError", err)
	}
}
