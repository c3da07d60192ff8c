// Package lending lets the list stage's members spend the group's whole
// write budget wherever the work is: a member lends the share of the budget
// it does not use to the members short of budget, each loan for a short
// lease, through the control topic (package control's BudgetRecord).
//
// A member's own share is the fraction of the changes topic's partitions
// it owns (set at every rebalance). On its own that leaves budget unused
// whenever lists are spread unevenly: a member with nothing to send holds
// its share while another waits. The protocol, run by every member's Pool:
//
//  1. Want. A member short of budget (due windows its tokens cannot pay
//     for, a request waiting for a token) notes the time t on its own
//     clock, then appends a want (its name, a sequence number); again every
//     quarter of a lease while it stays short.
//  2. Grant. A member that has not been short for a quarter of a lease,
//     holds no loan and had no rebalance for a lease and a margin lends
//     what it does not need (its own share less twice the fraction it
//     spent over the last quarter of a lease, less what sends the calls
//     its windows wait to make within the flush interval), split evenly
//     between the members short now, never more than is free. It lowers
//     its own budget first, then appends a grant (lender, borrower, the
//     want's sequence number, the fraction), and holds the fraction lent
//     until its own clock passes the grant's acknowledgement plus a lease
//     plus a margin.
//  3. Borrow. The borrower that reads a grant of one of its wants spends the
//     fraction until t + lease on its own clock (t as noted before the want
//     was appended), the latest grant of each lender replacing the earlier
//     ones. The budget checks the lease every time it grants a request, and
//     the client drops a token more than a second old just before the
//     request leaves.
//  4. Return. A lender that becomes short appends a want like any member.
//     A borrower holding its loan gives it back when it reads that want: it
//     drops the lease from its budget first, then appends a return (the
//     latest grant's sequence number); the lender, reading it, holds those
//     loans for one more margin only. A borrower that does not answer (dead,
//     paused) leaves the loans to lapse.
//
// Why the group never spends more than its budget: a lender's share goes
// down before its grant exists, so before any borrower can read it; a
// borrower's lease ends at t + lease, t being before its want was
// appended, so before the lender read it and before the grant was
// acknowledged: the lender's hold, from the acknowledgement plus the same
// lease plus a margin, outlasts it; and a returned lease is gone from the
// borrower's budget before its return exists. The margin covers the second
// a token may wait before its request leaves, and the rates of two clocks.
// Each side measures only durations on its own monotonic clock, so clocks
// set apart (skew) do not matter. A borrower that dies holding a loan
// leaves it to lapse at the lender within a lease and a margin. A borrower
// paused (GC, SIGSTOP) past its lease finds it lapsed when it wakes, before
// it spends anything: the budget checks the lease at every grant, and the
// client the token's age before sending. A lender paused keeps its own
// budget down until its hold lapses.
//
// A partition moving at a rebalance carries its share to its new owner,
// while its old owner may have lent it: a member whose own share grows
// waits before spending the growth until every grant appended before (it
// reads the log up to its end; a member that starts is handed the latest
// records) has lapsed, at most a lease and a margin. The old owner's share
// goes down only once the grants it decided are in the log, so the new
// owner reads them. A lender paused past its session while a grant of it
// was on its way is covered by the lease being at most the session
// timeout: the grant's lease started before the pause.
// Record timestamps (the appender's clock) serve only to tell a grant too
// old to matter (a lease, a margin and a minute of clock skew) from a
// recent one, and a want too old to answer.
//
// With no control topic (kafka.control_topic "-") or a lease of zero,
// each member spends its own share only, as a Pool with no Exchange does.
//
// It does not pace requests (package pinterest's Budget does) nor decide
// what is sent (package lists).
package lending

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
)

// Budget is the write budget a Pool shares. *pinterest.Budget implements
// it.
type Budget interface {
	// SetShare sets the fraction of the group's budget this member holds
	// of its own; SetLeases the fractions lent to it, each until a time of
	// its clock.
	SetShare(fraction float64)
	SetLeases([]pinterest.Lease)
	// Share is the fraction it may spend now, its own and its leases.
	Share() float64
	// Tokens is how many requests may be sent at now without waiting.
	Tokens(now time.Time) float64
	// Short records that work waited at now for want of budget, and
	// LastShort is when it last did (the budget records its own waits).
	Short(now time.Time)
	LastShort() time.Time
	// Spent is the budget spent so far, in minutes of the whole budget.
	Spent() float64
	// Whole is the group's budget in requests a minute (negative:
	// unlimited).
	Whole() float64
	// PerMinute is negative when the budget is unlimited.
	PerMinute() float64
}

