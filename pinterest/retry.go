package pinterest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// retryPolicy bounds a retry loop. It knows nothing about HTTP: the caller
// says which errors are worth another attempt and how long an error asks to
// be waited for.
type retryPolicy struct {
	MaxAttempts int           // total attempts, at least 1
	BaseBackoff time.Duration // wait before the second attempt, before jitter
	MaxBackoff  time.Duration // cap of any single wait
	// Retryable reports whether err is worth another attempt.
	Retryable func(err error) bool
	// Wait returns how long err asks to be waited for (0: use backoff).
	Wait func(err error) time.Duration
	// OnRetry, if set, is told about each retry before its wait.
	OnRetry func(attempt int, wait time.Duration, err error)
}

// backoff returns the jittered exponential wait after attempt n (1-based):
// uniformly in [d/2, d] where d = BaseBackoff·2^(n-1), capped at MaxBackoff.
func (p retryPolicy) backoff(n int) time.Duration {
	d := p.BaseBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// retry calls op until it succeeds, fails with an error the policy does not
// retry, the attempts run out or ctx ends. It returns the last error op
// returned, wrapped with ctx's error if ctx ended first. A requested wait
// longer than MaxBackoff, or past ctx's deadline, ends the loop at once:
// the caller is better placed to reschedule than to block.
func retry(ctx context.Context, p retryPolicy, op func(ctx context.Context, attempt int) error) error {
	var last error
	for attempt := 1; ; attempt++ {
		err := op(ctx, attempt)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return giveUp(ctx, attempt, last, err)
		}
		last = err
		if attempt >= p.MaxAttempts || !p.Retryable(err) {
			return err
		}
		wait := p.backoff(attempt)
		if p.Wait != nil {
			if w := p.Wait(err); w > 0 {
				if w > p.MaxBackoff {
					return err
				}
				wait = w
			}
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp(ctx, attempt, last, nil)
		case <-t.C:
		}
	}
}

// giveUp builds the error for a loop ended by ctx: ctx's error, plus the
// last real error (not one caused by the cancellation itself).
func giveUp(ctx context.Context, attempts int, last, current error) error {
	if current != nil && !errors.Is(current, context.Canceled) && !errors.Is(current, context.DeadlineExceeded) {
		last = current
	}
	if last == nil {
		return fmt.Errorf("pinterest: %w", context.Cause(ctx))
	}
	return fmt.Errorf("pinterest: %w after %d attempt(s); last error: %w", context.Cause(ctx), attempts, last)
}
