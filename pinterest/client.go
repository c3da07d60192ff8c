// Package pinterest is a client for the parts of the Pinterest Ads API v5
// that pinsync uses: ad accounts, customer lists and customer-list
// audiences.
//
// It owns everything between a call like UpdateCustomerList and the wire:
// OAuth 2.0 access tokens refreshed from a rotating refresh token kept in a
// TokenStore, hex encoding and chunking of hashed identifiers, one
// classification of error responses (*Error, *AuthError), retries with
// capped, jittered backoff, client-side pacing of the ads_write and ads_read
// budgets, and a circuit breaker per ad account around writes.
//
// It does not decide what to upload or when: batching, ordering of ADD and
// REMOVE for one identifier, and upload metrics belong to the consumer. It
// never logs tokens, the app secret or request bodies (identifiers).
package pinterest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
)

// Defaults for Config fields left zero.
const (
	DefaultBaseURL            = "https://api.pinterest.com"
	DefaultAuthURL            = "https://www.pinterest.com/oauth/"
	DefaultWritesPerMinute    = 400
	DefaultReadsPerMinute     = 1000
	DefaultMaxRecords         = 5000
	DefaultMaxBytes           = 512 << 10
	DefaultMaxAttempts        = 5
	DefaultMaxBackoff         = 30 * time.Second
	DefaultBreakerFailures    = 5
	DefaultBreakerOpenTimeout = 30 * time.Second

	// MinMaxBytes is the smallest MaxBytes accepted: room for a request's
	// JSON framing and a few records.
	MinMaxBytes = 1 << 10

	baseBackoff     = time.Second
	maxResponseBody = 32 << 20
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// BaseURL is the API origin; the API lives under /v5. Default
	// "https://api.pinterest.com".
	BaseURL string
	// AuthURL is the OAuth consent page. Default "https://www.pinterest.com/oauth/".
	AuthURL string
	// AppID and AppSecret are the Pinterest app's credentials (HTTP Basic
	// on the token endpoint).
	AppID     string
	AppSecret Secret
	// TokenStore holds the OAuth token; the rotated refresh token is saved
	// to it before each new access token is used. Required.
	TokenStore TokenStore
	// HTTPClient sends the requests; nil means a client with a 60 s timeout.
	// Its Transport is wrapped (for metrics), not modified.
	HTTPClient *http.Client
	// WritesPerMinute is the app's ads_write budget: default 400, negative
	// means unlimited. The client holds all of it until its WriteBudget's
	// share is set (see Budget).
	WritesPerMinute float64
	// ReadsPerMinute is the app's ads_read budget: default 1000, negative
	// means unlimited.
	ReadsPerMinute float64
	// UserAgent is sent with every request (default "pinsync"); naming the
	// instance in it lets Pinterest's (and the sandbox's) request logs tell
	// processes apart.
	UserAgent string
	// MaxRecords caps the records in one request (default 5000).
	MaxRecords int
	// MaxBytes caps one request body (default 512 KiB, at least MinMaxBytes).
	MaxBytes int
	// MaxAttempts bounds the attempts of one request on retryable errors
	// (default 5).
	MaxAttempts int
	// MaxBackoff caps one wait between attempts (default 30 s). A 429 that
	// asks for a longer wait is returned to the caller instead.
	MaxBackoff time.Duration
	// BreakerFailures is how many consecutive failed writes to one ad
	// account open its circuit breaker (default 5).
	BreakerFailures uint32
	// BreakerOpenTimeout is how long a breaker stays open before it lets
	// one trial request through (default 30 s).
	BreakerOpenTimeout time.Duration
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the client's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock for token expiry and rate-limit reset times;
	// nil means time.Now.
	Now func() time.Time
}

