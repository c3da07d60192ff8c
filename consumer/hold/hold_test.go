package hold

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
)

// TestWaitHoldsUntilTheFuncLetsGo: while the Func refuses, Wait waits with
// paused set; once it answers nil, Wait returns true with paused cleared.
// A cancelled context ends a hold with false; a nil Func never holds.
func TestWaitHoldsUntilTheFuncLetsGo(t *testing.T) {
	var paused atomic.Bool
	log := slog.New(slog.DiscardHandler)
	asked := 0
	h := func(context.Context) error {
		asked++
		if asked < 3 {
			if asked == 2 && !paused.Load() {
				t.Error("not paused while held")
			}
			return errors.New("credentials refused")
		}
		return nil
	}
	if !Wait(context.Background(), h, &paused, log) || asked != 3 || paused.Load() {
		t.Errorf("Wait: asked %d times, paused %v; want 3 and cleared", asked, paused.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, func(context.Context) error { return errors.New("no") }, &paused, log) {
		t.Error("Wait returned true after its context ended")
	}
	if !Wait(ctx, nil, &paused, log) {
		t.Error("a nil Func held")
	}
}
