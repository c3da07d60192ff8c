package control

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// BudgetKind is what a BudgetRecord says.
type BudgetKind string

// The records of the write-budget loans between the list stage's members
// (package lists/lending says how they use them).
const (
	// BudgetWant: Borrower asks for budget (its want Seq).
	BudgetWant BudgetKind = "want"
	// BudgetGrant: Lender lends Borrower Fraction of the group's write
	// budget, in answer to Borrower's want Seq.
	BudgetGrant BudgetKind = "grant"
	// BudgetReturn: Borrower gives back what Lender lent it, up to the
	// grant for its want Seq.
	BudgetReturn BudgetKind = "return"
)

// BudgetRecord is one record of the write-budget loans. Member names are
// the members' own, random per process.
//
// A want's key is "budget/want/<borrower>", a grant's
// "budget/grant/<lender>", a return's "budget/return/<borrower>": a
// member's keys are three whatever it does, and compaction keeps the last
// of each (readers at the head of the log see every record; a record
// replayed from the start is old).
type BudgetRecord struct {
	Kind     BudgetKind
	Lender   string
	Borrower string
	Seq      uint64
	Fraction float64
	// Time is the record's timestamp, on the appender's clock (read side
	// only).
	Time time.Time
}

// budgetPrefix starts the key of every budget record.
const budgetPrefix = "budget/"

// member is the member whose key r is written under.
func (r BudgetRecord) member() string {
	if r.Kind == BudgetGrant {
		return r.Lender
	}
	return r.Borrower
}

func (r BudgetRecord) key() (string, error) {
	switch r.Kind {
	case BudgetWant, BudgetGrant, BudgetReturn:
	default:
		return "", errors.New("control: a budget record is a want, a grant or a return")
	}
	name := r.member()
	if name == "" || strings.ContainsRune(name, '/') {
		return "", errors.New("control: a budget record names its member, without '/'")
	}
	return budgetPrefix + string(r.Kind) + "/" + name, nil
}

// budgetValue is a budget record's value: the member its key does not
// name (the borrower of a grant, the lender of a return), the sequence
// number and the fraction of a grant.
type budgetValue struct {
	Member   string  `json:"member,omitempty"`
	Seq      uint64  `json:"seq"`
	Fraction float64 `json:"fraction,omitempty"`
}

// parseBudget reads a budget record; it reports whether rec is one (a
// tombstone or a malformed value is one, but not valid).
func parseBudget(rec Record) (r BudgetRecord, isBudget, valid bool) {
	rest, ok := strings.CutPrefix(rec.Key, budgetPrefix)
	if !ok {
		return r, false, false
	}
	kind, name, _ := strings.Cut(rest, "/")
	var v budgetValue
	if name == "" || rec.Value == nil || json.Unmarshal(rec.Value, &v) != nil || v.Fraction < 0 || v.Fraction > 1 {
		return r, true, false
	}
	r = BudgetRecord{Kind: BudgetKind(kind), Seq: v.Seq, Fraction: v.Fraction, Time: rec.Time}
	switch r.Kind {
	case BudgetWant:
		r.Borrower = name
	case BudgetGrant:
		r.Lender, r.Borrower = name, v.Member
	case BudgetReturn:
		r.Borrower, r.Lender = name, v.Member
	default:
		return r, true, false
	}
	return r, true, r.Kind == BudgetWant || v.Member != ""
}

// WatchBudget calls fn with the latest record of each budget key read so
// far (in no order, before it returns), then with every budget record
// applied from now on, in the log's order, from the goroutine that reads
// the log: fn must not block, nor call the Topic. The returned func stops
// the calls (one in progress may still end after it returns).
func (t *Topic) WatchBudget(fn func(BudgetRecord)) (stop func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.budget {
		fn(r)
	}
	t.nextWatcher++
	id := t.nextWatcher
	t.budgetWatchers[id] = fn
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.budgetWatchers, id)
	}
}

// PublishBudget appends r and returns once the broker has it.
func (t *Topic) PublishBudget(ctx context.Context, r BudgetRecord) error {
	key, err := r.key()
	if err != nil {
		return err
	}
	v := budgetValue{Seq: r.Seq}
	switch r.Kind {
	case BudgetGrant:
		if r.Borrower == "" || r.Fraction <= 0 || r.Fraction > 1 {
			return errors.New("control: a grant needs its borrower and a fraction in (0, 1]")
		}
		v.Member, v.Fraction = r.Borrower, r.Fraction
	case BudgetReturn:
		if r.Lender == "" {
			return errors.New("control: a return needs its lender")
		}
		v.Member = r.Lender
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = t.log.Append(ctx, key, b)
	return err
}

// WithdrawBudget appends a tombstone of r's key (Kind and the member it
// is written under: the borrower of a want or a return, the lender of a
// grant): the member stops, and compaction may drop the key.
func (t *Topic) WithdrawBudget(ctx context.Context, r BudgetRecord) error {
	key, err := r.key()
	if err != nil {
		return err
	}
	_, err = t.log.Append(ctx, key, nil)
	return err
}

// Want reports whether r is a want.
func (r BudgetRecord) Want() bool { return r.Kind == BudgetWant }