// Exchange is the log the members share. *control.Topic implements it.
type Exchange interface {
	WatchBudget(func(control.BudgetRecord)) (stop func())
	PublishBudget(context.Context, control.BudgetRecord) error
	WithdrawBudget(context.Context, control.BudgetRecord) error
	// CatchUp returns once every record written before the call was
	// handed to the watchers.
	CatchUp(context.Context) error
}

// Config configures a Pool.
type Config struct {
	// Lease is how long a loan lasts (sync.budget_lease). Zero: no
	// lending.
	Lease time.Duration
	// Horizon is the time within which the calls its windows wait to make
	// are due (sync.flush_interval): a member keeps the share that sends
	// them within it. Zero: a lease.
	Horizon time.Duration
}

// Work is the member's windows as the pool sees them. *window.Set
// implements it.
type Work interface {
	// PendingCalls is how many write calls the changes waiting need.
	PendingCalls() int
}

// Validate reports an impossible lease.
func (c Config) Validate() error {
	if c.Lease < 0 || c.Lease > 0 && c.Lease < MinLease {
		return fmt.Errorf("lending: Lease must be 0 or at least %s, got %s", MinLease, c.Lease)
	}
	return nil
}

// MinLease is the shortest lease: time for a want and a grant to go
// through the control topic, with room to spare.
const MinLease = time.Second

// Margin is what a lender holds a loan beyond the borrower's lease: the
// second a request may wait between its token and the wire (see
// pinterest's write guard), and a second for the rates of two clocks and
// the network.
const Margin = 2 * time.Second

// skewTolerance bounds how far apart the replicas' clocks may be for a
// record's timestamp to tell that it is old: a grant older than a lease, a
// margin and this is left out of the wait of a growing share.
const skewTolerance = time.Minute

// publishTimeout bounds one append to the control topic.
const publishTimeout = 5 * time.Second

// minGrant is the smallest fraction lent: less is not worth a record.
const minGrant = 0.01

// Deps are a Pool's collaborators.
type Deps struct {
	// Budget is the member's write budget. Required.
	Budget Budget
	// Work is the member's windows; nil: the pool keeps nothing for
	// changes that wait.
	Work Work
	// Exchange is the control topic; nil means no lending.
	Exchange Exchange
	// Logger receives the pool's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the pool's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now). Leases are durations on it.
	Now func() time.Time
}

// Pool is one member's part in the lending: it sets the member's budget
// to its own share, less what it lent, plus what it borrowed. Create it
// with New, run it with Run. Its methods are safe for concurrent use.
type Pool struct {
	cfg    Config
	budget Budget
	work   Work
	ex     Exchange
	log    *slog.Logger
	now    func() time.Time
	name   string
	m      *metrics
	kick   chan struct{}

	mu sync.Mutex
	// own is the share the member's partitions give it, inForce the part
	// of it in force: a growth waits until growAt (zero: none waits),
	// once the log is read to its end when catchUp is set.
	own, inForce float64
	growAt       time.Time
	catchUp      bool
	// setAt is when the share was last set (a rebalance): the member lends
	// nothing for a lease and a margin after.
	setAt time.Time
	// lent are the loans this member made, by borrower.
	lent map[string][]loan
	// borrowed are the latest grants to this member, by lender, and
	// wants its own wants, by sequence number: when each was noted.
	borrowed map[string]borrowing
	wants    map[uint64]time.Time
	seq      uint64
	lastWant time.Time
	// others are the latest wants of the other members, by name.
	others map[string]*want
	// grantSeen is when a grant that may still be held was last read;
	// granted is set once this member wrote one.
	grantSeen time.Time
	granted   bool
	// appending counts the grants decided but not yet appended: a share
	// that goes down waits for them (idle), so that a partition's next
	// owner, reading the log to its end, sees every grant made of it.
	appending int
	idle      *sync.Cond
	// returns are the returns to append: loans this member dropped when
	// their lender wanted budget back, by lender.
	returns map[string]uint64
	// returned is the latest grant given back to each lender: an older
	// one read late is not taken again.
	returned map[string]uint64
	// used is the fraction of the budget spent over the last quarter of a
	// lease, from the spent figure and time at mark.
	used      float64
	markSpent float64
	markAt    time.Time
}

