package pinterest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// breakers holds one circuit breaker per ad account, created on first use.
// The number of ad accounts is small and fixed by configuration, so the map
// (and the metric label) is bounded.
type breakers struct {
	failures uint32
	timeout  time.Duration
	m        *metrics
	log      *slog.Logger

	mu sync.Mutex
	by map[string]*breaker
}

func newBreakers(failures uint32, timeout time.Duration, m *metrics, log *slog.Logger) *breakers {
	return &breakers{failures: failures, timeout: timeout, m: m, log: log, by: make(map[string]*breaker)}
}

// breaker guards the writes to one ad account. Only unavailability (5xx,
// timeouts, transport errors) counts against it: a permanent 4xx proves
// the API is up, a 429 is pacing (the budget pauses instead), and a
// request abandoned because its context ended proves nothing.
type breaker struct {
	adAccount string
	cb        *gobreaker.CircuitBreaker[struct{}]
}

// abandoned marks a failure caused by the caller's context ending, which
// the breaker ignores.
type abandoned struct{ err error }

// Error returns the underlying error's message.
func (a *abandoned) Error() string { return a.err.Error() }

// Unwrap returns the underlying error.
func (a *abandoned) Unwrap() error { return a.err }

func (bs *breakers) get(adAccount string) *breaker {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b, ok := bs.by[adAccount]; ok {
		return b
	}
	gauge := bs.m.breakerState.WithLabelValues(adAccount)
	gauge.Set(0)
	b := &breaker{adAccount: adAccount}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        adAccount,
		MaxRequests: 1,
		Timeout:     bs.timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= bs.failures },
		IsSuccessful: func(err error) bool {
			return Classify(err) != ClassUnavailable
		},
		IsExcluded: func(err error) bool {
			var a *abandoned
			return errors.As(err, &a) || Classify(err) == ClassRateLimited
		},
		// Called with the breaker's lock held: it must not call back into cb.
		OnStateChange: func(name string, from, to gobreaker.State) {
			gauge.Set(float64(to)) // closed 0, half-open 1, open 2
			lvl := slog.LevelWarn
			if to == gobreaker.StateClosed {
				lvl = slog.LevelInfo
			}
			bs.log.Log(context.Background(), lvl, "circuit breaker changed state", "ad_account", name,
				"from", from.String(), "to", to.String())
		},
	})
	bs.by[adAccount] = b
	return b
}

func (b *breaker) openError() error {
	return fmt.Errorf("%w for ad account %s", ErrBreakerOpen, b.adAccount)
}

// allow fails fast while the breaker is open, before a rate token is spent.
func (b *breaker) allow() error {
	if b.cb.State() == gobreaker.StateOpen {
		return b.openError()
	}
	return nil
}

// run calls f through the breaker.
func (b *breaker) run(ctx context.Context, f func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) {
		err := f()
		if err != nil && ctx.Err() != nil {
			return struct{}{}, &abandoned{err: err}
		}
		return struct{}{}, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return b.openError()
	}
	var a *abandoned
	if errors.As(err, &a) {
		return a.err
	}
	return err
}
