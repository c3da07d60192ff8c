// Package commit holds pinsync's commit rule: an input offset is committed
// only once every list change derived from the records before it is at
// Pinterest. Two stages share the rule:
//
//   - The list stage commits an offset of the changes topic once every
//     change read before it has been uploaded (or cancelled, or dead-lettered).
//     Tracker counts, per partition and epoch, the changes still waiting in
//     windows or in flight; an epoch is committable once it and every
//     earlier epoch of its partition count zero.
//   - The profile stage commits an offset of the input topic once the list
//     stage's group has committed, in every changes partition, past the
//     last change the records before it produced there. Queue holds, per
//     input partition, the epochs sealed with where their changes landed.
//
// Together: an input offset is committed only when the changes of the
// records before it were read by the list stage and the list stage
// committed past them, which it does only after their upload succeeded.
// The input group's committed offsets are therefore the true end-to-end
// progress, and its lag the end-to-end lag.
//
// The package keeps the bookkeeping, and commits through the group
// member's client (Offsets, Owns); when to commit is the stages' business.
package commit

import (
	"sync"
	"sync/atomic"
)

// Key names the changes of one epoch of one partition.
type Key struct {
	P     *Partition
	Epoch uint32
}

// Mark is a sealed epoch: every record before Next has been read, and
// Pending of its changes are still waiting.
type Mark struct {
	Epoch   uint32
	Next    int64
	Pending int
	// LeaderEpoch of the last record, for the commit.
	LeaderEpoch int32
}

// Partition is the commit bookkeeping of one assigned partition: its open
// epoch and the sealed epochs whose changes still wait.
//
// An aligned checkpoint: the committable offset of a partition is the next
// offset of its newest sealed epoch such that it and every earlier epoch
// has nothing pending; changes of later records may wait in windows, so
// the commit never runs ahead of an upload.
type Partition struct {
	Topic     string
	Partition int32

	open        uint32
	openPending int
	sealed      []*Mark
	retained    *Mark        // completed, popped, not yet committed
	committed   atomic.Int64 // next offset committed (or -1)
	leaderEpoch atomic.Int32 // of the committed offset
	dropped     atomic.Bool
}

// Committed returns the next offset committed, or -1.
func (p *Partition) Committed() int64 { return p.committed.Load() }

// CommittedLeaderEpoch returns the leader epoch committed with Committed.
func (p *Partition) CommittedLeaderEpoch() int32 { return p.leaderEpoch.Load() }

// SetCommitted records a successful commit of next.
func (p *Partition) SetCommitted(next int64, leaderEpoch int32) {
	p.leaderEpoch.Store(leaderEpoch)
	p.committed.Store(next)
}

// Dropped reports whether the partition was revoked or lost: its changes
// no longer count.
func (p *Partition) Dropped() bool { return p.dropped.Load() }

// Tracker counts pending changes per partition epoch. All methods are safe
// for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	parts map[partKey]*Partition
	done  chan struct{}
}

type partKey struct {
	topic     string
	partition int32
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{parts: make(map[partKey]*Partition), done: make(chan struct{}, 1)}
}

// Done is signalled (without blocking; one buffered signal) when an epoch
// may have completed.
func (t *Tracker) Done() <-chan struct{} { return t.done }

// Assign starts tracking a partition whose next committed offset is
// committed (-1: none), at epoch 1.
func (t *Tracker) Assign(topic string, partition int32, committed int64) *Partition {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := &Partition{Topic: topic, Partition: partition, open: 1}
	p.committed.Store(committed)
	p.leaderEpoch.Store(-1)
	t.parts[partKey{topic, partition}] = p
	return p
}

// Remove forgets a partition (revoked or lost) and marks it dropped.
func (t *Tracker) Remove(p *Partition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.dropped.Store(true)
	k := partKey{p.Topic, p.Partition}
	if t.parts[k] == p {
		delete(t.parts, k)
	}
}

// Open returns p's open epoch: the one new changes belong to.
func (t *Tracker) Open(p *Partition) Key {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Key{p, p.open}
}