// loan is a fraction lent, held until until (zero: until the grant is
// acknowledged).
type loan struct {
	seq      uint64 // the want it answers
	fraction float64
	until    time.Time
}

// borrowing is the latest grant of one lender to this member.
type borrowing struct {
	seq      uint64
	fraction float64
	until    time.Time
}

// want is another member's latest want.
type want struct {
	seq      uint64
	read     time.Time
	answered bool
}

// New returns a Pool of deps.Budget.
func New(cfg Config, deps Deps) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Budget == nil {
		return nil, errors.New("lending: Deps.Budget is required")
	}
	if cfg.Lease == 0 {
		deps.Exchange = nil
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	if cfg.Horizon <= 0 {
		cfg.Horizon = cfg.Lease
	}
	p := &Pool{cfg: cfg, budget: deps.Budget, work: deps.Work, ex: deps.Exchange, log: deps.Logger.With("component", "lending"),
		now: deps.Now, name: hex.EncodeToString(id[:]), kick: make(chan struct{}, 1),
		lent: map[string][]loan{}, borrowed: map[string]borrowing{}, wants: map[uint64]time.Time{}, others: map[string]*want{},
		returns: map[string]uint64{}, returned: map[string]uint64{}}
	p.idle = sync.NewCond(&p.mu)
	m, err := newMetrics(deps.Registerer, deps.Budget)
	if err != nil {
		return nil, err
	}
	p.m = m
	return p, nil
}

// Lending reports whether the pool lends and borrows (it has a control
// topic and a lease).
func (p *Pool) Lending() bool { return p.ex != nil }

