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
// it and never sends more than its share in any minute, fixed or sliding.
// The share is a base (SetShare) plus leases (SetLeases): fractions lent by
// other processes, each until a time on this process's clock, checked
// every time a request is granted, so that a process paused past a lease
// (GC, SIGSTOP) does not spend it on waking. When Pinterest answers 429
// the whole category stops here until the reset it names: a 429 is
// pacing, not failure.
//
// It is safe for concurrent use.
type Budget struct {
	perMinute float64 // the app's budget; negative means unlimited
	gauge     prometheus.Gauge
	// now is the clock of shares, leases and pauses (the client's; its
	// waits are real timers).
	now func() time.Time

	mu     sync.Mutex
	base   float64 // SetShare
	leases []Lease // SetLeases, those not lapsed at the last refresh
	share  float64 // in force: base and leases, at most 1
	lim    *rate.Limiter
	// cuts counts the times the share went down: a wait that began before
	// one takes its token again, at the new rate.
	cuts    uint64
	until   time.Time     // paused until (429)
	changed chan struct{} // closed and replaced when share or pause change
	spent   float64       // requests granted, in minutes of the whole budget
	short   time.Time     // when work last waited for want of share
}

// Lease is a fraction of the budget lent to this process until a time of
// its clock.
type Lease struct {
	Fraction float64
	Until    time.Time
}

// NewBudget returns a budget of perMinute requests a minute (negative:
// unlimited) of which this process holds all, with a full bucket.
func NewBudget(perMinute float64) *Budget {
	b := &Budget{perMinute: perMinute, base: 1, share: 1, changed: make(chan struct{}), now: time.Now}
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

// SetShare sets the fraction (0 to 1) of the budget this process holds of
// its own, leases aside, from now on. A share that grows starts from an
// empty bucket, so that the shares of processes handing budget to each
// other never let more through in a minute than the whole budget.
func (b *Budget) SetShare(f float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.base = min(max(f, 0), 1)
	b.refreshLocked(b.now())
}

// SetLeases replaces the fractions lent to this process. Each counts until
// its Until, on the budget's clock; a request is granted only while the
// leases it is paid from hold.
func (b *Budget) SetLeases(ls []Lease) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leases = append(b.leases[:0], ls...)
	b.refreshLocked(b.now())
}

// refreshLocked drops the leases lapsed at now and puts the share they
// leave in force.
func (b *Budget) refreshLocked(now time.Time) {
	f := b.base
	kept := b.leases[:0]
	for _, l := range b.leases {
		if now.Before(l.Until) && l.Fraction > 0 {
			kept = append(kept, l)
			f += l.Fraction
		}
	}
	clear(b.leases[len(kept):])
	b.leases = kept
	b.setLocked(min(max(f, 0), 1), now)
}

// setLocked puts share f in force at now.
func (b *Budget) setLocked(f float64, now time.Time) {
	if f == b.share {
		return
	}
	limit, burst := b.limits(f)
	if b.lim.Burst() == 0 {
		// From nothing: an empty bucket of the new size.
		b.lim = rate.NewLimiter(limit, burst)
		b.lim.AllowN(now, burst)
	} else {
		b.lim.SetLimitAt(now, limit)
		b.lim.SetBurstAt(now, burst)
	}
	if f < b.share {
		b.cuts++
	}
	b.share = f
	b.signalLocked()
	if b.gauge != nil {
		b.gauge.Set(b.perMinuteLocked())
	}
}

// Share is the fraction of the budget this process may spend now: its own
// and the leases that hold.
func (b *Budget) Share() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refreshLocked(b.now())
	return b.share
}

// Whole is the budget of the whole group, in requests a minute (negative:
// unlimited).
func (b *Budget) Whole() float64 { return b.perMinute }

