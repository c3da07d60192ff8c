package lists

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/schemas/ident"
)

// worker reads one partition of the changes topic in offset order and puts
// its changes into the windows, sealing an epoch every commit interval.
type worker struct {
	s         *Stage
	partition int32
	pt        *commit.Partition
	in        chan []*kgo.Record
	quit      chan struct{}
	// ctx ends with quit: what the worker waits for does not hold up a
	// revoke.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// sealNow asks the worker to seal its open epoch at once (shutdown:
	// the flush that follows should be able to complete it).
	sealNow   chan struct{}
	highWater atomic.Int64
	// read is the offset after the last record processed (-1 before
	// any), for Drain.
	read atomic.Int64
	// failingSince is when learning the partition's end began failing,
	// in Unix nanoseconds; 0 while it does not.
	failingSince atomic.Int64

	open        commit.Key
	next        int64 // offset after the last record read; -1 before any
	leaderEpoch int32
	// first is the offset of the first record read (-1 before any): what
	// an ownership check commits before anything was.
	first atomic.Int64
	// vouchFrom is the end of the partition when this member was assigned
	// it. An earlier owner may have uploaded changes below it that it
	// never committed: where a list stands for their records is not known,
	// so none of them cancels (see windows.add).
	vouchFrom int64
	d         commit.Deltas
	cs        []changes.Change
	// legacySeen is set once the worker has said it drops legacy IDFA
	// adds.
	legacySeen bool
}

func (s *Stage) newWorker(p int32) *worker {
	pt := s.tr.Assign(s.cfg.Topic, p, -1)
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{s: s, partition: p, pt: pt, in: make(chan []*kgo.Record, 4),
		quit: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{}), sealNow: make(chan struct{}, 1),
		open: s.tr.Open(pt), next: -1, leaderEpoch: -1, vouchFrom: -1}
	w.first.Store(-1)
	w.read.Store(-1)
	return w
}

func (w *worker) run() {
	defer close(w.done)
	if !w.fence() {
		return
	}
	t := time.NewTicker(w.s.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			w.seal()
			return
		case <-t.C:
			w.seal()
		case <-w.sealNow:
			w.seal()
		case recs := <-w.in:
			w.process(recs)
		}
	}
}

// fence learns the partition's end offset before reading anything, retrying
// until it succeeds or the worker quits (then it reports false).
func (w *worker) fence() bool {
	defer w.failingSince.Store(0)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
		end, err := w.s.endOffset(ctx, w.partition)
		cancel()
		if err == nil {
			w.vouchFrom = end
			w.s.cl.ResumeFetchPartitions(map[string][]int32{w.s.cfg.Topic: {w.partition}})
			return true
		}
		if w.ctx.Err() != nil {
			return false // stopped
		}
		w.failingSince.CompareAndSwap(0, w.s.now().UnixNano())
		w.s.log.Warn("reading the end of a changes partition failed; retrying", "partition", w.partition, "err", err)
		select {
		case <-w.quit:
			return false
		case <-time.After(min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)):
		}
	}
}

// waitRoom waits, at the windows' byte cap, until room is closed (uploads
// freed some), a commit interval passes or the worker quits (then it
// reports false). On the first wait for a record, what was read before it
// is sealed, so that its commit does not wait for the room.
func (w *worker) waitRoom(room <-chan struct{}, first bool) bool {
	s := w.s
	if first {
		s.tr.Apply(&w.d)
		w.d.Reset()
		w.read.Store(w.next)
		w.seal()
	}
	s.waitingRoom.Add(1)
	defer s.waitingRoom.Add(-1)
	t := time.NewTimer(s.cfg.CommitInterval)
	defer t.Stop()
	select {
	case <-w.quit:
		return false
	case <-room:
	case <-t.C:
	}
	return true
}

// seal closes the open epoch at the next offset to read.
func (w *worker) seal() {
	if w.next < 0 {
		return
	}
	w.open = w.s.tr.Seal(w.pt, w.next, w.leaderEpoch)
}

// probeOffset is what an ownership check commits: the offset last
// committed, or where reading started.
func (w *worker) probeOffset() (kgo.EpochOffset, bool) {
	if c := w.pt.Committed(); c >= 0 {
		return kgo.EpochOffset{Epoch: w.pt.CommittedLeaderEpoch(), Offset: c}, true
	}
	if f := w.first.Load(); f >= 0 {
		return kgo.EpochOffset{Epoch: -1, Offset: f}, true
	}
	return kgo.EpochOffset{}, false
}

// process puts a batch of records' changes into the windows.
func (w *worker) process(recs []*kgo.Record) {
	s := w.s
	now := s.now()
	var adds, removes, legacy int
	for _, r := range recs {
		if r.Offset < w.next {
			continue // already read (a fetch from before a reassignment)
		}
		if w.next < 0 {
			w.first.Store(r.Offset)
		}
		if r.Attrs.IsControl() {
			w.next, w.leaderEpoch = r.Offset+1, r.LeaderEpoch
			continue
		}
		l, err := changes.ParseKey(r.Key)
		var v changes.Value
		if err == nil {
			v, err = changes.Parse(r.Value)
		}
		if err == nil {
			w.cs = w.cs[:0]
			vouch := r.Offset >= w.vouchFrom
			err = v.Each(func(c changes.Change) {
				if c.Legacy && c.Op == changes.Add && l.Type == ident.IDFA {
					legacy++ // hashed from the lower-case IDFA: matches nobody
					return
				}
				c.Vouched = c.Vouched && vouch
				w.cs = append(w.cs, c)
			})
		}
		if err != nil {
			w.next, w.leaderEpoch = r.Offset+1, r.LeaderEpoch
			s.m.malformed.Inc()
			s.log.Error("skipping a malformed record of the changes topic", "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		id := s.sink.Intern(l, v.Header, r.Partition)
		for i := range w.cs {
			if w.cs[i].Op == changes.Add {
				adds++
			} else {
				removes++
			}
		}
		for waited := false; ; waited = true {
			room := s.ws.Drained()
			if s.ws.Add(id, w.cs, w.open, now, &w.d) {
				break
			}
			if !w.waitRoom(room, !waited) {
				return
			}
			now = s.now()
		}
		w.next, w.leaderEpoch = r.Offset+1, r.LeaderEpoch
	}
	s.tr.Apply(&w.d)
	w.d.Reset()
	w.read.Store(w.next)
	if adds > 0 {
		s.m.read.WithLabelValues("add").Add(float64(adds))
	}
	if removes > 0 {
		s.m.read.WithLabelValues("remove").Add(float64(removes))
	}
	if legacy > 0 {
		s.m.dropped.WithLabelValues(droppedLegacyIDFA).Add(float64(legacy))
		if !w.legacySeen {
			w.legacySeen = true
			s.log.Warn("dropping IDFA adds written by an earlier pinsync that hashed IDFAs in lower case (Pinterest matches none of them)",
				"partition", w.partition, "dropped", legacy)
		}
	}
	if s.closing.Load() {
		// Shutting down: what was read goes out now, in an epoch that
		// its flush can complete without waiting for the next tick.
		w.seal()
		s.ws.MarkUrgent(nil)
	}
}
