package pinterest

import (
	"context"
	"errors"
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
// a write asks at most maxGuardChecks times.
const (
	maxGuardAge    = time.Second
	maxGuardChecks = 3
)

// errGuardSlow says the write guard never answered in time.
var errGuardSlow = errors.New("the ownership check never answered within " + maxGuardAge.String())

// guardError is a write the guard refused: it was not sent.
type guardError struct{ err error }

func (e *guardError) Error() string { return "pinterest: write not sent: " + e.err.Error() }
func (e *guardError) Unwrap() error { return e.err }
