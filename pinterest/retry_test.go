package pinterest

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
)

func always(status int, body string) *failing {
	f := &failing{status: status, body: body}
	f.n.Store(1 << 40)
	return f
}

func wrapWith(f *failing) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler { f.next = h; return f }
}

func TestServerErrorsAreRetriedUntilSuccess(t *testing.T) {
	f := &failing{status: http.StatusInternalServerError, body: `{"code":500,"message":"oops"}`}
	f.n.Store(2)
	e := newEnv(t, envOpts{wrap: wrapWith(f)})
	accts, err := e.client.AdAccounts(context.Background())
	if err != nil || len(accts) != 1 {
		t.Fatalf("AdAccounts = %v, %v", accts, err)
	}
	if got := f.seen.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3", got)
	}
	if got := value(t, e.client.m.requests.WithLabelValues("ads_read", "500")); got != 2 {
		t.Errorf("requests{ads_read,500} = %v, want 2", got)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	f := always(http.StatusBadGateway, `<html>bad gateway</html>`)
	e := newEnv(t, envOpts{wrap: wrapWith(f), lenient: true, config: func(c *Config) { c.MaxAttempts = 3 }})
	_, err := e.client.AdAccounts(context.Background())
	var pe *Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusBadGateway || !IsRetryable(err) {
		t.Fatalf("err = %v, want retryable *Error 502", err)
	}
	if pe.Message != "<html>bad gateway</html>" || pe.RequestID != "rid-injected" {
		t.Errorf("error = %+v; want the body excerpt and the request id", pe)
	}
	if got := f.seen.Load(); got != 3 {
		t.Errorf("attempts = %d, want MaxAttempts 3", got)
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	f := always(http.StatusBadRequest, `{"code":1,"message":"Invalid parameters."}`)
	e := newEnv(t, envOpts{wrap: wrapWith(f)})
	err := e.client.UpdateCustomerList(context.Background(), testAccount, "1", Add, hashes("x", 1))
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != 1 || pe.Message != "Invalid parameters." || IsRetryable(err) || pe.PayloadTooLarge() {
		t.Fatalf("err = %v, want permanent *Error code 1", err)
	}
	if got := f.seen.Load(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
}

func TestRateLimitedRequestsWaitForTheReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, envOpts{inMemory: true, sandbox: sandbox.Config{ReadsPerMinute: 1000},
			config: func(c *Config) { c.MaxBackoff = 2 * time.Minute }})
		ctx := context.Background()
		if _, err := e.client.AdAccounts(ctx); err != nil { // opens the sandbox's rate window
			t.Fatal(err)
		}
		time.Sleep(20 * time.Second)
		e.sb.SetFaults(sandbox.Faults{Throttle: 1})
		start := time.Now()
		if _, err := e.client.AdAccounts(ctx); err != nil {
			t.Fatal(err)
		}
		// The window resets 60 s after it opened, 40 s from the 429.
		if waited := time.Since(start); waited != 40*time.Second {
			t.Errorf("waited %v after the 429, want the 40s x-ratelimit-reset", waited)
		}
		if got := value(t, e.client.m.rateLimited); got != 1 {
			t.Errorf("pinsync_rate_limited_total = %v, want 1", got)
		}

		// Without headers: exponential backoff, whose first wait is at
		// most baseBackoff.
		e.sb.SetFaults(sandbox.Faults{Throttle: 2, ThrottleWithoutHeaders: true})
		start = time.Now()
		if _, err := e.client.AdAccounts(ctx); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited < baseBackoff/2+baseBackoff || waited > 3*baseBackoff {
			t.Errorf("waited %v for two 429s without headers, want backoff of 1.5s-3s", waited)
		}
	})
}

func TestRateLimitLongerThanMaxBackoffIsReturned(t *testing.T) {
	f := always(http.StatusTooManyRequests, `{"code":8,"message":"rate limit"}`)
	f.headers = map[string]string{"Retry-After": "600"}
	e := newEnv(t, envOpts{wrap: wrapWith(f), config: func(c *Config) { c.MaxBackoff = time.Minute }})
	_, err := e.client.AdAccounts(context.Background())
	var pe *Error
	if !errors.As(err, &pe) || !pe.RateLimited() || pe.RetryAfter != 10*time.Minute || !IsRetryable(err) {
		t.Fatalf("err = %v, want retryable 429 with RetryAfter 10m", err)
	}
	if got := f.seen.Load(); got != 1 {
		t.Errorf("attempts = %d; a wait beyond MaxBackoff must go back to the caller", got)
	}
}

func TestCancelDuringBackoffReturnsLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := always(http.StatusServiceUnavailable, `{"code":503,"message":"down"}`)
		e := newEnv(t, envOpts{inMemory: true, wrap: wrapWith(f), config: func(c *Config) {
			c.MaxBackoff = 10 * time.Second
			c.MaxAttempts = 100
		}})
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(5 * time.Second)
			cancel()
		}()
		_, err := e.client.AdAccounts(ctx)
		var pe *Error
		if !errors.Is(err, context.Canceled) || !errors.As(err, &pe) || pe.StatusCode != 503 {
			t.Fatalf("err = %v; want context.Canceled wrapping the last *Error 503", err)
		}
	})
}

func TestBreakerOpensHalfOpensAndCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &failing{status: http.StatusServiceUnavailable, body: `{"code":503,"message":"down"}`}
		e := newEnv(t, envOpts{inMemory: true, wrap: wrapWith(f), config: func(c *Config) {
			c.MaxAttempts = 1
			c.BreakerFailures = 3
			c.BreakerOpenTimeout = 30 * time.Second
		}})
		ctx := context.Background()
		recs := hashes("br", 2)
		l, err := e.client.CreateCustomerList(ctx, testAccount, "breaker", ident.Email, recs)
		if err != nil {
			t.Fatal(err)
		}
		state := func() float64 { return value(t, e.client.m.breakerState.WithLabelValues(testAccount)) }
		update := func() error { return e.client.UpdateCustomerList(ctx, testAccount, l.ID, Add, recs) }

		f.n.Store(1 << 40)
		for i := range 3 {
			if err := update(); errors.Is(err, ErrBreakerOpen) || !IsRetryable(err) {
				t.Fatalf("failure %d: %v; want a retryable error from Pinterest", i+1, err)
			}
		}
		if got := state(); got != 2 {
			t.Fatalf("breaker state = %v after 3 failures, want 2 (open)", got)
		}
		seen := f.seen.Load()
		err = update()
		if !errors.Is(err, ErrBreakerOpen) || !IsRetryable(err) {
			t.Fatalf("err = %v, want ErrBreakerOpen", err)
		}
		if f.seen.Load() != seen {
			t.Fatal("a request was sent through an open breaker")
		}
		// Reads are not guarded by the write breaker.
		f.n.Store(0)
		if _, err := e.client.AdAccounts(ctx); err != nil {
			t.Fatalf("read while the write breaker is open: %v", err)
		}

		// After the timeout one trial goes through; it fails: open again.
		f.n.Store(1 << 40)
		time.Sleep(31 * time.Second)
		if err := update(); errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("half-open breaker refused the trial request: %v", err)
		}
		if got := state(); got != 2 {
			t.Fatalf("breaker state = %v after a failed trial, want 2", got)
		}

		// The next trial succeeds: closed.
		f.n.Store(0)
		time.Sleep(31 * time.Second)
		if err := update(); err != nil {
			t.Fatalf("trial after recovery: %v", err)
		}
		if got := state(); got != 0 {
			t.Fatalf("breaker state = %v after a successful trial, want 0 (closed)", got)
		}
		if !e.logContains(`"msg":"circuit breaker changed state"`) {
			t.Error("no log line for breaker state changes")
		}
	})
}

func TestBreakerIgnoresClientErrorsAndCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hang atomic.Bool
		f := always(http.StatusBadRequest, `{"code":1,"message":"Invalid records."}`)
		e := newEnv(t, envOpts{inMemory: true, config: func(c *Config) {
			c.MaxAttempts = 1
			c.BreakerFailures = 1
		}, wrap: func(h http.Handler) http.Handler {
			f.next = h
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hang.Load() && r.Method == http.MethodPatch {
					<-r.Context().Done()
					return
				}
				f.ServeHTTP(w, r)
			})
		}})
		ctx := context.Background()
		for range 3 {
			if err := e.client.UpdateCustomerList(ctx, testAccount, "1", Add, hashes("c", 1)); errors.Is(err, ErrBreakerOpen) || err == nil {
				t.Fatalf("err = %v, want the 400", err)
			}
		}
		hang.Store(true)
		for range 3 {
			tctx, cancel := context.WithTimeout(ctx, time.Second)
			err := e.client.UpdateCustomerList(tctx, testAccount, "1", Add, hashes("c", 1))
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want deadline exceeded", err)
			}
		}
		if got := value(t, e.client.m.breakerState.WithLabelValues(testAccount)); got != 0 {
			t.Fatalf("breaker state = %v; 4xx and cancelled requests must not open it", got)
		}
	})
}

func TestWritesWaitForTheWriteBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// burst 1, then one a second
		e := newEnv(t, envOpts{inMemory: true, config: func(c *Config) { c.WritesPerMinute = 61; c.MaxRecords = 1 }})
		if got := e.client.WriteBudget().PerMinute(); got != 61 {
			t.Fatalf("the write budget is %v a minute, want the configured 61", got)
		}
		start := time.Now()
		if _, err := e.client.CreateCustomerList(context.Background(), testAccount, "paced", ident.Email, hashes("p", 5)); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 4*time.Second {
			t.Errorf("5 writes at 61/min took %v, want 4s", got)
		}
	})
}

// TestLimiterNeverExceedsTheBudgetInAnyMinute: a client taking every token
// as soon as it is there never sends more than the budget in any minute,
// whether the server counts fixed or sliding windows.
func TestLimiterNeverExceedsTheBudgetInAnyMinute(t *testing.T) {
	for _, perMinute := range []float64{2, 59, 60, 61, 400, 1000} {
		lim := NewBudget(perMinute).lim
		t0 := time.Unix(1_000_000, 0)
		var sent []time.Time
		for step := time.Duration(0); step < 10*time.Minute; step += 10 * time.Millisecond {
			for now := t0.Add(step); lim.AllowN(now, 1); {
				sent = append(sent, now)
			}
		}
		// Sliding: the calls in (s-60s, s] for every call s.
		first := 0
		for i, s := range sent {
			for !sent[first].After(s.Add(-time.Minute)) {
				first++
			}
			if n := i - first + 1; float64(n) > perMinute {
				t.Fatalf("%v/min: %d calls in the minute before %v", perMinute, n, s.Sub(t0))
			}
		}
		// And it uses the budget: all of it but about one burst a minute.
		if burst := max(1, int(perMinute/60)); len(sent) < 10*(int(perMinute)-burst-1) {
			t.Errorf("%v/min: %d calls in 10 minutes", perMinute, len(sent))
		}
	}
}

func TestRetryLoop(t *testing.T) {
	permanent := errors.New("permanent")
	transient := errors.New("transient")
	p := retryPolicy{MaxAttempts: 4, MaxBackoff: time.Millisecond, BaseBackoff: time.Millisecond,
		Retryable: func(err error) bool { return errors.Is(err, transient) }}
	for _, tc := range []struct {
		name     string
		errs     []error
		want     error
		attempts int
	}{
		{"success", []error{nil}, nil, 1},
		{"transient then success", []error{transient, transient, nil}, nil, 3},
		{"permanent stops", []error{transient, permanent}, permanent, 2},
		{"exhausted returns the last error", []error{transient, transient, transient, transient, nil}, transient, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := retry(context.Background(), p, func(context.Context, int) error {
				n++
				return tc.errs[n-1]
			})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) || n != tc.attempts {
				t.Fatalf("err = %v after %d attempts, want %v after %d", err, n, tc.want, tc.attempts)
			}
		})
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	p := retryPolicy{BaseBackoff: time.Second, MaxBackoff: 8 * time.Second}
	for n, max := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 30: 8 * time.Second} {
		for range 100 {
			if d := p.backoff(n); d < max/2 || d > max {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, max/2, max)
			}
		}
	}
}
