package lists

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/consumer/member"
	"github.com/pinsync/pinsync/schemas/ident"
)

// workerDeps are what the stage hands every worker: settings, and the
// parts of the stage a worker uses. A worker reaches no further.
type workerDeps struct {
	topic string
	// interval is the commit interval: an epoch is sealed every interval.
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger
	m        *metrics
	tr       *commit.Tracker
	ws       *window.Set
	// intern names a list by its window (the sink's directory).
	intern func(l changes.List, h changes.Header, p int32) window.ListID
	// bounds learns where partition p stands; resume resumes fetching it
	// and pause pauses it.
	bounds func(ctx context.Context, p int32) (bounds, error)
	resume func(p int32)
	pause  func(p int32)
	// closing is set once the stage shuts down; waitingRoom counts the
	// workers waiting for room under the byte cap.
	closing     *atomic.Bool
	waitingRoom *atomic.Int32
}

// worker reads one partition of the changes topic in offset order and puts
// its changes into the windows, sealing an epoch every commit interval.
type worker struct {
	d         *workerDeps
	partition int32
	pt        *commit.Partition
	in        chan []*kgo.Record
	quit      chan struct{}
	quitOnce  sync.Once
	// ctx ends with quit: what the worker waits for does not hold up a
	// revoke.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// sealNow asks the worker to seal its open epoch at once (shutdown:
	// the flush that follows should be able to complete it).
	sealNow chan struct{}
	// read is the offset after the last record processed (-1 before
	// any), for Drain.
	read atomic.Int64
	// Failing says since when learning the partition's end has failed.
	member.Failing
	// Halt says why the worker stopped reading (see halt).
	member.Halt

	open        commit.Key
	next        int64 // offset after the last record read; -1 before any
	leaderEpoch int32
	// expect is the offset the next record must have: where the group
	// committed, or the log start when it never did, then after each
	// record read. A record past it is checked against the log start
	// (see gapBefore). -1: not known.
	expect int64
	// stopped is set once the worker halted its partition itself: it
	// reads nothing more.
	stopped bool
	// first is the offset of the first record read (-1 before any): what
	// an ownership check commits before anything was.
	first atomic.Int64
	// vouchFrom is the end of the partition when this member was assigned
	// it. An earlier owner may have uploaded changes below it that it
	// never committed: where a list stands for their records is not known,
	// so none of them cancels (see window.Set.Add).
	vouchFrom int64
	deltas    commit.Deltas
	cs        []changes.Change
	// legacySeen is set once the worker has said it drops legacy IDFA
	// adds.
	legacySeen bool
}

func newWorker(d *workerDeps, p int32) *worker {
	pt := d.tr.Assign(d.topic, p, -1)
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{d: d, partition: p, pt: pt, in: make(chan []*kgo.Record, 4),
		quit: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{}), sealNow: make(chan struct{}, 1),
		open: d.tr.Open(pt), next: -1, leaderEpoch: -1, vouchFrom: -1, expect: -1}
	w.first.Store(-1)
	w.read.Store(-1)
	return w
}

// Feed implements member.Worker.
func (w *worker) Feed(ctx context.Context, recs []*kgo.Record) {
	select {
	case w.in <- recs:
	case <-w.quit:
	case <-ctx.Done():
	}
}

// Committed implements member.Worker.
func (w *worker) Committed() int64 { return w.pt.Committed() }

// stop tells the worker to seal its open epoch and end, and cancels what
// it waits for; it does not wait (see done). Stopping twice is stopping
// once.
func (w *worker) stop() {
	w.quitOnce.Do(func() { close(w.quit) })
	w.cancel()
}

// hurry asks the worker to seal its open epoch at once.
func (w *worker) hurry() {
	select {
	case w.sealNow <- struct{}{}:
	default:
	}
}