// PerMinute is how many requests a minute this process may send now
// (negative: unlimited).
func (b *Budget) PerMinute() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refreshLocked(b.now())
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
	b.refreshLocked(now)
	if now.Before(b.until) {
		return 0
	}
	if b.lim.Limit() == rate.Inf {
		return math.Inf(1)
	}
	return b.lim.TokensAt(now)
}

// Short records that work waited at now for want of share: a scheduler
// had requests due that the tokens could not pay for. Wait records it too
// when a request waits for a token.
func (b *Budget) Short(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.shortLocked(now)
}

func (b *Budget) shortLocked(now time.Time) {
	if now.After(b.short) {
		b.short = now
	}
}

// LastShort is when work last waited for want of share (zero: never). A
// wait for a 429's reset does not count.
func (b *Budget) LastShort() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.short
}

// Spent is what this process has spent of the budget since it started, in
// minutes of the whole budget: a request is 1/perMinute of one (0 when
// unlimited). Its growth over an interval, divided by the interval in
// minutes, is the fraction of the budget spent meanwhile.
func (b *Budget) Spent() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spent
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

// grantedLocked counts one request granted.
func (b *Budget) grantedLocked() {
	if b.perMinute > 0 {
		b.spent += 1 / b.perMinute
	}
}

// nextLapseLocked is when the first lease that holds lapses (zero: none).
func (b *Budget) nextLapseLocked() time.Time {
	var next time.Time
	for _, l := range b.leases {
		if next.IsZero() || l.Until.Before(next) {
			next = l.Until
		}
	}
	return next
}

// Wait blocks until one request may be sent, or ctx ends. A request whose
// token comes after a lease lapses, or after the share went down, gives
// its token back and waits for one at the new rate.
func (b *Budget) Wait(ctx context.Context) error {
	for {
		b.mu.Lock()
		now := b.now()
		b.refreshLocked(now)
		lim, ch, pause, cuts, lapse := b.lim, b.changed, b.until.Sub(now), b.cuts, b.nextLapseLocked()
		if pause <= 0 && b.perMinute >= 0 && (lim.Burst() == 0 || lim.TokensAt(now) < 1) {
			b.shortLocked(now)
		}
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
				if b.grant(lim, cuts) {
					return nil
				}
				r.CancelAt(b.now())
				continue
			}
			if dl, ok := ctx.Deadline(); ok && dl.Before(now.Add(d)) {
				r.CancelAt(now)
				return fmt.Errorf("pinterest: waiting %s for the budget would pass the deadline: %w", d, context.DeadlineExceeded)
			}
			// Wake when a lease lapses too (the token may not be paid
			// for any more), and when the share changes.
			sleep := d
			if !lapse.IsZero() {
				sleep = min(d, max(lapse.Sub(now), 0))
			}
			t := time.NewTimer(sleep)
			select {
			case <-t.C:
				if sleep < d {
					// A lease lapsed first: the token is given back and
					// taken again at the rate that holds now.
					r.CancelAt(b.now())
					continue
				}
				if b.grant(lim, cuts) {
					return nil
				}
				// The share went down (a lease lapsed, a share was cut)
				// or came from nothing meanwhile: the request was not
				// sent, so its token goes back (a bucket never holds
				// more than its burst) and another is taken at the new
				// rate. Kept spent, a share cut more often than a token
				// comes would never send anything.
				r.CancelAt(b.now())
			case <-ch:
				// The share or the pause changed: a share that grew (a
				// loan came) pays sooner than the token reserved at the
				// old rate, however slow that was.
				t.Stop()
				r.CancelAt(b.now())
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				return context.Cause(ctx)
			}
		}
	}
}

// grant counts a request whose token lim gave, unless the share went down
// or the limiter was replaced since cuts was read: it reports whether the
// request may go.
func (b *Budget) grant(lim *rate.Limiter, cuts uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refreshLocked(b.now())
	if b.lim != lim || b.cuts != cuts {
		return false
	}
	b.grantedLocked()
	return true
}
