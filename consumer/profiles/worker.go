package profiles

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// batch is one partition's records of one poll, tagged with the worker's
// generation when it was handed out: a batch from before a rewind is not
// applied.
type batch struct {
	gen  uint32
	recs []*kgo.Record
}

// worker applies one input partition's records in offset order: it owns
// the partition's profile state and its transactional producer.
type worker struct {
	s   *Stage
	key partKey
	in  chan batch

	quit       chan struct{}
	done       chan struct{}
	stopOnce   sync.Once
	stopCtx    context.Context
	stopCommit bool
	ctx        context.Context // ends when a stop's deadline passes
	cancel     context.CancelFunc

	// The poll loop's side: see Stage.rewind.
	gen       atomic.Uint32
	accepting atomic.Bool
	rewindTo  int64
	rewound   chan struct{}
	highWater atomic.Int64
	committed atomic.Int64 // next input offset committed (or -1)
	// legacy are changelog keys of a version that keyed profiles by plain
	// id, restored under their digest: the next transaction deletes them.
	legacy []string
	// lowerIDFA are the removals of IDFAs a version that hashed them in
	// lower case left in the lists (see identifierRules): the first
	// transaction after the restore writes them.
	lowerIDFA []change
	// described are the audiences whose record (name, override) the
	// partition's changelog holds: restored, or written by a transaction
	// of this worker.
	described map[uint32]bool
	// failingSince is when the partition's start (fencing, restore)
	// began failing, in Unix nanoseconds; 0 while it does not.
	failingSince atomic.Int64

	prod  *kgo.Client
	state *profiles
	dead  bool // fenced by a newer owner: it reads nothing more
	part  *changes.Partitioner

	next        int64 // offset after the last applied record; -1 before any
	leaderEpoch int32
	// vouchFrom is the first offset whose changes the state vouches for
	// (see changes.Change.Vouched): -1 when the state is exactly what the
	// changes topic says, the input's end at restore when the state was
	// written by a version that kept no position.
	vouchFrom int64
	ev        schemas.Event
	ts        int64
	vouch     bool
	emit      func(change)

	// The open transaction.
	inTxn         bool
	txnChanges    int           // collected, written or not
	batchChanges  int           // collected by the batch being applied
	adds, removes int           // written, for the changes metric
	txnRecs       []*kgo.Record // its change records, whose offsets become marks
	posDirty      bool
	errMu         sync.Mutex
	prodErr       error
	marks         []int64 // per changes partition: offset after our last change there

	// slots gather the transaction's changes by list; touched are the
	// slots holding some (an index may repeat).
	slots   []*slot
	touched []int

	// The committer's side.
	qmu  sync.Mutex
	q    commit.Queue
	kept *commit.Epoch // passed and popped, its commit failed
}

// slot gathers one transaction's changes to one list, written as one
// record at its end (or whenever it holds changes.MaxChanges).
type slot struct {
	aud       uint32
	key       []byte
	partition int32
	cs        []changes.Change
}