func (w *worker) run() {
	defer close(w.done)
	if !w.fence() {
		return
	}
	t := time.NewTicker(w.d.interval)
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

// bounds are where a changes partition stands: its log start and end, and
// the group's committed offset (-1: none).
type bounds struct{ start, end, committed int64 }

// fence learns where the partition stands before reading anything,
// retrying until it succeeds or the worker quits (then it reports false).
// A partition whose log starts past the group's committed offset lost
// changes nobody read: it halts there.
func (w *worker) fence() bool {
	defer w.Started()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
		b, err := w.d.bounds(ctx, w.partition)
		cancel()
		if err == nil {
			w.vouchFrom, w.expect = b.end, b.start
			if b.committed >= 0 {
				w.expect = b.committed
			}
			if b.start > w.expect {
				w.stopped = true
				w.halt(member.HaltGap, deleted(w.d.topic, w.partition, w.expect, b.start))
				return true
			}
			w.d.resume(w.partition)
			return true
		}
		if w.ctx.Err() != nil {
			return false // stopped
		}
		w.Fail(w.d.now())
		w.d.log.Warn("reading the end of a changes partition failed; retrying", "partition", w.partition, "err", err)
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
	if first {
		w.d.tr.Apply(&w.deltas)
		w.deltas.Reset()
		w.read.Store(w.next)
		w.seal()
	}
	w.d.waitingRoom.Add(1)
	defer w.d.waitingRoom.Add(-1)
	t := time.NewTimer(w.d.interval)
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
	w.open = w.d.tr.Seal(w.pt, w.next, w.leaderEpoch)
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

// halt stops the partition for reason, once: the error log says why, and
// its fetching is paused. What was read before stays in the windows, to be
// uploaded and committed.
func (w *worker) halt(reason string, err error) {
	if !w.Halt.Halt(reason, err) {
		return
	}
	w.d.pause(w.partition)
	w.d.log.Error("a changes partition stopped: nothing past this point is read or committed until the cause is dealt with (see PinsyncPartitionHalted in the README)",
		"topic", w.d.topic, "partition", w.partition, "reason", reason, "err", err)
}

// lost halts the partition after its member found records gone under the
// fetch (Handler.Gap): everything fetched before is below them.
func (w *worker) lost(err error) {
	w.halt(member.HaltGap, fmt.Errorf("records of %s/%d were deleted before the list stage read them (%w): the changes they held never reach the lists",
		w.d.topic, w.partition, err))
}

// deleted says that offsets from to before start of partition p were
// deleted unread.
func deleted(topic string, p int32, from, start int64) error {
	return fmt.Errorf("records %d to %d of %s/%d were deleted before the list stage read them (its log starts at %d): the changes they held never reach the lists",
		from, start-1, topic, p, start)
}

// gapBefore reports whether records between the next one expected and
// offset were deleted unread: a fetch skips offsets only where an aborted
// transaction's records were, or where the log no longer holds them. It
// asks the partition's log start until it has an answer, or the worker
// quits (then it reports no gap: the worker stops anyway).
func (w *worker) gapBefore(offset int64) error {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
		b, err := w.d.bounds(ctx, w.partition)
		cancel()
		if err == nil {
			if b.start > w.expect {
				return deleted(w.d.topic, w.partition, w.expect, min(b.start, offset))
			}
			return nil
		}
		w.d.log.Warn("reading the start of a changes partition failed; retrying", "partition", w.partition, "err", err)
		select {
		case <-w.quit:
			return nil
		case <-time.After(min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)):
		}
	}
}

// process puts a batch of records' changes into the windows.
func (w *worker) process(recs []*kgo.Record) {
	d := w.d
	now := d.now()
	var adds, removes, legacy int
	for _, r := range recs {
		if w.stopped {
			break
		}
		if r.Offset < w.next {
			continue // already read (a fetch from before a reassignment)
		}
		if w.expect >= 0 && r.Offset > w.expect {
			if err := w.gapBefore(r.Offset); err != nil {
				w.stopped = true
				w.halt(member.HaltGap, err)
				break
			}
		}
		if w.next < 0 {
			w.first.Store(r.Offset)
		}
		if r.Attrs.IsControl() {
			w.next, w.leaderEpoch, w.expect = r.Offset+1, r.LeaderEpoch, r.Offset+1
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
		if errors.Is(err, changes.ErrUnknownVersion) {
			w.stopped = true
			w.halt(member.HaltUnknownVersion, fmt.Errorf("record %d of %s/%d: %w: upgrade this replica (every replica must read a format before any writes it)",
				r.Offset, d.topic, r.Partition, err))
			break
		}
		if err != nil {
			w.next, w.leaderEpoch, w.expect = r.Offset+1, r.LeaderEpoch, r.Offset+1
			d.m.malformed.Inc()
			d.log.Error("skipping a malformed record of the changes topic", "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		id := d.intern(l, v.Header, r.Partition)
		for i := range w.cs {
			if w.cs[i].Op == changes.Add {
				adds++
			} else {
				removes++
			}
		}
		for waited := false; ; waited = true {
			room := d.ws.Drained()
			if d.ws.Add(id, w.cs, w.open, now, &w.deltas) {
				break
			}
			if !w.waitRoom(room, !waited) {
				return
			}
			now = d.now()
		}
		w.next, w.leaderEpoch, w.expect = r.Offset+1, r.LeaderEpoch, r.Offset+1
	}
	d.tr.Apply(&w.deltas)
	w.deltas.Reset()
	w.read.Store(w.next)
	if adds > 0 {
		d.m.read.WithLabelValues("add").Add(float64(adds))
	}
	if removes > 0 {
		d.m.read.WithLabelValues("remove").Add(float64(removes))
	}
	if legacy > 0 {
		d.m.dropped.WithLabelValues(droppedLegacyIDFA).Add(float64(legacy))
		if !w.legacySeen {
			w.legacySeen = true
			d.log.Warn("dropping IDFA adds written by an earlier pinsync that hashed IDFAs in lower case (Pinterest matches none of them)",
				"partition", w.partition, "dropped", legacy)
		}
	}
	if d.closing.Load() {
		// Shutting down: what was read goes out now, in an epoch that
		// its flush can complete without waiting for the next tick.
		w.seal()
		d.ws.MarkUrgent(nil)
	}
}