// Validate reports the first problem with c, naming the field.
func (c Config) Validate() error {
	for _, u := range []struct{ name, v string }{{"BaseURL", c.BaseURL}, {"AuthURL", c.AuthURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("pinterest: Config.%s %q is not an absolute http(s) URL", u.name, u.v)
		}
	}
	switch {
	case c.AppID == "":
		return errors.New("pinterest: Config.AppID is empty")
	case c.AppSecret == "":
		return errors.New("pinterest: Config.AppSecret is empty")
	case c.TokenStore == nil:
		return errors.New("pinterest: Config.TokenStore is nil")
	case c.MaxRecords < 0:
		return fmt.Errorf("pinterest: Config.MaxRecords %d is negative", c.MaxRecords)
	case c.MaxBytes != 0 && c.MaxBytes < MinMaxBytes:
		return fmt.Errorf("pinterest: Config.MaxBytes %d is below the minimum %d", c.MaxBytes, MinMaxBytes)
	case c.MaxAttempts < 0:
		return fmt.Errorf("pinterest: Config.MaxAttempts %d is negative", c.MaxAttempts)
	case c.MaxBackoff < 0:
		return fmt.Errorf("pinterest: Config.MaxBackoff %s is negative", c.MaxBackoff)
	case c.BreakerOpenTimeout < 0:
		return fmt.Errorf("pinterest: Config.BreakerOpenTimeout %s is negative", c.BreakerOpenTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&c.BaseURL, DefaultBaseURL)
	def(&c.AuthURL, DefaultAuthURL)
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.WritesPerMinute == 0 {
		c.WritesPerMinute = DefaultWritesPerMinute
	}
	if c.ReadsPerMinute == 0 {
		c.ReadsPerMinute = DefaultReadsPerMinute
	}
	if c.UserAgent == "" {
		c.UserAgent = "pinsync"
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = DefaultBreakerFailures
	}
	if c.BreakerOpenTimeout == 0 {
		c.BreakerOpenTimeout = DefaultBreakerOpenTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	return c
}

// Client calls the Pinterest Ads API. It is safe for concurrent use.
type Client struct {
	cfg      Config
	hc       *http.Client
	auth     *tokens
	writes   *Budget
	reads    *Budget
	breakers *breakers
	m        *metrics
	log      *slog.Logger
	bufs     sync.Pool // *[]byte request bodies
	hashes   sync.Pool // *[]ident.Hash scratch for deduplication
}

// New validates cfg and returns a Client. It sends no request: the token is
// loaded from the store on first use.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "pinterest")
	hc := *cfg.HTTPClient
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &instrumented{next: base, m: m}
	c := &Client{
		cfg:    cfg,
		hc:     &hc,
		writes: NewBudget(cfg.WritesPerMinute),
		reads:  NewBudget(cfg.ReadsPerMinute),
		m:      m,
		log:    log,
	}
	c.writes.now, c.reads.now = cfg.Now, cfg.Now
	c.writes.gauge = m.budget.WithLabelValues(categoryWrite)
	c.reads.gauge = m.budget.WithLabelValues(categoryRead)
	c.writes.gauge.Set(c.writes.PerMinute())
	c.reads.gauge.Set(c.reads.PerMinute())
	c.auth = newTokens(&cfg, &hc, m, log)
	c.breakers = newBreakers(cfg.BreakerFailures, cfg.BreakerOpenTimeout, m, log)
	return c, nil
}

// WriteBudget returns the budget pacing ads_write requests.
func (c *Client) WriteBudget() *Budget { return c.writes }

// ReadBudget returns the budget pacing ads_read requests.
func (c *Client) ReadBudget() *Budget { return c.reads }

// TokenExpiry returns when the current access token expires; zero before
// the first token is loaded.
func (c *Client) TokenExpiry() time.Time {
	if t := c.auth.cur.Load(); t != nil {
		return t.Expiry
	}
	return time.Time{}
}

// CredentialsError returns the *AuthError once Pinterest has rejected the
// stored credentials for good, nil otherwise. It clears when a new token
// appears in the store (after `pinsync auth`).
func (c *Client) CredentialsError() error {
	if r := c.auth.rejected.Load(); r != nil {
		return r.err
	}
	return nil
}

// Credentials is CredentialsError that first looks in the token store for
// a new token (after `pinsync auth`), which clears the rejection: a caller
// that holds its work while the credentials are refused calls it to learn
// when to go on, without making a request of Pinterest.
func (c *Client) Credentials(ctx context.Context) error {
	r := c.auth.rejected.Load()
	if r == nil {
		return nil
	}
	stored, err := c.auth.store.Load(ctx)
	if err != nil || stored.RefreshToken == r.refreshToken {
		return r.err
	}
	if c.auth.rejected.CompareAndSwap(r, nil) {
		c.log.InfoContext(ctx, "new token found in the token store; clearing the credentials rejection")
		c.auth.m.credsRejected.Set(0)
	}
	return nil
}

// OAuth2Config returns the OAuth 2.0 configuration of the authorization-code
// flow, for `pinsync auth`: the consent page, the token endpoint with HTTP
// Basic client authentication, and the scopes ads:read,ads:write joined the
// way Pinterest expects. Use Exchange (not the config's) to keep the token.
func (c *Client) OAuth2Config(redirectURL string) *oauth2.Config {
	conf := c.auth.conf
	conf.RedirectURL = redirectURL
	conf.Scopes = []string{scopes}
	return &conf
}

// Exchange trades an authorization code from the consent page for a token,
// saves it to the TokenStore and starts using it. redirectURL must be the
// one the consent page was opened with.
func (c *Client) Exchange(ctx context.Context, code, redirectURL string) (*oauth2.Token, error) {
	return c.auth.exchange(ctx, code, redirectURL)
}

// request is one API call, replayable across attempts.
type request struct {
	method    string
	path      string // under /v5, escaped
	query     url.Values
	body      *body  // nil for none
	adAccount string // writes: whose breaker guards the call
	// recover, if set, runs before every attempt but the first. It lets a
	// non-idempotent create find what an earlier, failed-looking attempt
	// made; done means the call is complete.
	recover func(ctx context.Context) (done bool, err error)
}

// do sends r, retrying per the client's policy, and decodes a 2xx JSON
// body into out (if not nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	var lastReal error
	p := retryPolicy{
		MaxAttempts: c.cfg.MaxAttempts,
		BaseBackoff: min(baseBackoff, c.cfg.MaxBackoff),
		MaxBackoff:  c.cfg.MaxBackoff,
		Retryable: func(err error) bool {
			return IsRetryable(err) && !errors.Is(err, ErrBreakerOpen)
		},
		Wait: func(err error) time.Duration {
			var e *Error
			if errors.As(err, &e) {
				return e.RetryAfter
			}
			return 0
		},
		OnRetry: func(attempt int, wait time.Duration, err error) {
			c.log.WarnContext(ctx, "retrying Pinterest request", "method", r.method, "path", r.path,
				"attempt", attempt, "wait", wait, "err", err)
		},
	}
	err := retry(ctx, p, func(ctx context.Context, attempt int) error {
		if attempt > 1 && r.recover != nil {
			if done, err := r.recover(ctx); done || err != nil {
				return err
			}
		}
		err := c.attempt(ctx, r, out)
		if err != nil && !errors.Is(err, ErrBreakerOpen) {
			lastReal = err
		}
		return err
	})
	if errors.Is(err, ErrBreakerOpen) && lastReal != nil {
		return fmt.Errorf("%w; last error: %w", err, lastReal)
	}
	return err
}

