package lending

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
)

// clock is a clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// budget is a member's write budget as the pool sets it: what it may
// spend at a time is its own share plus the leases that hold then.
type budget struct {
	now    func() time.Time
	mu     sync.Mutex
	own    float64
	leases []pinterest.Lease
	short  time.Time
	spent  float64
}

func (b *budget) SetShare(f float64) { b.mu.Lock(); defer b.mu.Unlock(); b.own = f }
func (b *budget) SetLeases(ls []pinterest.Lease) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leases = append([]pinterest.Lease(nil), ls...)
}
func (b *budget) Share() float64 { return b.shareAt(b.now()) }
func (b *budget) shareAt(t time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.own
	for _, l := range b.leases {
		if t.Before(l.Until) {
			f += l.Fraction
		}
	}
	return min(f, 1)
}
func (b *budget) Tokens(time.Time) float64 { return 0 }
func (b *budget) Short(t time.Time)        { b.mu.Lock(); defer b.mu.Unlock(); b.short = t }
func (b *budget) LastShort() time.Time     { b.mu.Lock(); defer b.mu.Unlock(); return b.short }
func (b *budget) Spent() float64           { b.mu.Lock(); defer b.mu.Unlock(); return b.spent }
func (b *budget) PerMinute() float64       { return 400 }
func (b *budget) Whole() float64           { return 400 }

// exchange is a control topic in memory: a record reaches every watcher
// when it is appended, with the clock's time.
type exchange struct {
	now      func() time.Time
	mu       sync.Mutex
	watchers []func(control.BudgetRecord)
	log      []control.BudgetRecord
}

func (e *exchange) WatchBudget(fn func(control.BudgetRecord)) func() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.watchers = append(e.watchers, fn)
	return func() {}
}

func (e *exchange) PublishBudget(_ context.Context, r control.BudgetRecord) error {
	r.Time = e.now()
	e.mu.Lock()
	e.log = append(e.log, r)
	ws := append([]func(control.BudgetRecord){}, e.watchers...)
	e.mu.Unlock()
	for _, fn := range ws {
		fn(r)
	}
	return nil
}

func (e *exchange) WithdrawBudget(context.Context, control.BudgetRecord) error { return nil }
func (e *exchange) CatchUp(context.Context) error                              { return nil }

// group is members lending through one exchange, on one clock.
type group struct {
	t       *testing.T
	clk     *clock
	ex      *exchange
	pools   []*Pool
	budgets []*budget
}

const lease = 4 * time.Second

