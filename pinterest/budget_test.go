package pinterest

import (
	"runtime"
	"testing"
	"time"
)

// TestBudgetLeasesCountUntilTheyLapse: a budget's share is its own plus
// the leases that hold at the budget's clock, and what it may spend goes
// down the moment one lapses, without anyone telling it.
func TestBudgetLeasesCountUntilTheyLapse(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBudget(600)
	b.now = func() time.Time { return now }
	b.SetShare(0.25)
	b.SetLeases([]Lease{{Fraction: 0.25, Until: now.Add(2 * time.Second)}, {Fraction: 0.5, Until: now.Add(5 * time.Second)}})
	for _, c := range []struct {
		at    time.Duration
		share float64
	}{{0, 1}, {time.Second, 1}, {2 * time.Second, 0.75}, {4 * time.Second, 0.75}, {5 * time.Second, 0.25}, {time.Minute, 0.25}} {
		now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(c.at)
		if got := b.Share(); got != c.share {
			t.Errorf("at +%s: share %.2f, want %.2f", c.at, got, c.share)
		}
		if got, want := b.PerMinute(), 600*c.share; got != want {
			t.Errorf("at +%s: %.0f a minute, want %.0f", c.at, got, want)
		}
	}
}

// TestBudgetShareNeverPassesTheWhole: own share and leases beyond the
// whole budget (a lender and a rebalance racing) spend the whole budget at
// most.
func TestBudgetShareNeverPassesTheWhole(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBudget(400)
	b.now = func() time.Time { return now }
	b.SetShare(0.75)
	b.SetLeases([]Lease{{Fraction: 0.5, Until: now.Add(time.Second)}})
	if got := b.Share(); got != 1 {
		t.Fatalf("share %.2f, want 1", got)
	}
}

// TestBudgetCountsWhatItGrantsAndWhenItWasShort: Spent grows by one
// request's part of a minute of the budget for each token taken, and a
// scheduler's Short is remembered.
func TestBudgetCountsWhatItGrantsAndWhenItWasShort(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBudget(60)
	b.now = func() time.Time { return now }
	for range 3 {
		if !b.grant(b.lim, b.cuts) {
			t.Fatal("a grant with no cut in between was refused")
		}
	}
	if got := b.Spent(); got < 0.05-1e-9 || got > 0.05+1e-9 {
		t.Errorf("spent %.4f minutes of the budget, want 3/60", got)
	}
	cuts := b.cuts
	b.SetShare(0.5)
	if b.grant(b.lim, cuts) {
		t.Error("a token taken before the share went down was granted after")
	}
	if !b.LastShort().IsZero() {
		t.Fatal("short before anything waited")
	}
	b.Short(now)
	if !b.LastShort().Equal(now) {
		t.Errorf("last short %v, want %v", b.LastShort(), now)
	}
}

// TestWaitAtATinyShareEndsWhenTheShareGrows: a request waiting for a token
// of a share so small that the next comes in days is granted once a loan
// makes the share grow, without waiting for the token it reserved first.
func TestWaitAtATinyShareEndsWhenTheShareGrows(t *testing.T) {
	b := NewBudget(60)
	ctx := t.Context()
	if err := b.Wait(ctx); err != nil { // the full bucket's one token
		t.Fatal(err)
	}
	b.SetShare(0.0001) // a token every 10,000 minutes
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx) }()
	for b.LastShort().IsZero() { // the wait has begun
		select {
		case err := <-done:
			t.Fatalf("granted at a share of 0.0001 with an empty bucket: %v", err)
		default:
			runtime.Gosched()
		}
	}
	b.SetLeases([]Lease{{Fraction: 0.9999, Until: time.Now().Add(time.Hour)}})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the wait outlived the share's growth by a minute: it waits for the token it reserved at the tiny share")
	}
}