// attempt sends r once, after waiting for its rate budget; writes go
// through the ad account's breaker, and the write guard of ctx (if any)
// and a look at the age of the budget's token run just before a request is
// sent (see send). A 429 pauses the whole category.
func (c *Client) attempt(ctx context.Context, r request, out any) error {
	if r.method == http.MethodGet {
		g := &grant{budget: c.reads}
		if err := g.take(ctx, c.cfg.Now); err != nil {
			return fmt.Errorf("pinterest: ads_read budget: %w", err)
		}
		return c.paced(c.reads, c.send(ctx, r, g, out))
	}
	b := c.breakers.get(r.adAccount)
	if err := b.allow(); err != nil {
		return err
	}
	g := &grant{budget: c.writes}
	if err := g.take(ctx, c.cfg.Now); err != nil {
		return fmt.Errorf("pinterest: ads_write budget: %w", err)
	}
	return c.paced(c.writes, b.run(ctx, func() error { return c.send(ctx, r, g, out) }))
}

// rateLimitPause is how long a category stops after a 429 that names no
// reset (the retry loop's first backoff).
const rateLimitPause = baseBackoff

// paced pauses budget until the reset a 429 names, and returns err.
func (c *Client) paced(budget *Budget, err error) error {
	var e *Error
	if errors.As(err, &e) && e.RateLimited() {
		d := e.RetryAfter
		if d <= 0 {
			d = rateLimitPause
		}
		budget.Pause(c.cfg.Now().Add(d))
	}
	return err
}

