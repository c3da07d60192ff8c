package pinterest

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Budget paces one rate-limit category of requests (ads_write or ads_read)
// for this process. Pinterest counts the category per app and user, so
// every process of a deployment spends one budget: each holds a share of
// it (SetShare) and never sends more than its share in any minute, fixed or
// sliding. When Pinterest answers 429 the whole category stops here until
// the reset it names: a 429 is pacing, not failure.
//
// It is safe for concurrent use.
type Budget struct {
	perMinute float64 // the app's budget; negative means unlimited
	gauge     prometheus.Gauge
	// now is the clock of shares and pauses (the client's; its waits are
	// real timers).
	now func() time.Time

	mu      sync.Mutex
	share   float64
	lim     *rate.Limiter
	until   time.Time     // paused until (429)
	changed chan struct{} // closed and replaced when share or pause change
}

// NewBudget returns a budget of perMinute requests a minute (negative:
// unlimited) of which this process holds all, with a full bucket.
func NewBudget(perMinute float64) *Budget {
	b := &Budget{perMinute: perMinute, share: 1, changed: make(chan struct{}), now: time.Now}
	limit, burst := b.limits(1)
	b.lim = rate.NewLimiter(limit, burst)
	return b
}

// limits returns the rate and burst for a share f of the budget: a small
// burst b (about one second's worth) and a rate of (perMinute - b) a
// minute, since a token bucket lets through its burst plus its rate times
// the window, so that no minute, fixed or sliding, sees more than the
// share.
func (b *Budget) limits(f float64) (rate.Limit, int) {
	if b.perMinute < 0 {
		return rate.Inf, 1
	}
	pm := b.perMinute * f
	if pm <= 0 {
		return 0, 0
	}
	burst := max(1, int(pm/60))
	if r := pm - float64(burst); r > 0 {
		return rate.Limit(r / 60), burst
	}
	return rate.Limit(pm / 60), 1
}

// SetShare sets the fraction (0 to 1) of the budget this process may
// spend from now on. A share that grows starts from an empty bucket, so
// that the shares of processes handing budget to each other never let
// more through in a minute than the whole budget.
func (b *Budget) SetShare(f float64) {
	f = min(max(f, 0), 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if f == b.share {
		return
	}
	now := b.now()
	limit, burst := b.limits(f)
	if b.lim.Burst() == 0 {
		// From nothing: an empty bucket of the new size.
		b.lim = rate.NewLimiter(limit, burst)
		b.lim.AllowN(now, burst)
	} else {
		b.lim.SetLimitAt(now, limit)
		b.lim.SetBurstAt(now, burst)
	}
	b.share = f
	b.signalLocked()
	if b.gauge != nil {
		b.gauge.Set(b.perMinuteLocked())
	}
}

// PerMinute is how many requests a minute this process may send now
// (negative: unlimited).
func (b *Budget) PerMinute() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.perMinuteLocked()
}

func (b *Budget) perMinuteLocked() float64 {
	if b.perMinute < 0 {
		return -1
	}
	return b.perMinute * b.share
}

// Tokens is how many requests may be sent at now without waiting: none
// while paused after a 429.
func (b *Budget) Tokens(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.until) {
		return 0
	}
	if b.lim.Limit() == rate.Inf {
		return math.Inf(1)
	}
	return b.lim.TokensAt(now)
}

// Pause stops every request of the category until until (Pinterest's
// reset after a 429).
func (b *Budget) Pause(until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if until.After(b.until) {
		b.until = until
		b.signalLocked()
	}
}

func (b *Budget) signalLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Wait blocks until one request may be sent, or ctx ends.
func (b *Budget) Wait(ctx context.Context) error {
	for {
		b.mu.Lock()
		now := b.now()
		lim, ch, pause := b.lim, b.changed, b.until.Sub(now)
		b.mu.Unlock()
		switch {
		case pause > 0:
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ch:
				t.Stop()
			case <-ctx.Done():
				t.Stop()
				return context.Cause(ctx)
			}
		case lim.Burst() == 0:
			// No share at all: wait for one.
			select {
			case <-ch:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		default:
			r := lim.ReserveN(now, 1)
			if !r.OK() {
				return fmt.Errorf("pinterest: budget cannot grant a request")
			}
			d := r.DelayFrom(now)
			if d == 0 {
				return nil
			}
			if dl, ok := ctx.Deadline(); ok && dl.Before(now.Add(d)) {
				r.CancelAt(now)
				return fmt.Errorf("pinterest: waiting %s for the budget would pass the deadline: %w", d, context.DeadlineExceeded)
			}
			t := time.NewTimer(d)
			select {
			case <-t.C:
				b.mu.Lock()
				stale := b.lim != lim
				b.mu.Unlock()
				if !stale {
					return nil
				}
				// The share came from nothing meanwhile: take a token of
				// the new bucket.
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				return context.Cause(ctx)
			}
		}
	}
}
