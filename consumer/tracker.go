package consumer

import (
	"sync"
	"sync/atomic"
)

// partKey names one partition of one topic.
type partKey struct {
	topic     string
	partition int32
}

// pendKey names the changes of one epoch of one partition.
type pendKey struct {
	part  *partTrack
	epoch uint32
}

// epochMark is a sealed epoch: every record before next has been applied,
// and pending of its changes are not yet uploaded.
type epochMark struct {
	epoch   uint32
	next    int64
	pending int
	// leaderEpoch of the last record, for the commit.
	leaderEpoch int32
	// snap holds the state to write to the changelog once the epoch is done.
	snap []stateRecord
}

// partTrack is the commit bookkeeping of one assigned partition: its open
// epoch and the sealed epochs whose changes are still being uploaded.
//
// An aligned checkpoint: the committable offset of a partition is the next
// offset of its newest sealed epoch such that it and every earlier epoch has
// nothing pending; changes of later records may sit in windows, so the
// commit never runs ahead of an upload.
type partTrack struct {
	key         partKey
	open        uint32
	openPending int
	sealed      []*epochMark
	committed   atomic.Int64 // next offset committed (or -1)
	// unwritten holds snapshots of completed epochs whose changelog write
	// failed, and unwrittenMark the newest such epoch; only the committer
	// touches them.
	unwritten     []stateRecord
	unwrittenMark *epochMark
	dropped       atomic.Bool
}

// tracker counts pending work per partition epoch. All methods are safe for
// concurrent use.
type tracker struct {
	mu    sync.Mutex
	parts map[partKey]*partTrack
	// done is signalled (non-blocking) when an epoch may have completed.
	done chan struct{}
}

func newTracker() *tracker {
	return &tracker{parts: make(map[partKey]*partTrack), done: make(chan struct{}, 1)}
}

func (t *tracker) assign(k partKey, committed int64) *partTrack {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := &partTrack{key: k, open: 1}
	p.committed.Store(committed)
	t.parts[k] = p
	return p
}

// remove forgets a partition (revoked or lost).
func (t *tracker) remove(p *partTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.dropped.Store(true)
	if t.parts[p.key] == p {
		delete(t.parts, p.key)
	}
}

// current returns the open epoch of p: the one new changes belong to.
func (t *tracker) current(p *partTrack) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return p.open
}

// seal closes p's open epoch at next (the offset after the last applied
// record) with the state snapshot to persist once it is uploaded.
func (t *tracker) seal(p *partTrack, next int64, leaderEpoch int32, snap []stateRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.sealed = append(p.sealed, &epochMark{epoch: p.open, next: next, pending: p.openPending, leaderEpoch: leaderEpoch, snap: snap})
	p.open++
	p.openPending = 0
	t.signal()
}

// addLocked adjusts the pending count of k by n. The caller holds t.mu.
func (t *tracker) addLocked(k pendKey, n int) {
	p := k.part
	if k.epoch == p.open {
		p.openPending += n
		return
	}
	for _, m := range p.sealed {
		if m.epoch == k.epoch {
			m.pending += n
			if m.pending == 0 {
				t.signal()
			}
			return
		}
	}
	// The epoch was already completed and popped: a count can only fall to
	// it after completion if it was never counted, which is a bug.
}

// add adjusts pending counts in one critical section.
func (t *tracker) add(deltas map[pendKey]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, n := range deltas {
		if n != 0 {
			t.addLocked(k, n)
		}
	}
}

func (t *tracker) signal() {
	select {
	case t.done <- struct{}{}:
	default:
	}
}

// completed pops the completed prefix of p's sealed epochs. It returns the
// newest completed mark (nil when none) and the snapshots of all of them in
// order.
func (t *tracker) completed(p *partTrack) (*epochMark, []stateRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var last *epochMark
	var snaps []stateRecord
	for len(p.sealed) > 0 && p.sealed[0].pending == 0 {
		last = p.sealed[0]
		snaps = append(snaps, last.snap...)
		p.sealed[0] = nil
		p.sealed = p.sealed[1:]
	}
	return last, snaps
}

// idle reports whether p has nothing pending in any epoch.
func (t *tracker) idle(p *partTrack) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.openPending != 0 {
		return false
	}
	for _, m := range p.sealed {
		if m.pending != 0 {
			return false
		}
	}
	return true
}

// snapshot returns the tracked partitions.
func (t *tracker) snapshot() []*partTrack {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*partTrack, 0, len(t.parts))
	for _, p := range t.parts {
		out = append(out, p)
	}
	return out
}

func (p *partTrack) committedLoad() int64 { return p.committed.Load() }
