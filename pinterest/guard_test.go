package pinterest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas/ident"
)

// TestWriteGuardAnswerTooOldIsAskedAgain: a process paused between asking
// the write guard and sending the write (the clock jumps while the guard
// answers) asks again; when the second answer refuses, nothing is sent.
// A guard that is never fast enough lets nothing through either; a fresh
// answer lets the write go.
func TestWriteGuardAnswerTooOldIsAskedAgain(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	l, err := e.client.CreateCustomerList(ctx, testAccount, "pinsync vip EMAIL", ident.Email, hashes("a", 3))
	if err != nil {
		t.Fatal(err)
	}
	moved := errors.New("the partition moved")
	writes := func() int { return len(e.listRecords(l.ID)) }

	asked := 0
	paused := WithWriteGuard(ctx, func(context.Context) error {
		asked++
		if asked == 1 {
			e.clock.Advance(7 * time.Second) // frozen while the answer was on its way
			return nil
		}
		return moved
	})
	if err := e.client.UpdateCustomerList(paused, testAccount, l.ID, Add, hashes("b", 2)); !errors.Is(err, moved) {
		t.Errorf("write after a paused check: %v; want the second check's refusal", err)
	}
	if asked != 2 || writes() != 3 {
		t.Errorf("guard asked %d times, list holds %d records; want 2 and 3 (nothing sent)", asked, writes())
	}

	slow := WithWriteGuard(ctx, func(context.Context) error {
		e.clock.Advance(2 * time.Second)
		return nil
	})
	if err := e.client.UpdateCustomerList(slow, testAccount, l.ID, Add, hashes("c", 2)); !errors.Is(err, errGuardSlow) {
		t.Errorf("write behind a guard that is always slow: %v; want errGuardSlow", err)
	}
	if writes() != 3 {
		t.Errorf("list holds %d records; want 3 (nothing sent)", writes())
	}

	fresh := WithWriteGuard(ctx, func(context.Context) error { return nil })
	if err := e.client.UpdateCustomerList(fresh, testAccount, l.ID, Add, hashes("d", 2)); err != nil {
		t.Fatalf("write behind a fresh guard: %v", err)
	}
	if writes() != 5 {
		t.Errorf("list holds %d records; want 5", writes())
	}
}

// TestOldBudgetTokenIsTakenAgain: a write whose budget token was given
// more than a second before it was ready to leave (here the write guard
// was slow once: the process may have slept past a lease that paid for
// the token) takes another token before it goes: the budget is charged
// twice for the one request that Pinterest sees.
func TestOldBudgetTokenIsTakenAgain(t *testing.T) {
	const perMinute = 600
	e := newEnv(t, envOpts{config: func(c *Config) { c.WritesPerMinute = perMinute }})
	ctx := context.Background()
	l, err := e.client.CreateCustomerList(ctx, testAccount, "pinsync vip EMAIL", ident.Email, hashes("a", 3))
	if err != nil {
		t.Fatal(err)
	}
	before := e.client.WriteBudget().Spent()
	asked := 0
	slowOnce := WithWriteGuard(ctx, func(context.Context) error {
		asked++
		if asked == 1 {
			e.clock.Advance(3 * time.Second)
		}
		return nil
	})
	if err := e.client.UpdateCustomerList(slowOnce, testAccount, l.ID, Add, hashes("b", 2)); err != nil {
		t.Fatal(err)
	}
	if got := (e.client.WriteBudget().Spent() - before) * perMinute; got < 2-1e-9 || got > 2+1e-9 {
		t.Errorf("the write took %.2f tokens of the budget, want 2 (its first token had grown old)", got)
	}
	if n := len(e.listRecords(l.ID)); n != 5 {
		t.Errorf("list holds %d records, want 5", n)
	}
}
