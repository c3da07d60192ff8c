// Package hold pauses a stage's poll loop while something outside it says
// that nothing read now could be done with (Pinterest refused the
// credentials, the changes topic is no longer the one the deployment
// placed its lists in): both stages poll through it.
package hold

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Func says why fetching must wait; nil to go on.
type Func func(context.Context) error

// Poll is how often a held loop asks again, and the longest a poll may
// wait for records while a Func is set (so that it does not outlast the
// moment the Func holds).
const Poll = 500 * time.Millisecond

// Wait waits while h holds, with paused set, and reports false when ctx
// ends first. A nil h never holds.
func Wait(ctx context.Context, h Func, paused *atomic.Bool, log *slog.Logger) bool {
	if h == nil {
		return true
	}
	for held := false; ; {
		err := h(ctx)
		if err == nil {
			if held {
				paused.Store(false)
				log.Info("fetching resumed")
			}
			return true
		}
		if !held {
			held = true
			paused.Store(true)
			log.Warn("fetching paused until this is dealt with", "err", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(Poll):
		}
	}
}

// PollContext bounds one poll by Poll when h is set.
func PollContext(ctx context.Context, h Func) (context.Context, context.CancelFunc) {
	if h == nil {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, Poll)
}