// SetShare sets the share of the budget the member's partitions give it.
// A share that goes down does so at once; one that grows waits, with
// lending, until the loans its partitions' earlier owner may have made
// have lapsed.
func (p *Pool) SetShare(f float64) {
	f = min(max(f, 0), 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	for f < p.inForce && p.appending > 0 {
		// A grant decided of the share that goes is on its way to the
		// log (within publishTimeout): it must be there before the
		// partitions go, for their next owner to wait for it.
		p.idle.Wait()
	}
	p.own, p.setAt = f, p.now()
	switch {
	case f <= p.inForce || p.ex == nil:
		p.inForce, p.growAt, p.catchUp = f, time.Time{}, false
	default:
		p.growAt, p.catchUp = p.now().Add(p.cfg.Lease+Margin), true
	}
	p.applyLocked(p.now())
	p.poke()
}

// Tokens is how many requests may be sent at now without waiting.
func (p *Pool) Tokens(now time.Time) float64 { return p.budget.Tokens(now) }

// Short records that work waited at now for want of budget.
func (p *Pool) Short(now time.Time) {
	p.budget.Short(now)
	p.poke()
}

func (p *Pool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run lends and borrows until ctx ends, then withdraws the member's
// records from the control topic. Without an Exchange it only waits.
func (p *Pool) Run(ctx context.Context) {
	if p.ex == nil {
		<-ctx.Done()
		return
	}
	stop := p.ex.WatchBudget(p.apply)
	defer stop()
	tick := time.NewTicker(min(max(p.cfg.Lease/20, 50*time.Millisecond), 500*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			p.withdraw()
			return
		case <-tick.C:
		case <-p.kick:
		}
		p.step(ctx)
	}
}

// step does what is due at now: a growth of the member's own share, the
// loans that lapsed, a want, the grants it answers with.
func (p *Pool) step(ctx context.Context) {
	if p.catchUpDue() {
		cctx, cancel := context.WithTimeout(ctx, publishTimeout)
		err := p.ex.CatchUp(cctx)
		cancel()
		p.mu.Lock()
		if err == nil && p.catchUp {
			p.catchUp = false
			if at := p.grantSeen.Add(p.cfg.Lease + Margin); at.Before(p.growAt) {
				p.growAt = at
			}
		}
		p.mu.Unlock()
	}
	now := p.now()
	p.mu.Lock()
	p.sampleLocked(now)
	if !p.growAt.IsZero() && !now.Before(p.growAt) {
		p.inForce, p.growAt = p.own, time.Time{}
		p.log.Debug("own write share in force", "share", p.inForce)
	}
	p.applyLocked(now)
	p.leaseLocked(now)
	wantSeq := p.wantDueLocked(now)
	returns := p.returns
	p.returns = map[string]uint64{}
	p.mu.Unlock()
	for lender, seq := range returns {
		// The loan left the budget when the lender's want was read.
		if p.publish(ctx, control.BudgetRecord{Kind: control.BudgetReturn, Lender: lender, Borrower: p.name, Seq: seq}) == nil {
			p.m.loans.WithLabelValues("returned").Inc()
			p.log.Debug("gave write budget back", "lender", lender, "seq", seq)
		}
	}
	if wantSeq > 0 {
		p.log.Debug("short of write budget: asking for a loan", "seq", wantSeq)
		p.publish(ctx, control.BudgetRecord{Kind: control.BudgetWant, Borrower: p.name, Seq: wantSeq})
	}
	for {
		g, ok := p.nextGrant(p.now())
		if !ok {
			return
		}
		err := p.publish(ctx, g)
		p.mu.Lock()
		// Held from the acknowledgement (or the failure: the grant may
		// have been written) for a lease and a margin, unless given back
		// meanwhile.
		for i, l := range p.lent[g.Borrower] {
			if l.seq == g.Seq && l.until.IsZero() {
				p.lent[g.Borrower][i].until = p.now().Add(p.cfg.Lease + Margin)
			}
		}
		p.granted = true
		p.appending--
		p.idle.Broadcast()
		p.mu.Unlock()
		if err == nil {
			p.m.loans.WithLabelValues("lent").Inc()
			p.log.Debug("lent write budget", "borrower", g.Borrower, "fraction", g.Fraction, "seq", g.Seq)
		}
	}
}

func (p *Pool) catchUpDue() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.catchUp
}

// sampleLocked keeps used, the fraction of the budget spent over the last
// quarter of a lease.
func (p *Pool) sampleLocked(now time.Time) {
	spent := p.budget.Spent()
	if p.markAt.IsZero() {
		p.markAt, p.markSpent = now, spent
		return
	}
	if d := now.Sub(p.markAt); d >= p.cfg.Lease/4 {
		p.used = (spent - p.markSpent) / d.Minutes()
		p.markAt, p.markSpent = now, spent
	}
}

// reservedLocked is what the member has lent that is held at now, in all
// and to borrower alone; it drops the loans that lapsed.
func (p *Pool) reservedLocked(now time.Time, borrower string) (all, to float64) {
	for b, ls := range p.lent {
		kept, held := ls[:0], 0.0
		for _, l := range ls {
			if l.until.IsZero() || now.Before(l.until) {
				kept = append(kept, l)
				held = max(held, l.fraction)
			}
		}
		if len(kept) == 0 {
			delete(p.lent, b)
			continue
		}
		p.lent[b] = kept
		all += held
		if b == borrower {
			to = held
		}
	}
	return all, to
}

// applyLocked sets the budget's own share: the share in force less what
// is lent.
func (p *Pool) applyLocked(now time.Time) {
	lent, _ := p.reservedLocked(now, "")
	p.budget.SetShare(max(p.inForce-lent, 0))
	p.m.lent.Set(lent)
}

// short reports whether the member was short of budget within d of now.
func (p *Pool) short(now time.Time, d time.Duration) bool {
	s := p.budget.LastShort()
	return !s.IsZero() && now.Sub(s) < d
}

// wantDueLocked returns the sequence number of a want to append now (0:
// none): the member is short, and its last want is a third of a lease
// old. The want is noted at now, before it is appended.
func (p *Pool) wantDueLocked(now time.Time) uint64 {
	for seq, at := range p.wants {
		if now.Sub(at) >= p.cfg.Lease {
			delete(p.wants, seq)
		}
	}
	if p.budget.PerMinute() < 0 || !p.short(now, time.Second) || now.Sub(p.lastWant) < p.wantEvery() {
		return 0
	}
	p.seq++
	p.wants[p.seq] = now
	p.lastWant = now
	p.m.wants.Inc()
	return p.seq
}

// keepLocked is the fraction of the budget the member keeps for itself:
// twice what it spent lately, and what sends the calls its windows wait
// to make within the horizon.
func (p *Pool) keepLocked() float64 {
	keep := 2 * p.used
	if whole := p.budget.Whole(); p.work != nil && whole > 0 {
		keep += float64(p.work.PendingCalls()) / (whole * p.cfg.Horizon.Minutes())
	}
	return keep
}

// wantEvery is how often a member short of budget wants: four times a
// lease, so that a borrower short all along holds its loans without a
// break.
func (p *Pool) wantEvery() time.Duration { return p.cfg.Lease / 4 }

// nextGrant picks a want to answer now and what to lend for it, and holds
// it lent before returning it (the grant is appended after).
func (p *Pool) nextGrant(now time.Time) (control.BudgetRecord, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.canLendLocked(now) {
		return control.BudgetRecord{}, false
	}
	// The members short now are those that wanted within two periods of
	// their wants; they get even parts of what this member does not use.
	var waiting []string
	short := 0
	for name, w := range p.others {
		switch {
		case now.Sub(w.read) >= p.cfg.Lease:
			delete(p.others, name)
			continue
		case now.Sub(w.read) < 2*p.wantEvery():
			short++
		}
		if !w.answered {
			waiting = append(waiting, name)
		}
	}
	slices.Sort(waiting)
	avail := p.inForce - min(p.inForce, p.keepLocked())
	for _, name := range waiting {
		w := p.others[name]
		w.answered = true
		all, to := p.reservedLocked(now, name)
		f := min(avail/float64(max(short, 1)), avail-(all-to))
		if f = math.Floor(f*1e4) / 1e4; f < minGrant {
			continue
		}
		p.lent[name] = append(p.lent[name], loan{seq: w.seq, fraction: f})
		p.appending++
		p.applyLocked(now)
		return control.BudgetRecord{Kind: control.BudgetGrant, Lender: p.name, Borrower: name, Seq: w.seq, Fraction: f}, true
	}
	return control.BudgetRecord{}, false
}

// canLendLocked reports whether the member may lend at now: lending is on
// and the budget limited, it has not been short for a quarter of a lease,
// it holds no loan, its own share is in force, and the last rebalance is a
// lease and a margin old. Rebalances come in bursts (a group forming,
// members joining one after another); a loan made meanwhile, of a member
// whose windows are not filled yet, would hold back every member that
// gains partitions a lease and a margin after it (SetShare).
func (p *Pool) canLendLocked(now time.Time) bool {
	if p.budget.PerMinute() < 0 || p.short(now, p.cfg.Lease/4) || !p.growAt.IsZero() || p.inForce <= 0 ||
		now.Sub(p.setAt) < p.cfg.Lease+Margin {
		return false
	}
	for _, b := range p.borrowed {
		if now.Before(b.until) {
			return false
		}
	}
	return true
}

// apply takes a budget record read from the control topic (the log's
// goroutine: it does not block).
func (p *Pool) apply(r control.BudgetRecord) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.Kind {
	case control.BudgetWant:
		p.applyWantLocked(now, r)
	case control.BudgetGrant:
		p.applyGrantLocked(now, r)
	case control.BudgetReturn:
		p.applyReturnLocked(now, r)
	}
}

