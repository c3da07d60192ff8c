package pinterest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// WithWriteGuard returns a context whose Pinterest writes each run check
// first: after the write has waited for its budget and for a token, just
// before it is sent (and again before it is sent once more after a 401).
// A write check refuses is not sent, and the call returns check's error
// (wrapped; errors.Is finds it). It serves the one check that must sit
// milliseconds before the wire, however long the call waited before: that
// the caller still owns what it writes. Like net/http/httptrace, the hook
// travels with the context because it belongs to one call.
func WithWriteGuard(ctx context.Context, check func(context.Context) error) context.Context {
	return context.WithValue(ctx, guardKey{}, check)
}

type guardKey struct{}

func writeGuardOf(ctx context.Context) func(context.Context) error {
	g, _ := ctx.Value(guardKey{}).(func(context.Context) error)
	return g
}

// guard runs the write guard of ctx, if any, for a write (not for a read).
// An answer that took longer than maxGuardAge to come is asked again: the
// process may have been paused (GC, SIGSTOP, a slow node) after the check
// was sent, and what was true then may not be now. now is the clock that
// tells.
func guard(ctx context.Context, r request, now func() time.Time) error {
	if r.method == http.MethodGet {
		return nil
	}
	g := writeGuardOf(ctx)
	if g == nil {
		return nil
	}
	for range maxGuardChecks {
		asked := now()
		if err := g(ctx); err != nil {
			return &guardError{err: err}
		}
		if now().Sub(asked) <= maxGuardAge {
			return nil
		}
	}
	return &guardError{err: errGuardSlow}
}

// A write guard's answer is trusted for maxGuardAge after it was asked;
// a write asks at most maxGuardChecks times. A budget's token is good for
// maxGuardAge after it was given too.
const (
	maxGuardAge    = time.Second
	maxGuardChecks = 3
)

// errGuardSlow says the write guard never answered in time.
var errGuardSlow = errors.New("the ownership check never answered within " + maxGuardAge.String())

// errGrantStale says the budget's token was never fresh when the request
// was ready to go.
var errGrantStale = errors.New("no token of the budget was less than " + maxGuardAge.String() + " old when the request was ready")

// grant is a request's token of its category's budget, and when it was
// given.
type grant struct {
	budget *Budget
	at     time.Time
}

// take waits for a token of g's budget.
func (g *grant) take(ctx context.Context, now func() time.Time) error {
	if err := g.budget.Wait(ctx); err != nil {
		return err
	}
	g.at = now()
	return nil
}

// ready runs just before r goes on the wire, after every wait: the write
// guard of ctx, then a look at the age of r's token. A token given more
// than maxGuardAge ago (the process was paused, or the token refresh or the
// guard was slow) is dropped and another taken: the share that paid for it
// may be gone by now (a lease lapsed while the process slept), and
// Pinterest counts the request when it arrives, not when it was paid for.
func ready(ctx context.Context, r request, g *grant, now func() time.Time) error {
	for i := 1; ; i++ {
		if err := guard(ctx, r, now); err != nil {
			return err
		}
		if now().Sub(g.at) <= maxGuardAge {
			return nil
		}
		if i == maxGuardChecks {
			return &guardError{err: errGrantStale}
		}
		if err := g.take(ctx, now); err != nil {
			return fmt.Errorf("pinterest: budget: %w", err)
		}
	}
}

// guardError is a write the guard refused: it was not sent.
type guardError struct{ err error }

func (e *guardError) Error() string { return "pinterest: write not sent: " + e.err.Error() }
func (e *guardError) Unwrap() error { return e.err }