func newGroup(t *testing.T, shares ...float64) *group {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := &group{t: t, clk: clk, ex: &exchange{now: clk.now}}
	for _, s := range shares {
		b := &budget{now: clk.now}
		p, err := New(Config{Lease: lease}, Deps{Budget: b, Exchange: g.ex, Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		g.ex.WatchBudget(p.apply)
		p.SetShare(s)
		g.pools, g.budgets = append(g.pools, p), append(g.budgets, b)
	}
	g.step()
	// The group has formed: no rebalance for a lease and a margin.
	g.run(lease + Margin)
	return g
}

// step runs every member's step once, and checks that the members may
// spend no more than the whole budget now.
func (g *group) step() {
	g.t.Helper()
	for _, p := range g.pools {
		p.step(context.Background())
	}
	g.checkSum()
}

func (g *group) checkSum() {
	g.t.Helper()
	sum := 0.0
	for _, b := range g.budgets {
		sum += b.Share()
	}
	if sum > 1+1e-9 {
		g.t.Fatalf("at %s the members may spend %.4f of the budget: %v", g.clk.now().Format(time.StampMilli), sum, g.shares())
	}
}

func (g *group) shares() []float64 {
	var out []float64
	for _, b := range g.budgets {
		out = append(out, math.Round(b.Share()*1e4)/1e4)
	}
	return out
}

// run moves the clock by d in steps of 100ms, stepping the members, with
// the members in short short of budget all along.
func (g *group) run(d time.Duration, short ...int) {
	g.t.Helper()
	for end := g.clk.now().Add(d); g.clk.now().Before(end); {
		g.clk.add(100 * time.Millisecond)
		for _, i := range short {
			g.budgets[i].Short(g.clk.now())
		}
		g.step()
	}
}

func TestIdleMemberLendsItsShareToTheShortOne(t *testing.T) {
	g := newGroup(t, 0.5, 0.5)
	g.run(3*time.Second, 1)
	if got := g.shares(); got[0] != 0 || got[1] != 1 {
		t.Fatalf("shares %v, want [0 1]: the idle member lends all its share", got)
	}
	// Still short a minute later: the loans are renewed before they lapse.
	g.run(time.Minute, 1)
	if got := g.shares(); got[0] != 0 || got[1] != 1 {
		t.Fatalf("shares a minute on %v, want [0 1]", got)
	}
}

func TestLenderKeepsTwiceWhatItSpends(t *testing.T) {
	g := newGroup(t, 0.5, 0.5)
	// The first member spends a tenth of the budget: 40 writes a minute.
	for range 100 {
		g.budgets[0].mu.Lock()
		g.budgets[0].spent += 0.1 * 0.1 / 60
		g.budgets[0].mu.Unlock()
		g.run(100*time.Millisecond, 1)
	}
	if got := g.shares(); math.Abs(got[0]-0.2) > 0.01 || math.Abs(got[1]-0.8) > 0.01 {
		t.Fatalf("shares %v, want [0.2 0.8]", got)
	}
}

func TestShortMembersSplitWhatIsLent(t *testing.T) {
	g := newGroup(t, 0.4, 0.3, 0.3)
	g.run(5*time.Second, 1, 2)
	if got := g.shares(); got[0] != 0 || got[1] != 0.5 || got[2] != 0.5 {
		t.Fatalf("shares %v, want [0 0.5 0.5]", got)
	}
}

func TestLoansLapseWhenTheBorrowerStopsAsking(t *testing.T) {
	g := newGroup(t, 0.5, 0.5)
	g.run(3*time.Second, 1)
	// The borrower is no longer short (or is paused, or dead): its lease
	// ends on its clock, the lender's hold a margin later.
	var lapsed, back time.Time
	for end := g.clk.now().Add(2 * lease); g.clk.now().Before(end); {
		g.run(100 * time.Millisecond)
		s := g.shares()
		if lapsed.IsZero() && s[1] == 0.5 {
			lapsed = g.clk.now()
		}
		if back.IsZero() && s[0] == 0.5 {
			back = g.clk.now()
		}
	}
	if lapsed.IsZero() || back.IsZero() || back.Sub(lapsed) < Margin {
		t.Fatalf("loan lapsed at the borrower at %v, back at the lender at %v: want it back a margin (%s) after it lapsed", lapsed, back, Margin)
	}
}

func TestPausedBorrowerFindsItsLeaseLapsed(t *testing.T) {
	g := newGroup(t, 0.5, 0.5)
	g.run(3*time.Second, 1)
	// The borrower stops (SIGSTOP): no step, no want. The lender goes on.
	lender, borrower := g.pools[0], g.budgets[1]
	for end := g.clk.now().Add(2 * lease); g.clk.now().Before(end); {
		g.clk.add(100 * time.Millisecond)
		lender.step(context.Background())
		g.checkSum() // the borrower's budget checks the lease's end itself
	}
	if s := g.budgets[0].Share(); s != 0.5 {
		t.Fatalf("the lender holds %.2f after the borrower paused past its lease, want its 0.5", s)
	}
	if s := borrower.Share(); s != 0.5 {
		t.Fatalf("the paused borrower may spend %.2f on waking, want its own 0.5", s)
	}
}

func TestLenderShortGetsItsShareBack(t *testing.T) {
	g := newGroup(t, 0.5, 0.5)
	g.run(3*time.Second, 1)
	// The lender gets work: the borrower gives the loan back before its
	// lease ends, and the lender spends its share again a margin later.
	g.run(Margin+time.Second, 0, 1)
	if got := g.shares(); got[0] != 0.5 || got[1] != 0.5 {
		t.Fatalf("shares %v, want [0.5 0.5] once the lender is short too", got)
	}
	returned := false
	for _, r := range g.ex.log {
		returned = returned || r.Kind == control.BudgetReturn
	}
	if !returned {
		t.Fatal("the borrower never wrote a return")
	}
}

func TestGrowingShareWaitsForLoansOfThePartitionsEarlierOwner(t *testing.T) {
	g := newGroup(t, 0.5, 0.5, 0)
	g.run(3*time.Second, 1)
	// A partition moves from the lender (who lent all its share) to the
	// third member: the lender's share goes down at once, the third's
	// grows only once the loans it read may have lapsed.
	g.pools[0].SetShare(0.25)
	g.pools[2].SetShare(0.25)
	g.checkSum()
	if s := g.budgets[2].Share(); s != 0 {
		t.Fatalf("the new owner spends %.2f at once, while the loan of the partition is held", s)
	}
	g.run(lease+Margin+time.Second, 1, 2)
	if s := g.budgets[2].Share(); s < 0.25 {
		t.Fatalf("the new owner spends %.2f a lease and a margin on, want at least its 0.25", s)
	}
}

func TestGrowingShareIsInForceAtOnceWithNoLoanAbout(t *testing.T) {
	g := newGroup(t, 1, 0)
	g.pools[0].SetShare(0.5)
	g.pools[1].SetShare(0.5)
	g.step()
	if got := g.shares(); got[0] != 0.5 || got[1] != 0.5 {
		t.Fatalf("shares %v, want [0.5 0.5]: no grant was ever read", got)
	}
}

func TestNoLendingWithoutExchange(t *testing.T) {
	b := &budget{now: time.Now}
	p, err := New(Config{Lease: lease}, Deps{Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	p.SetShare(0.3)
	if p.Lending() || b.Share() != 0.3 {
		t.Fatalf("lending %v, share %.2f; want no lending and the partitions' 0.3", p.Lending(), b.Share())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		lease time.Duration
		ok    bool
	}{{0, true}, {MinLease, true}, {time.Minute, true}, {MinLease - 1, false}, {-time.Second, false}} {
		if err := (Config{Lease: c.lease}).Validate(); (err == nil) != c.ok {
			t.Errorf("Lease %s: %v", c.lease, err)
		}
	}
}

// work is windows holding calls to make.
type work struct{ calls int }

func (w *work) PendingCalls() int { return w.calls }

func TestMemberKeepsWhatItsWaitingWindowsNeed(t *testing.T) {
	g := newGroup(t, 0.5, 0.5)
	// 5 calls to make within the horizon (a lease here) at 400 a minute:
	// 0.1875 of the budget, kept by the first member.
	w := &work{calls: 5}
	g.pools[0].work = w
	g.run(3*time.Second, 1)
	keep := 5 / (400 * lease.Minutes())
	if got := g.shares(); math.Abs(got[0]-keep) > 0.01 || math.Abs(got[1]-(1-keep)) > 0.01 {
		t.Fatalf("shares %v, want [%.4f %.4f]", got, keep, 1-keep)
	}
	// Its windows are sent: it lends the rest.
	w.calls = 0
	g.run(3*time.Second, 1)
	if got := g.shares(); got[0] != 0 || got[1] != 1 {
		t.Fatalf("shares %v once the windows are empty, want [0 1]", got)
	}
}

func TestNoLoanRightAfterARebalance(t *testing.T) {
	g := newGroup(t, 0.5, 0.5)
	g.pools[0].SetShare(0.5) // a rebalance that leaves it its partitions
	g.run(lease+Margin-200*time.Millisecond, 1)
	if got := g.shares(); got[0] != 0.5 || got[1] != 0.5 {
		t.Fatalf("shares %v within a lease and a margin of a rebalance, want [0.5 0.5]", got)
	}
	g.run(2*time.Second, 1)
	if got := g.shares(); got[0] != 0 || got[1] != 1 {
		t.Fatalf("shares %v once the rebalance is a lease and a margin old, want [0 1]", got)
	}
}
