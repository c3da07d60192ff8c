package pinterest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
)

// env is a client wired to a sandbox (or another handler) over HTTP.
type env struct {
	t       *testing.T
	sb      *sandbox.Server // nil when the handler is not the sandbox
	srv     *httptest.Server
	client  *Client
	store   *FileTokenStore
	reg     *prometheus.Registry
	logs    *syncBuffer
	clock   *clock
	handler http.Handler // what the server serves (may wrap sb)
}

type envOpts struct {
	sandbox  sandbox.Config
	wrap     func(http.Handler) http.Handler // middleware around the sandbox
	handler  http.Handler                    // instead of the sandbox
	config   func(*Config)
	noToken  bool // leave the store empty
	inMemory bool // no TCP: call the handler in-process (for testing/synctest)
	lenient  bool // responses need not match the API description
}

// clock is a settable clock shared by the client and the sandbox.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of slog.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const testAccount = sandbox.DefaultAdAccountID

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	if !o.inMemory {
		// Tests in a synctest bubble use its fake time.Now instead.
		e.clock = &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	}
	h := o.handler
	if h == nil {
		sc := o.sandbox
		if sc.Now == nil && e.clock != nil {
			sc.Now = e.clock.Now
		}
		if sc.WritesPerMinute == 0 {
			sc.WritesPerMinute = sandbox.Unlimited
		}
		if sc.ReadsPerMinute == 0 {
			sc.ReadsPerMinute = sandbox.Unlimited
		}
		sb, err := sandbox.New(sc)
		if err != nil {
			t.Fatalf("sandbox.New: %v", err)
		}
		e.sb = sb
		h = sb
	}
	if o.wrap != nil {
		h = o.wrap(h)
	}
	e.handler = h
	hc := &http.Client{}
	base := "http://pinterest.invalid"
	if o.inMemory {
		hc.Transport = handlerTransport{h}
	} else {
		e.srv = httptest.NewServer(h)
		t.Cleanup(e.srv.Close)
		base = e.srv.URL
		hc.Transport = e.srv.Client().Transport
	}
	hc.Transport = contractCheck(t, hc.Transport, o.lenient)
	e.store = NewFileTokenStore(filepath.Join(t.TempDir(), "token.json"))
	if !o.noToken {
		if err := e.store.Save(context.Background(), &oauth2.Token{RefreshToken: sandbox.DefaultRefreshToken}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		BaseURL:         base,
		AppID:           sandbox.DefaultAppID,
		AppSecret:       sandbox.DefaultAppSecret,
		TokenStore:      e.store,
		HTTPClient:      hc,
		WritesPerMinute: -1,
		ReadsPerMinute:  -1,
		MaxBackoff:      time.Millisecond,
		Logger:          slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:      e.reg,
	}
	if e.clock != nil {
		cfg.Now = e.clock.Now
	}
	if o.config != nil {
		o.config(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.client = c
	return e
}

// handlerTransport serves requests in-process, without sockets, so that
// tests in a testing/synctest bubble see only durably blocking goroutines.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	if err := req.Context().Err(); err != nil {
		return nil, err // the response is lost, as on a real connection
	}
	return rec.Result(), nil
}

// hashes returns n distinct record hashes, deterministic per seed.
func hashes(seed string, n int) []ident.Hash {
	out := make([]ident.Hash, n)
	for i := range out {
		out[i] = sha256.Sum256(fmt.Appendf(nil, "%s-%d@example.com", seed, i))
	}
	return out
}

func hexes(hs []ident.Hash) map[string]bool {
	m := make(map[string]bool, len(hs))
	for _, h := range hs {
		m[h.String()] = true
	}
	return m
}

// listRecords returns the records the sandbox holds for a list.
func (e *env) listRecords(id string) map[string]bool {
	e.t.Helper()
	l, ok := e.sb.CustomerList(id)
	if !ok {
		e.t.Fatalf("sandbox has no customer list %s", id)
	}
	m := make(map[string]bool, len(l.Records))
	for _, r := range l.Records {
		m[r] = true
	}
	return m
}

func (e *env) opCount(op string) int { return e.sb.State().Requests.ByOperation[op] }

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("metric is neither counter nor gauge")
	return 0
}

// failing answers the first n requests whose path matches with status, then
// passes requests to next. It counts the requests it saw.
type failing struct {
	next    http.Handler
	n       atomic.Int64
	status  int
	body    string
	headers map[string]string
	seen    atomic.Int64
}

func (f *failing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v5/oauth/token" {
		f.next.ServeHTTP(w, r)
		return
	}
	f.seen.Add(1)
	if f.n.Add(-1) >= 0 {
		for k, v := range f.headers {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-pinterest-rid", "rid-injected")
		w.WriteHeader(f.status)
		io.WriteString(w, f.body)
		return
	}
	f.next.ServeHTTP(w, r)
}

func sameSet(t *testing.T, got, want map[string]bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("record %s missing", k[:12])
		}
	}
}

func (e *env) logContains(s string) bool { return strings.Contains(e.logs.String(), s) }