// Seal closes p's open epoch at next (the offset after the last record
// read) and returns the new open epoch.
func (t *Tracker) Seal(p *Partition, next int64, leaderEpoch int32) Key {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.sealed = append(p.sealed, &Mark{Epoch: p.open, Next: next, Pending: p.openPending, LeaderEpoch: leaderEpoch})
	p.open++
	p.openPending = 0
	t.signal()
	return Key{p, p.open}
}

// Apply adds the pending counts of d in one critical section.
func (t *Tracker) Apply(d *Deltas) {
	if d.empty() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range d.ks {
		if d.ns[i] != 0 {
			t.addLocked(d.ks[i], d.ns[i])
		}
	}
}

// addLocked adjusts the pending count of k by n.
func (t *Tracker) addLocked(k Key, n int) {
	p := k.P
	if k.Epoch == p.open {
		p.openPending += n
		return
	}
	for _, m := range p.sealed {
		if m.Epoch == k.Epoch {
			m.Pending += n
			if m.Pending == 0 {
				t.signal()
			}
			return
		}
	}
	// The epoch was already completed and popped: a count can only fall to
	// it after completion if it was never counted, which is a bug.
}

func (t *Tracker) signal() {
	select {
	case t.done <- struct{}{}:
	default:
	}
}

// Completed pops the completed prefix of p's sealed epochs and returns the
// newest of them, or the one Retain kept when none completed since (nil
// when neither).
func (t *Tracker) Completed(p *Partition) *Mark {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := p.retained
	p.retained = nil
	for len(p.sealed) > 0 && p.sealed[0].Pending == 0 {
		last = p.sealed[0]
		p.sealed[0] = nil
		p.sealed = p.sealed[1:]
	}
	return last
}

// Retain gives back a mark Completed returned whose commit failed: the
// next Completed returns it unless a newer epoch completed meanwhile.
func (t *Tracker) Retain(p *Partition, m *Mark) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.retained == nil || m.Next > p.retained.Next {
		p.retained = m
	}
}

// Idle reports whether p has nothing pending in any epoch (a removed
// partition has nothing pending).
func (t *Tracker) Idle(p *Partition) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.dropped.Load() {
		return true // removed: nothing of it is waited for any more
	}
	if p.openPending != 0 {
		return false
	}
	for _, m := range p.sealed {
		if m.Pending != 0 {
			return false
		}
	}
	return true
}

// Partitions returns the tracked partitions.
func (t *Tracker) Partitions() []*Partition {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Partition, 0, len(t.parts))
	for _, p := range t.parts {
		out = append(out, p)
	}
	return out
}

// Deltas accumulates pending-count changes made under another lock (a
// window's), to be applied to a Tracker in one step afterwards. A change
// that moves from one epoch to a newer one is -1 on the old and +1 on the
// new; applying both at once keeps the old epoch from completing while
// the record it held is still waiting. The zero value is empty; it is not
// safe for concurrent use.
type Deltas struct {
	ks []Key
	ns []int
}

// Add adds n to the count of k.
func (d *Deltas) Add(k Key, n int) {
	// Few distinct keys per batch: the newest is almost always the one.
	for i := len(d.ks) - 1; i >= 0; i-- {
		if d.ks[i] == k {
			d.ns[i] += n
			return
		}
	}
	d.ks = append(d.ks, k)
	d.ns = append(d.ns, n)
}

// Reset empties d, keeping its memory.
func (d *Deltas) Reset() {
	clear(d.ks)
	d.ks, d.ns = d.ks[:0], d.ns[:0]
}

func (d *Deltas) empty() bool { return len(d.ks) == 0 }

// Count returns the accumulated change of k (for tests).
func (d *Deltas) Count(k Key) int {
	for i := range d.ks {
		if d.ks[i] == k {
			return d.ns[i]
		}
	}
	return 0
}

// Pending returns p's count of pending changes in its open epoch and in
// each sealed epoch not yet popped, oldest first.
func (t *Tracker) Pending(p *Partition) (open int, sealed []int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range p.sealed {
		sealed = append(sealed, m.Pending)
	}
	return p.openPending, sealed
}
