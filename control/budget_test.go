package control_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/pinsync/pinsync/control"
)

// TestBudgetRecordsReachEveryMemberAndANewcomer: a want, a grant and a
// return appended by one process reach another's watcher in the log's
// order, each as written; a process that opens the topic afterwards is
// handed the latest record of each member's keys when it starts watching,
// and a withdrawn key is not among them.
func TestBudgetRecordsReachEveryMemberAndANewcomer(t *testing.T) {
	kopts := cluster(t)
	a, b := openTopic(t, kopts), openTopic(t, kopts)
	var mu sync.Mutex
	var seen []control.BudgetRecord
	stop := b.WatchBudget(func(r control.BudgetRecord) {
		mu.Lock()
		defer mu.Unlock()
		r.Time = r.Time.UTC().Truncate(0)
		seen = append(seen, r)
	})
	defer stop()
	ctx := t.Context()
	recs := []control.BudgetRecord{
		{Kind: control.BudgetWant, Borrower: "b1", Seq: 1},
		{Kind: control.BudgetGrant, Lender: "l1", Borrower: "b1", Seq: 1, Fraction: 0.25},
		{Kind: control.BudgetReturn, Lender: "l1", Borrower: "b1", Seq: 1},
		{Kind: control.BudgetWant, Borrower: "b1", Seq: 2},
	}
	for _, r := range recs {
		if err := a.PublishBudget(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	if len(got) != len(recs) {
		t.Fatalf("watcher saw %d records, want %d: %+v", len(got), len(recs), got)
	}
	for i, r := range got {
		if r.Time.IsZero() {
			t.Errorf("record %d has no time", i)
		}
		r.Time = recs[i].Time
		if r != recs[i] {
			t.Errorf("record %d: %+v, want %+v", i, r, recs[i])
		}
	}

	if err := a.WithdrawBudget(ctx, control.BudgetRecord{Kind: control.BudgetReturn, Borrower: "b1"}); err != nil {
		t.Fatal(err)
	}
	c := openTopic(t, kopts)
	if err := c.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	var replayed []control.BudgetRecord
	c.WatchBudget(func(r control.BudgetRecord) { replayed = append(replayed, r) })()
	kinds := map[control.BudgetKind]control.BudgetRecord{}
	for _, r := range replayed {
		kinds[r.Kind] = r
	}
	if len(replayed) != 2 || kinds[control.BudgetWant].Seq != 2 || kinds[control.BudgetGrant].Fraction != 0.25 {
		t.Errorf("a newcomer was handed %+v; want the latest want (seq 2) and the grant, not the withdrawn return", replayed)
	}

	for _, bad := range []control.BudgetRecord{
		{Borrower: "b1", Seq: 3},
		{Kind: control.BudgetGrant, Lender: "l1", Seq: 1, Fraction: 0.5},
		{Kind: control.BudgetGrant, Lender: "l1", Borrower: "b1", Seq: 1, Fraction: 1.5},
		{Kind: control.BudgetWant, Borrower: "b/1", Seq: 1},
	} {
		if err := a.PublishBudget(ctx, bad); err == nil {
			t.Errorf("%+v was appended", bad)
		}
	}
}