// applyWantLocked notes another member's want. A lender of this member
// that wants gets its loans back: they leave the budget now, and the
// return is appended after.
func (p *Pool) applyWantLocked(now time.Time, r control.BudgetRecord) {
	if r.Borrower == p.name || now.Sub(r.Time) >= p.cfg.Lease+skewTolerance {
		return
	}
	if w := p.others[r.Borrower]; w != nil && w.seq >= r.Seq {
		return
	}
	p.others[r.Borrower] = &want{seq: r.Seq, read: now}
	if b, ok := p.borrowed[r.Borrower]; ok && now.Before(b.until) {
		delete(p.borrowed, r.Borrower)
		p.leaseLocked(now)
		p.returned[r.Borrower] = b.seq
		p.returns[r.Borrower] = b.seq
	}
	p.poke()
}

// applyGrantLocked takes a grant to this member, for one of its wants
// that is recent enough: it holds until the want's time plus a lease.
func (p *Pool) applyGrantLocked(now time.Time, r control.BudgetRecord) {
	if now.Sub(r.Time) < p.cfg.Lease+Margin+skewTolerance {
		p.grantSeen = now
	}
	if r.Borrower != p.name {
		return
	}
	noted, ok := p.wants[r.Seq]
	if !ok || r.Seq <= p.returned[r.Lender] {
		return
	}
	until := noted.Add(p.cfg.Lease)
	if cur, had := p.borrowed[r.Lender]; (had && cur.seq > r.Seq) || !now.Before(until) {
		return
	}
	p.borrowed[r.Lender] = borrowing{seq: r.Seq, fraction: r.Fraction, until: until}
	p.m.loans.WithLabelValues("borrowed").Inc()
	p.log.Debug("borrowed write budget", "lender", r.Lender, "fraction", r.Fraction, "seq", r.Seq, "for", until.Sub(now))
	p.leaseLocked(now)
}