// send makes one request, paid for by g, with a current access token; on
// a 401 it refreshes the token once and repeats the request. Right before
// each time it goes on the wire, after every wait (budget, token,
// refresh), a write runs the write guard of ctx, so that the check is
// milliseconds old when the write leaves, and any request whose budget
// token has grown old takes another (see ready).
func (c *Client) send(ctx context.Context, r request, g *grant, out any) error {
	tok, err := c.auth.token(ctx)
	if err != nil {
		return err
	}
	if err := ready(ctx, r, g, c.cfg.Now); err != nil {
		return err
	}
	resp, err := c.roundTrip(ctx, r, tok.AccessToken)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		err := checkResponse(resp, c.cfg.Now())
		resp.Body.Close()
		var e *Error
		if errors.As(err, &e) && e.Code == 3 {
			return err // missing scope: a new token of the same grant will not help
		}
		c.log.InfoContext(ctx, "Pinterest answered 401; refreshing the access token", "request_id", e.RequestID)
		if tok, err = c.auth.refresh(ctx, tok.AccessToken); err != nil {
			return err
		}
		if err := ready(ctx, r, g, c.cfg.Now); err != nil {
			return err
		}
		if resp, err = c.roundTrip(ctx, r, tok.AccessToken); err != nil {
			return err
		}
	}
	defer resp.Body.Close()
	if err := checkResponse(resp, c.cfg.Now()); err != nil {
		return err
	}
	if out == nil {
		_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
		if err != nil {
			return &transportError{err: err}
		}
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBody)).Decode(out); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		if errors.As(err, &se) || errors.As(err, &te) {
			return fmt.Errorf("pinterest: decode %s %s response: %w", r.method, r.path, err)
		}
		return &transportError{err: fmt.Errorf("read %s %s response: %w", r.method, r.path, err)}
	}
	return nil
}

// roundTrip sends one HTTP request. The body is never logged.
func (c *Client) roundTrip(ctx context.Context, r request, accessToken string) (*http.Response, error) {
	u := c.cfg.BaseURL + "/v5" + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("pinterest: build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Body = r.body.reader()
		req.GetBody = func() (io.ReadCloser, error) { return r.body.reader(), nil }
		req.ContentLength = int64(len(*r.body.buf))
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.log.DebugContext(ctx, "Pinterest request failed", "method", r.method, "path", r.path, "err", err)
		return nil, &transportError{err: err}
	}
	c.log.DebugContext(ctx, "Pinterest request", "method", r.method, "path", r.path, "status", resp.StatusCode,
		"request_id", resp.Header.Get("x-pinterest-rid"), "duration", time.Since(start))
	return resp, nil
}
