package pinterest

import (
	"context"
	"net/http"
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
func guard(ctx context.Context, r request) error {
	if r.method == http.MethodGet {
		return nil
	}
	if g := writeGuardOf(ctx); g != nil {
		if err := g(ctx); err != nil {
			return &guardError{err: err}
		}
	}
	return nil
}

// guardError is a write the guard refused: it was not sent.
type guardError struct{ err error }

func (e *guardError) Error() string { return "pinterest: write not sent: " + e.err.Error() }
func (e *guardError) Unwrap() error { return e.err }