// applyReturnLocked ends, a margin from now, the loans to r.Borrower up
// to the grant it gave back: the borrower dropped them before the return
// was appended.
func (p *Pool) applyReturnLocked(now time.Time, r control.BudgetRecord) {
	if r.Lender != p.name {
		return
	}
	end := now.Add(Margin)
	for i, l := range p.lent[r.Borrower] {
		if l.seq <= r.Seq && (l.until.IsZero() || l.until.After(end)) {
			p.lent[r.Borrower][i].until = end
		}
	}
	p.applyLocked(now)
	p.poke()
}

// leaseLocked hands the borrowed fractions that hold to the budget.
func (p *Pool) leaseLocked(now time.Time) {
	ls := make([]pinterest.Lease, 0, len(p.borrowed))
	sum := 0.0
	for lender, b := range p.borrowed {
		if !now.Before(b.until) {
			delete(p.borrowed, lender)
			continue
		}
		ls = append(ls, pinterest.Lease{Fraction: b.fraction, Until: b.until})
		sum += b.fraction
	}
	p.budget.SetLeases(ls)
	p.m.borrowed.Set(sum)
}

// publish appends r, within publishTimeout.
func (p *Pool) publish(ctx context.Context, r control.BudgetRecord) error {
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	err := p.ex.PublishBudget(pctx, r)
	if err != nil && ctx.Err() == nil {
		p.log.Warn("writing to the control topic failed; the budget stays where it is", "want", r.Want(), "err", err)
	}
	return err
}

// withdraw removes the member's records from the control topic (best
// effort, within a few seconds): compaction may then drop them.
func (p *Pool) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	p.mu.Lock()
	var recs []control.BudgetRecord
	if p.seq > 0 {
		recs = append(recs, control.BudgetRecord{Kind: control.BudgetWant, Borrower: p.name},
			control.BudgetRecord{Kind: control.BudgetReturn, Borrower: p.name})
	}
	if p.granted {
		recs = append(recs, control.BudgetRecord{Kind: control.BudgetGrant, Lender: p.name})
	}
	p.mu.Unlock()
	for _, r := range recs {
		if err := p.ex.WithdrawBudget(ctx, r); err != nil {
			p.log.Warn("withdrawing the budget records from the control topic", "err", err)
			return
		}
	}
}

// metrics are the pool's series.
type metrics struct {
	share    prometheus.GaugeFunc
	lent     prometheus.Gauge
	borrowed prometheus.Gauge
	loans    *prometheus.CounterVec
	wants    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, b Budget) (*metrics, error) {
	m := &metrics{
		share: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pinsync_write_share",
			Help: "Fraction of the group's write budget this instance may spend now: the share its changes partitions give it, less what it lent, plus what it borrowed.",
		}, b.Share),
		lent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_write_share_lent", Help: "Fraction of the group's write budget this instance lent to other members and still holds for them.",
		}),
		borrowed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_write_share_borrowed", Help: "Fraction of the group's write budget other members lent this instance, as of the last grant it read.",
		}),
		loans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_write_loans_total", Help: "Loans of write budget, by direction: lent (grants this instance wrote), borrowed (grants to it it took), returned (loans it gave back early to a lender short of budget).",
		}, []string{"direction"}),
		wants: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinsync_write_wants_total", Help: "Wants of write budget this instance wrote to the control topic while short of budget.",
		}),
	}
	m.loans.WithLabelValues("lent")
	m.loans.WithLabelValues("borrowed")
	m.loans.WithLabelValues("returned")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.share, m.lent, m.borrowed, m.loans, m.wants} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