func (s *Stage) newWorker(k partKey) *worker {
	w := &worker{
		s: s, key: k, in: make(chan batch, 4), quit: make(chan struct{}), done: make(chan struct{}),
		rewound: make(chan struct{}), next: -1, leaderEpoch: -1, vouchFrom: math.MaxInt64,
		state: newProfiles(s.cfg.MaxIdentifiersPerType, s.countMember),
		part:  changes.NewPartitioner(s.cfg.ChangesPartitions),
		marks: make([]int64, s.cfg.ChangesPartitions),
	}
	for i := range w.marks {
		w.marks[i] = -1
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.committed.Store(-1)
	w.emit = w.collect
	w.state.track = s.cfg.ChangelogTopic != ""
	return w
}

// countMember keeps each audience's count of members held here (typ 0)
// and of its lists' records they hold (typ the list's type).
func (s *Stage) countMember(aud uint32, typ ident.Type, delta int) {
	a := s.auds.get(aud)
	switch {
	case a == nil:
	case typ == 0:
		a.members.Add(int64(delta))
	case typ.Valid():
		a.records[typ].Add(int64(delta))
	}
}

// stop ends the worker, first ending its open transaction with a commit
// (commitTxn) or an abort, within ctx, and waits for it.
func (w *worker) stop(ctx context.Context, commitTxn bool) {
	w.stopOnce.Do(func() {
		w.stopCtx, w.stopCommit = ctx, commitTxn
		close(w.quit)
		go func() {
			select {
			case <-ctx.Done():
				w.cancel()
			case <-w.done:
			}
		}()
	})
	<-w.done
}

// close releases the worker's producer and state after stop.
func (w *worker) close() {
	w.cancel()
	if w.prod != nil {
		w.prod.Close()
		w.prod = nil
	}
	w.state.clear()
}

func (w *worker) run() {
	defer close(w.done)
	if !w.start(false) {
		w.idle()
		return
	}
	t := time.NewTicker(w.s.cfg.CommitInterval)
	defer t.Stop()
	for {
		// After every start, restarts included.
		w.removeLowerIDFA()
		select {
		case <-w.quit:
			if w.stopCommit && !w.dead {
				w.endTxn(w.stopCtx)
			} else {
				w.abortTxn(w.stopCtx)
			}
			return
		case <-t.C:
			w.endTxn(w.ctx)
		case b := <-w.in:
			w.process(b)
		}
		if w.dead {
			w.idle()
			return
		}
	}
}

// idle discards input until the worker is stopped: it no longer owns its
// partition, and the group tells it so soon.
func (w *worker) idle() {
	w.accepting.Store(false)
	for {
		select {
		case <-w.quit:
			return
		case <-w.in:
		}
	}
}

// retryWait is the wait before attempt n+1 of a start step.
func retryWait(n int) time.Duration {
	return min(time.Duration(n)*500*time.Millisecond, 10*time.Second)
}

// start makes the worker ready to apply records: a producer of the
// partition's transactional id (which fences any earlier owner), the state
// restored from the changelog, and the partition's fetch position moved to
// where the state stands. After a failed transaction (restart) it first
// checks that this member still owns the partition. It retries each step
// until it succeeds or the worker is stopped, and reports whether it is
// ready.
func (w *worker) start(restart bool) bool {
	s := w.s
	defer w.failingSince.Store(0)
	for attempt := 1; ; attempt++ {
		err := w.startOnce(restart)
		if err == nil {
			break
		}
		if w.dead || w.stopped() {
			return false
		}
		w.failingSince.CompareAndSwap(0, s.now().UnixNano())
		s.log.Warn("starting a partition failed; retrying", "topic", w.key.topic, "partition", w.key.partition,
			"attempt", attempt, "err", err)
		select {
		case <-w.quit:
			return false
		case <-time.After(retryWait(attempt)):
		}
	}
	select {
	case <-w.rewound:
		return true
	case <-w.quit:
		return false
	}
}

// removeLowerIDFA writes, in a transaction of their own, the removals of
// the IDFAs the restore dropped (see identifierRules), with the profiles
// rewritten without them.
func (w *worker) removeLowerIDFA() {
	if len(w.lowerIDFA) == 0 {
		return
	}
	if !w.inTxn {
		if err := w.prod.BeginTransaction(); err != nil {
			w.fail(err)
			return
		}
		w.inTxn = true
	}
	w.ts, w.vouch = 0, false
	for _, c := range w.lowerIDFA {
		w.collect(c)
	}
	w.lowerIDFA = nil
	w.txnChanges += w.batchChanges
	w.s.addPending(w.batchChanges)
	w.batchChanges = 0
}

func (w *worker) stopped() bool {
	select {
	case <-w.quit:
		return true
	default:
		return false
	}
}

func (w *worker) startOnce(restart bool) error {
	s := w.s
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	defer cancel()
	if w.committed.Load() < 0 {
		if err := w.learnCommitted(ctx); err != nil {
			return err
		}
	}
	if restart {
		owned, err := s.owns(ctx, w)
		if err != nil {
			return err
		}
		if !owned {
			w.dead = true
			return errors.New("the partition has a new owner")
		}
	}
	if w.prod == nil {
		prod, err := kgo.NewClient(append(append([]kgo.Opt{}, s.kopts...),
			kgo.TransactionalID(s.cfg.Group+".profiles."+w.key.topic+"."+strconv.Itoa(int(w.key.partition))),
			kgo.TransactionTimeout(s.cfg.TransactionTimeout),
			// A record not written within the transaction's timeout fails
			// (the broker would abort its transaction anyway): a broker
			// that cannot take it stops commits instead of hanging them.
			kgo.RecordDeliveryTimeout(s.cfg.TransactionTimeout),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			// Digests do not compress.
			kgo.ProducerBatchCompression(kgo.NoCompression()),
		)...)
		if err != nil {
			return err
		}
		w.prod = prod
	}
	// Initialising the transactional id aborts an earlier owner's open
	// transaction and fences it: from here on only this member writes the
	// partition's changes and state.
	if _, _, err := w.prod.ProducerID(ctx); err != nil {
		w.prod.Close()
		w.prod = nil
		return fmt.Errorf("initialising the transactional producer: %w", err)
	}
	if err := w.restore(ctx); err != nil {
		return err
	}
	s.rewind(w, w.resumeAt())
	return nil
}

// learnCommitted reads the group's committed offset of the partition: what
// an ownership check commits, and where reading resumes when the changelog
// keeps no position.
func (w *worker) learnCommitted(ctx context.Context) error {
	s := w.s
	resp, err := s.adm.FetchOffsets(ctx, s.cfg.Group)
	if err != nil {
		return fmt.Errorf("reading the group's committed offsets: %w", err)
	}
	if o, ok := resp.Lookup(w.key.topic, w.key.partition); ok && o.Err == nil && o.At >= 0 {
		w.committed.CompareAndSwap(-1, o.At)
	}
	return nil
}

// resumeAt is where reading resumes after a start: the restored position;
// without one (no changelog, or none of its transactions ever committed)
// after the newest transaction this worker committed, else at the group's
// committed offset, else at the partition's start (offset 0, reset to the
// log start if it is gone). Never where the fetch happens to be: after a
// failed transaction that is past the records it lost.
func (w *worker) resumeAt() int64 {
	if w.next >= 0 {
		return w.next
	}
	w.qmu.Lock()
	e, ok := w.q.Newest()
	if w.kept != nil && (!ok || w.kept.Next > e.Next) {
		e, ok = *w.kept, true
	}
	w.qmu.Unlock()
	if ok {
		return e.Next
	}
	return max(w.committed.Load(), 0)
}

// restore rebuilds the state from the changelog and sets where reading
// resumes. An epoch standing for the restored position waits for the list
// stage to pass everything in the changes topic now, so that its commit
// covers the changes the earlier owner wrote.
func (w *worker) restore(ctx context.Context) error {
	s := w.s
	w.state.clear()
	w.next, w.leaderEpoch = -1, -1
	if s.cfg.ChangelogTopic == "" {
		w.vouchFrom = math.MaxInt64 // no durable state: nothing is vouched
		return nil
	}
	s.m.restoring.Inc()
	defer s.m.restoring.Dec()
	res, err := restore(ctx, s.kopts, s.cfg.ChangelogTopic, w.key, w.state, s.codec, func(off int64) {
		s.log.Warn("skipping malformed changelog record", "partition", w.key.partition, "offset", off)
	})
	if err != nil {
		w.state.clear()
		return fmt.Errorf("restoring state: %w", err)
	}
	s.m.restored.Add(float64(res.profiles))
	w.legacy = res.legacy
	w.lowerIDFA = res.lowerIDFA
	if len(res.lowerIDFA) > 0 {
		s.log.Warn("the restored state holds IDFAs an earlier pinsync hashed in lower case, which Pinterest matches nobody by: "+
			"they are dropped and removed from the lists; the lists gain each IDFA again when an event carries it",
			"topic", w.key.topic, "partition", w.key.partition, "removals", len(res.lowerIDFA))
	}
	w.described = make(map[uint32]bool, len(res.audiences))
	for _, a := range res.audiences {
		w.described[a] = true
	}
	switch {
	case res.next >= 0:
		w.next, w.leaderEpoch, w.vouchFrom = res.next, res.leaderEpoch, -1
		marks, err := w.changesEnd(ctx)
		if err != nil {
			w.state.clear()
			return err
		}
		w.push(commit.Epoch{Next: res.next, LeaderEpoch: res.leaderEpoch, Marks: marks})
	case res.empty:
		// Nobody ever wrote this partition's state: the lists hold
		// nothing of it.
		w.vouchFrom = -1
	default:
		// State of a version that kept no position: the lists may be
		// ahead of it up to what was in the partition.
		end, err := kadm.NewClient(s.cl).ListEndOffsets(ctx, w.key.topic)
		if err != nil {
			w.state.clear()
			return fmt.Errorf("input end offsets: %w", err)
		}
		o, _ := end.Lookup(w.key.topic, w.key.partition)
		w.vouchFrom = o.Offset
	}
	s.log.Info("state restored", "topic", w.key.topic, "partition", w.key.partition, "profiles", w.state.t.len(),
		"next", w.next)
	return nil
}

// changesEnd returns the last stable offset of every changes partition
// (-1 for an empty one): the marks of an epoch that covers everything
// written so far.
func (w *worker) changesEnd(ctx context.Context) ([]int64, error) {
	s := w.s
	ends, err := kadm.NewClient(s.cl).ListCommittedOffsets(ctx, s.cfg.ChangesTopic)
	if err != nil {
		return nil, fmt.Errorf("changes end offsets: %w", err)
	}
	marks := make([]int64, s.cfg.ChangesPartitions)
	for i := range marks {
		marks[i] = -1
		if o, ok := ends.Lookup(s.cfg.ChangesTopic, int32(i)); ok && o.Err == nil && o.Offset > 0 {
			marks[i] = o.Offset
		}
	}
	return marks, nil
}

// collect takes one change of the record being applied.
func (w *worker) collect(c change) {
	i := int(c.aud)*(ident.NumTypes+1) + int(c.typ)
	if i >= len(w.slots) {
		w.slots = append(w.slots, make([]*slot, i+1-len(w.slots))...)
	}
	sl := w.slots[i]
	if sl == nil {
		sl = &slot{aud: c.aud}
		sl.key = changes.List{Audience: w.s.auds.key(c.aud), Type: c.typ}.AppendKey(nil)
		sl.partition = w.part.Partition(sl.key)
		w.slots[i] = sl
	}
	if len(sl.cs) == 0 {
		w.touched = append(w.touched, i)
	}
	sl.cs = append(sl.cs, changes.Change{Hash: c.hash, Op: c.op, Vouched: c.vouched && w.vouch, TS: w.ts})
	w.batchChanges++
	if len(sl.cs) == changes.MaxChanges {
		w.writeSlot(sl)
	}
}

// process applies a batch of records and writes their changes.
func (w *worker) process(b batch) {
	if b.gen != w.gen.Load() {
		return // handed out before a rewind
	}
	s := w.s
	if !w.inTxn {
		if err := w.prod.BeginTransaction(); err != nil {
			w.fail(err)
			return
		}
		w.inTxn = true
	}
	// Counted per batch, not per event: a labelled counter lookup costs
	// more than the rest of an event's bookkeeping.
	var applied, filtered [4]int // by schemas.Kind
	for _, r := range b.recs {
		if r.Offset < w.next {
			continue // applied before the state was written
		}
		w.next, w.leaderEpoch, w.posDirty = r.Offset+1, r.LeaderEpoch, true
		if r.Attrs.IsControl() {
			continue
		}
		ev := &w.ev
		if err := s.dec.Decode(r.Key, r.Value, ev); err != nil {
			var de *schemas.DecodeError
			reason := "undecodable"
			if errors.As(err, &de) {
				reason = de.Reason
			}
			s.m.events.WithLabelValues("unknown", "dead_lettered").Inc()
			w.deadLetter(r, reason)
			continue
		}
		var aud uint32
		if ev.Kind == schemas.KindMembership {
			a := s.auds.intern(ev.Audience, ev.AudienceName, ev.AdAccount)
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
			s.m.events.WithLabelValues(schemas.Kind(k).String(), "applied").Add(float64(applied[k]))
		}
		if filtered[k] > 0 {
			s.m.events.WithLabelValues(schemas.Kind(k).String(), "filtered").Add(float64(filtered[k]))
		}
	}
	// The changes count as pending from now: fetching pauses on them
	// before they are written.
	if n := w.batchChanges; n > 0 {
		w.txnChanges += n
		w.batchChanges = 0
		s.addPending(n)
	}
}

// writeChanges produces the transaction's changes still gathered, one
// record per list, into the open transaction: fewer, fuller records than
// one per batch, which the transaction's commit makes visible at the same
// moment anyway.
func (w *worker) writeChanges() {
	s := w.s
	for _, i := range w.touched {
		sl := w.slots[i]
		if len(sl.cs) > 0 {
			w.writeSlot(sl)
		}
		w.describe(sl.aud)
	}
	w.touched = w.touched[:0]
	if w.adds > 0 {
		s.m.changes.WithLabelValues("add").Add(float64(w.adds))
	}
	if w.removes > 0 {
		s.m.changes.WithLabelValues("remove").Add(float64(w.removes))
	}
	w.adds, w.removes = 0, 0
}

// describe writes, once per partition, what the changelog keeps of an
// audience whose lists the partition's changes touch: a new owner then
// resolves its ad account as the events did.
func (w *worker) describe(aud uint32) {
	s := w.s
	if s.cfg.ChangelogTopic == "" || w.described[aud] {
		return
	}
	key, name, override, ok := s.auds.meta(aud)
	if !ok {
		return
	}
	if w.described == nil {
		w.described = make(map[uint32]bool)
	}
	w.produce(&kgo.Record{Topic: s.cfg.ChangelogTopic, Partition: w.key.partition,
		Key: []byte(audienceKey(w.key.topic, key)), Value: audienceValue(name, override)})
	w.described[aud] = true
}

// writeSlot produces the changes sl holds (at most changes.MaxChanges) as
// one record.
func (w *worker) writeSlot(sl *slot) {
	s := w.s
	h := s.auds.header(sl.aud)
	for _, c := range sl.cs {
		if c.Op == changes.Add {
			w.adds++
		} else {
			w.removes++
		}
	}
	v := changes.AppendValue(make([]byte, 0, 32+len(h.AdAccount)+len(h.Name)+len(sl.cs)*(34+4)), h, sl.cs)
	rec := &kgo.Record{Topic: s.cfg.ChangesTopic, Partition: sl.partition, Key: sl.key, Value: v}
	w.produce(rec)
	w.txnRecs = append(w.txnRecs, rec)
	sl.cs = sl.cs[:0]
}

func (w *worker) produce(r *kgo.Record) {
	w.prod.Produce(w.ctx, r, w.promise)
}

func (w *worker) promise(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.prodErr == nil {
		w.prodErr = err
	}
}

func (w *worker) takeErr() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	err := w.prodErr
	w.prodErr = nil
	return err
}

