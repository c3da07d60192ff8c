package profiles

import (
	"sync"

	"github.com/pinsync/pinsync/consumer/commit"
)

// epochs are one partition's sealed epochs that wait for the list stage:
// the hand-off between the partition's worker, which pushes one per
// committed transaction, and the stage's committer, which pops those the
// list stage has passed. Safe for concurrent use.
type epochs struct {
	mu   sync.Mutex
	q    commit.Queue
	kept *commit.Epoch // passed and popped, its commit failed
}

// push appends a sealed epoch. Its changes already count as pending since
// they were written.
func (e *epochs) push(ep commit.Epoch) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.q.Push(ep)
}

// pending returns the changes of the sealed epochs not yet committed.
func (e *epochs) pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.q.Pending()
}

// waiting reports whether any sealed epoch is not committed yet.
func (e *epochs) waiting() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.q.Len() > 0 || e.kept != nil
}

// newest returns the newest epoch not committed, queued or kept.
func (e *epochs) newest() (commit.Epoch, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.q.Newest()
	if e.kept != nil && (!ok || e.kept.Next > ep.Next) {
		ep, ok = *e.kept, true
	}
	return ep, ok
}

// passed pops the epochs the list stage has passed and returns the newest
// (or the one kept after a failed commit), and the changes popped.
func (e *epochs) passed(down []int64) (commit.Epoch, int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	before := e.q.Pending()
	ep, ok := e.q.Passed(down)
	n := before - e.q.Pending()
	if !ok && e.kept != nil {
		ep, ok = *e.kept, true
	}
	e.kept = nil
	return ep, n, ok
}

// retain keeps ep for the next commit after its commit failed.
func (e *epochs) retain(ep commit.Epoch) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.kept == nil || ep.Next > e.kept.Next {
		e.kept = &ep
	}
}
