package consumer

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// worker applies one partition's records in offset order: it owns the
// partition's profile state and seals an epoch every flush interval.
type worker struct {
	e         *Engine
	key       partKey
	pt        *partTrack
	in        chan []*kgo.Record
	quit      chan struct{}
	done      chan struct{}
	state     *profiles
	highWater atomic.Int64

	ctx         context.Context // ends when the worker is told to quit
	epoch       uint32
	next        int64 // offset after the last applied record; -1 before any
	leaderEpoch int32
	ev          schemas.Event
	changes     []change

	// A worker may cancel a change that brings a record back to where its
	// list stands (see windows.add) only when the profile state is an
	// exact view of the lists. It is not while the worker replays records
	// an earlier owner of the partition may have processed: that owner may
	// have uploaded changes it never committed, or had a change superseded
	// in a window before it was sent. So the worker records in the
	// changelog how far it may read (fence) before it reads that far, and
	// a new owner vouches for no change of a record below the highest
	// fence found (vouchFrom).
	fence     int64
	vouchFrom int64
	ts        int64 // event time of the record being applied
	vouch     bool  // whether its changes are vouched
	emit      func(change)
}

// fenceStep is how far past the record being read a worker's fence is
// set: one changelog write per fenceStep records of a partition.
const fenceStep = 100_000

func (e *Engine) newWorker(k partKey) *worker {
	pt := e.tr.assign(k, -1)
	ctx, cancel := context.WithCancel(e.uploadCtx)
	quit := make(chan struct{})
	go func() { <-quit; cancel() }()
	w := &worker{ctx: ctx,
		e: e, key: k, pt: pt,
		in:   make(chan []*kgo.Record, 4),
		quit: quit, done: make(chan struct{}),
		state: newProfiles(e.cfg.MaxIdentifiersPerType, e.countMember),
		epoch: pt.open, next: -1, leaderEpoch: -1,
		fence: -1, vouchFrom: math.MaxInt64,
	}
	w.emit = w.collect
	w.state.track = e.changelogOn()
	return w
}

// collect takes one change of the record being applied.
func (w *worker) collect(c change) {
	c.ts = w.ts
	c.vouched = c.vouched && w.vouch
	w.changes = append(w.changes, c)
}

func (w *worker) run() {
	defer close(w.done)
	if err := w.restore(w.ctx); err != nil {
		if w.ctx.Err() == nil {
			w.e.log.Error("state restore failed; the partition is not processed", "topic", w.key.topic, "partition", w.key.partition, "err", err)
		}
		<-w.quit
		return
	}
	t := time.NewTicker(w.e.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			w.seal()
			w.state.clear()
			return
		case <-t.C:
			w.seal()
		case recs := <-w.in:
			w.process(recs)
		}
	}
}

// countMember keeps each audience's count of local members.
func (e *Engine) countMember(aud uint32, delta int) {
	if a := e.auds.get(aud); a != nil {
		a.members.Add(int64(delta))
	}
}

// seal closes the open epoch at the next offset to read.
func (w *worker) seal() {
	if w.next < 0 {
		return
	}
	var snap []stateRecord
	if n := len(w.state.dirty); n > 0 {
		snap = make([]stateRecord, 0, n)
		w.state.takeDirty(func(id string, p *profile) {
			r := stateRecord{key: changelogKey(w.key.topic, id)}
			if p != nil {
				r.value = w.e.encodeProfile(p)
			}
			snap = append(snap, r)
		})
	}
	w.e.tr.seal(w.pt, w.next, w.leaderEpoch, snap)
	w.epoch++
}

// process applies a batch of records and puts their changes into the
// windows in one step.
func (w *worker) process(recs []*kgo.Record) {
	e := w.e
	w.changes = w.changes[:0]
	now := e.now()
	// Counted per batch, not per event: a labelled counter lookup costs
	// more than the rest of an event's bookkeeping.
	var applied, filtered [4]int // by schemas.Kind
	if len(recs) > 0 && recs[len(recs)-1].Offset >= w.fence && !w.extendFence(recs[len(recs)-1].Offset+1) {
		return // quitting
	}
	for _, r := range recs {
		if r.Offset < w.next {
			continue // already applied (a fetch from before a reassignment)
		}
		w.next = r.Offset + 1
		w.leaderEpoch = r.LeaderEpoch
		ev := &w.ev
		if err := e.dec.Decode(r.Key, r.Value, ev); err != nil {
			var de *schemas.DecodeError
			reason := "undecodable"
			if errors.As(err, &de) {
				reason = de.Reason
			}
			e.m.events.WithLabelValues("unknown", "dead_lettered").Inc()
			w.deadLetter(r, reason)
			continue
		}
		var aud uint32
		if ev.Kind == schemas.KindMembership {
			a := e.auds.intern(ev.Audience, ev.AudienceName, ev.AdAccount)
			if a.selected {
				aud = a.id
				applied[ev.Kind]++
			} else {
				// Not synced: its identifiers still count, its membership not.
				filtered[ev.Kind]++
				ev.Kind = schemas.KindIdentify
				ev.Replace = false
			}
		} else if ev.Kind < schemas.Kind(len(applied)) {
			applied[ev.Kind]++
		}
		w.ts, w.vouch = ev.Timestamp, r.Offset >= w.vouchFrom
		w.state.apply(ev, aud, w.emit)
	}
	for k := range applied {
		if applied[k] > 0 {
			e.m.events.WithLabelValues(schemas.Kind(k).String(), "applied").Add(float64(applied[k]))
		}
		if filtered[k] > 0 {
			e.m.events.WithLabelValues(schemas.Kind(k).String(), "filtered").Add(float64(filtered[k]))
		}
	}
	var adds, removes int
	for _, c := range w.changes {
		if c.op == opAdd {
			adds++
		} else {
			removes++
		}
	}
	if adds > 0 {
		e.m.changes.WithLabelValues("add").Add(float64(adds))
	}
	if removes > 0 {
		e.m.changes.WithLabelValues("remove").Add(float64(removes))
	}
	e.ws.add(w.changes, pendKey{w.pt, w.epoch}, now)
}