// deadLetter writes a record that cannot be applied to the dead-letter
// topic, in the open transaction.
func (w *worker) deadLetter(r *kgo.Record, reason string) {
	s := w.s
	key, value := r.Key, r.Value
	headers := make([]kgo.RecordHeader, 0, 6)
	if size := len(key) + len(value); size > maxDeadLetterBytes {
		// The producer (and a broker at its defaults) refuses a record
		// of a megabyte: the dead letter is the record's head, so that
		// the partition goes on committing.
		headers = append(headers,
			kgo.RecordHeader{Key: "pinsync.decode_reason", Value: []byte(reason)},
			kgo.RecordHeader{Key: "pinsync.original_bytes", Value: []byte(strconv.Itoa(size))})
		reason = "too_large"
		key, value = key[:min(len(key), deadLetterHeadBytes)], value[:min(len(value), deadLetterHeadBytes)]
	}
	headers = append(headers,
		kgo.RecordHeader{Key: "pinsync.reason", Value: []byte(reason)},
		kgo.RecordHeader{Key: "pinsync.source.topic", Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: "pinsync.source.partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: "pinsync.source.offset", Value: []byte(strconv.FormatInt(r.Offset, 10))})
	w.produce(&kgo.Record{
		Topic:     s.cfg.DLQTopic,
		Partition: r.Partition % s.cfg.DLQPartitions,
		Key:       key,
		Value:     value,
		Headers:   headers,
	})
	s.deps.DeadLetters.WithLabelValues(reason).Inc()
}

// A dead letter carries the record as it came up to maxDeadLetterBytes of
// key and value (below the producer's and the broker's default limits of
// about 1 MB for a record with its headers); a larger one carries its
// first deadLetterHeadBytes of key and of value, with the reason
// "too_large".
const (
	maxDeadLetterBytes  = 900_000
	deadLetterHeadBytes = 64 << 10
)

// endTxn writes the state the transaction's records left and the position,
// and commits the transaction; the epoch it seals then waits for the list
// stage.
func (w *worker) endTxn(ctx context.Context) {
	if !w.inTxn {
		return
	}
	s := w.s
	w.writeChanges()
	if s.cfg.ChangelogTopic != "" {
		for _, k := range w.legacy {
			w.produce(&kgo.Record{Topic: s.cfg.ChangelogTopic, Partition: w.key.partition, Key: []byte(k)})
		}
		w.state.takeDirty(func(key string, p *profile) {
			r := &kgo.Record{Topic: s.cfg.ChangelogTopic, Partition: w.key.partition, Key: []byte(changelogKey(w.key.topic, key))}
			if p != nil {
				r.Value = s.codec.encode(p)
			}
			w.produce(r)
		})
		if w.posDirty {
			w.produce(&kgo.Record{Topic: s.cfg.ChangelogTopic, Partition: w.key.partition,
				Key: []byte(positionKey(w.key.topic)), Value: positionValue(w.next, w.leaderEpoch)})
		}
	}
	// Writing and committing get the transaction's timeout, no more.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.TransactionTimeout)
	defer cancel()
	err := w.prod.Flush(ctx)
	if err == nil {
		err = w.takeErr()
	}
	if err == nil {
		err = w.prod.EndTransaction(ctx, kgo.TryCommit)
	}
	if err != nil {
		w.fail(err)
		return
	}
	w.inTxn = false
	w.legacy = nil
	for _, r := range w.txnRecs {
		w.marks[r.Partition] = max(w.marks[r.Partition], r.Offset+1)
	}
	clear(w.txnRecs)
	w.txnRecs = w.txnRecs[:0]
	s.m.transactions.WithLabelValues("committed").Inc()
	if w.next >= 0 {
		w.push(commit.Epoch{Next: w.next, LeaderEpoch: w.leaderEpoch, Changes: w.txnChanges, Marks: append([]int64(nil), w.marks...)})
	}
	w.txnChanges, w.posDirty = 0, false
}

// abortTxn abandons the open transaction.
func (w *worker) abortTxn(ctx context.Context) {
	if !w.inTxn || w.prod == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, w.s.cfg.TransactionTimeout)
	defer cancel()
	_ = w.prod.AbortBufferedRecords(ctx)
	_ = w.prod.EndTransaction(ctx, kgo.TryAbort)
	w.inTxn = false
	s := w.s
	s.m.transactions.WithLabelValues("aborted").Inc()
}

// fenced reports whether err says a newer producer of the transactional
// id exists: another member owns the partition now.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// fail handles a transaction that could not commit: its changes and state
// never became visible, so the worker starts the partition again from the
// last committed state and position. A producer fenced by a newer owner
// does so only if the group still counts this member as the owner (a
// transaction the broker aborted after its timeout, while this member was
// paused but kept the partition).
func (w *worker) fail(err error) {
	s := w.s
	s.log.Warn("transaction failed; starting the partition again from its last committed state",
		"topic", w.key.topic, "partition", w.key.partition, "fenced", fenced(err), "err", err)
	w.abortTxn(w.ctx)
	w.resetTxn()
	w.accepting.Store(false)
	if w.prod != nil {
		w.prod.Close()
		w.prod = nil
	}
	w.rewound = make(chan struct{})
	if w.stopped() {
		// Revoked or shutting down: whoever reads the partition next
		// starts from the last committed state; restoring it here would
		// only spend the time the stop has.
		w.dead = true
		return
	}
	// Queued epochs stay: their transactions committed.
	if !w.start(true) {
		w.dead = true
		s.log.Warn("this member no longer owns the partition; it waits to be told", "topic", w.key.topic, "partition", w.key.partition)
	}
}

// resetTxn forgets the open transaction's bookkeeping; its changes no
// longer count as pending (they are written again after the rewind).
func (w *worker) resetTxn() {
	w.s.addPending(-w.txnChanges)
	w.inTxn = false
	clear(w.txnRecs)
	w.txnRecs = w.txnRecs[:0]
	w.txnChanges, w.batchChanges, w.posDirty = 0, 0, false
	w.adds, w.removes = 0, 0
	w.takeErr()
	for _, i := range w.touched {
		w.slots[i].cs = w.slots[i].cs[:0]
	}
	w.touched = w.touched[:0]
}

// push appends a sealed epoch for the committer. Its changes already
// count as pending since they were written.
func (w *worker) push(e commit.Epoch) {
	w.qmu.Lock()
	w.q.Push(e)
	w.qmu.Unlock()
}

// queued returns the changes of the sealed epochs not yet committed.
func (w *worker) queued() int {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return w.q.Pending()
}

// waiting reports whether any sealed epoch is not committed yet.
func (w *worker) waiting() bool {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return w.q.Len() > 0 || w.kept != nil
}

// passed pops the epochs the list stage has passed and returns the newest
// (or the one kept after a failed commit), and the changes popped.
func (w *worker) passed(down []int64) (commit.Epoch, int, bool) {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	before := w.q.Pending()
	e, ok := w.q.Passed(down)
	n := before - w.q.Pending()
	if !ok && w.kept != nil {
		e, ok = *w.kept, true
	}
	w.kept = nil
	return e, n, ok
}

// retain keeps e for the next commit after its commit failed.
func (w *worker) retain(e commit.Epoch) {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	if w.kept == nil || e.Next > w.kept.Next {
		w.kept = &e
	}
}