// extendFence records in the changelog that this worker may read up to
// past (plus fenceStep), never lowering an earlier owner's fence, and waits
// for the acknowledgement, retrying until it succeeds or the worker quits.
// Without a changelog there is nothing to record.
func (w *worker) extendFence(past int64) bool {
	e := w.e
	if !e.changelogOn() {
		w.fence = math.MaxInt64
		return true
	}
	fence := past + fenceStep
	if w.vouchFrom != math.MaxInt64 && w.vouchFrom > fence {
		fence = w.vouchFrom
	}
	rec := &kgo.Record{Topic: e.cfg.ChangelogTopic, Partition: w.key.partition,
		Key: []byte(fenceKey(w.key.topic)), Value: binary.BigEndian.AppendUint64(nil, uint64(fence))}
	for {
		err := e.cl.ProduceSync(w.ctx, rec).FirstErr()
		if err == nil {
			w.fence = fence
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		e.log.Warn("changelog fence write failed; retrying", "topic", w.key.topic, "partition", w.key.partition, "err", err)
		select {
		case <-time.After(time.Second):
		case <-w.ctx.Done():
			return false
		}
	}
}

// deadLetter sends a record that cannot be applied to the dead-letter
// topic. Its epoch cannot complete until the broker acknowledged it.
func (w *worker) deadLetter(r *kgo.Record, reason string) {
	e := w.e
	pk := pendKey{w.pt, w.epoch}
	e.tr.add(map[pendKey]int{pk: 1})
	rec := &kgo.Record{
		Topic:     e.cfg.DLQTopic,
		Partition: r.Partition % e.dlqParts,
		Key:       r.Key,
		Value:     r.Value,
		Headers: []kgo.RecordHeader{
			{Key: "pinsync.reason", Value: []byte(reason)},
			{Key: "pinsync.source.topic", Value: []byte(r.Topic)},
			{Key: "pinsync.source.partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
			{Key: "pinsync.source.offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		},
	}
	e.produceDLQ(rec, reason, pk)
}

// produceDLQ produces a dead letter, retrying until it is acknowledged or
// the partition is dropped, then releases its pending count.
func (e *Engine) produceDLQ(rec *kgo.Record, reason string, pk pendKey) {
	e.cl.Produce(e.uploadCtx, rec, func(_ *kgo.Record, err error) {
		if err != nil && !pk.part.dropped.Load() && e.uploadCtx.Err() == nil {
			e.log.Warn("dead-letter produce failed; retrying", "reason", reason, "err", err)
			go func() {
				time.Sleep(time.Second)
				e.produceDLQ(rec, reason, pk)
			}()
			return
		}
		if err == nil {
			e.m.deadLetters.WithLabelValues(reason).Inc()
		}
		e.tr.add(map[pendKey]int{pk: -1})
	})
}

// deadLetterHash dead-letters one record Pinterest rejected for good. The
// value is the hash, never a plaintext identifier.
func (e *Engine) deadLetterHash(ctx context.Context, a *audience, listID string, o pinterest.Operation, h ident.Hash, cause error) error {
	var pe *pinterest.Error
	code := ""
	if errors.As(cause, &pe) {
		code = strconv.Itoa(pe.Code)
	}
	rec := &kgo.Record{
		Topic: e.cfg.DLQTopic,
		Value: h.AppendHex(nil),
		Headers: []kgo.RecordHeader{
			{Key: "pinsync.reason", Value: []byte("pinterest_rejected")},
			{Key: "pinsync.pinterest.code", Value: []byte(code)},
			{Key: "pinsync.audience", Value: []byte(a.key)},
			{Key: "pinsync.list_id", Value: []byte(listID)},
			{Key: "pinsync.operation", Value: []byte(string(o))},
		},
	}
	if err := e.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return err
	}
	e.m.deadLetters.WithLabelValues("pinterest_rejected").Inc()
	return nil
}
