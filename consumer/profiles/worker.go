package profiles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/member"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
	"github.com/pinsync/pinsync/schemas/ident"
)

// workerDeps are what the stage hands every worker: its settings, and the
// parts of the stage a worker uses. A worker reaches no further.
type workerDeps struct {
	cfg         Config
	log         *slog.Logger
	m           *metrics
	dec         *format.Decoder
	auds        *audiences
	codec       codec
	kopts       []kgo.Opt
	now         func() time.Time
	deadLetters *prometheus.CounterVec
	pending     *pending
	// client is the member's.
	client func() *kgo.Client
	// rewind asks the poll loop to move the worker's partition (see
	// worker.rewound).
	rewind func(w *worker)
	// owns checks that the member still owns the worker's partition.
	owns func(ctx context.Context, w *worker) (bool, error)
	// pause asks the poll loop to pause the worker's partition (see
	// worker.paused); waits are the partitions waiting for the registry.
	pause    func(w *worker)
	waits    *registryWaits
	misKeyed *misKeyed
}

// batch is one partition's records of one poll, tagged with the worker's
// generation when it was handed out: a batch from before a rewind is not
// applied.
type batch struct {
	gen  uint32
	recs []*kgo.Record
}

// worker applies one input partition's records in offset order: it owns
// the partition's profile state, its transaction (txn) and the epochs its
// transactions sealed.
type worker struct {
	d   *workerDeps
	key partKey
	in  chan batch

	quit       chan struct{}
	done       chan struct{}
	stopOnce   sync.Once
	stopCtx    context.Context
	stopCommit bool
	ctx        context.Context // ends when a stop's deadline passes
	cancel     context.CancelFunc

	// The poll loop's side: see rewound.
	gen       atomic.Uint32
	accepting atomic.Bool
	rewindTo  int64
	rewoundCh chan struct{}
	committed atomic.Int64 // next input offset committed (or -1)
	// lowerIDFA are the removals of IDFAs a version that hashed them in
	// lower case left in the lists (see identifierRules): the first
	// transaction after the restore writes them.
	lowerIDFA []change
	// Failing says since when the partition's start (fencing, restore)
	// has failed.
	member.Failing
	// txnFailing says since when its transactions have failed: set by
	// the first failed commit, cleared by the next one that succeeds (a
	// successful start does not clear it, so a partition that fails the
	// same transaction after every start counts as failing).
	txnFailing member.Failing
	// Halt says why the worker stopped reading its partition.
	member.Halt

	state *profiles
	txn   *txn
	// epochs are the sealed epochs the stage's committer takes.
	epochs epochs
	dead   bool // fenced by a newer owner: it reads nothing more

	next        int64 // offset after the last applied record; -1 before any
	leaderEpoch int32
	// vouchFrom is the first offset whose changes the state vouches for
	// (see changes.Change.Vouched): -1 when the state is exactly what the
	// changes topic says, the input's end at restore when the state was
	// written by a version that kept no position.
	vouchFrom int64
	ev        schemas.Event
	emit      func(change)
	// held is the record the schema registry could not tell the schema
	// of, while the partition waits for it (see waitRegistry).
	held *heldRecord
}

func newWorker(d *workerDeps, k partKey) *worker {
	w := &worker{
		d: d, key: k, in: make(chan batch, 4), quit: make(chan struct{}), done: make(chan struct{}),
		rewoundCh: make(chan struct{}), next: -1, leaderEpoch: -1, vouchFrom: math.MaxInt64,
		state: newProfiles(d.cfg.MaxIdentifiersPerType, d.auds.countMember),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.txn = newTxn(d, k, w.ctx)
	w.committed.Store(-1)
	w.emit = w.txn.collect
	w.state.track = d.cfg.ChangelogTopic != ""
	return w
}

// Feed implements member.Worker. Records arriving while the worker
// restarts are read again after its rewind.
func (w *worker) Feed(ctx context.Context, recs []*kgo.Record) {
	if !w.accepting.Load() {
		return
	}
	select {
	case w.in <- batch{gen: w.gen.Load(), recs: recs}:
	case <-w.quit:
	case <-ctx.Done():
	}
}

// FailingSince implements member.Worker: since when the partition's start,
// or its transactions, have been failing; zero while neither does.
func (w *worker) FailingSince() time.Time {
	s, t := w.Failing.FailingSince(), w.txnFailing.FailingSince()
	if s.IsZero() || (!t.IsZero() && t.Before(s)) {
		return t
	}
	return s
}

// Committed implements member.Worker.
func (w *worker) Committed() int64 { return w.committed.Load() }

// setCommitted records that next was committed.
func (w *worker) setCommitted(next int64) { w.committed.Store(next) }

// rewound moves the partition's fetch position to where the worker asked
// (nowhere when negative) and resumes fetching it, from the poll goroutine
// between polls: no fetch of the old position is handed out afterwards,
// and batches handed out before are not applied.
func (w *worker) rewound(cl *kgo.Client) {
	if w.rewindTo >= 0 {
		cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{w.key.topic: {w.key.partition: {Epoch: -1, Offset: w.rewindTo}}})
	}
	w.gen.Add(1)
	w.accepting.Store(true)
	cl.ResumeFetchPartitions(map[string][]int32{w.key.topic: {w.key.partition}})
	close(w.rewoundCh)
}

// pendingChanges are the changes of the worker's transactions the list
// stage has not passed, the open one's included. Call it once the worker
// has stopped.
func (w *worker) pendingChanges() int { return w.epochs.pending() + w.txn.pending() }

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
	w.txn.closeProducer()
	w.state.clear()
}

func (w *worker) run() {
	defer close(w.done)
	defer w.release()
	if !w.start(false) {
		w.idle()
		return
	}
	t := time.NewTicker(w.d.cfg.CommitInterval)
	defer t.Stop()
	for {
		// After every start, restarts included.
		w.removeLowerIDFA()
		select {
		case <-w.quit:
			if w.stopCommit && !w.dead {
				w.endTxn(w.stopCtx)
			} else {
				w.txn.abort(w.stopCtx)
			}
			return
		case <-t.C:
			w.endTxn(w.ctx)
		case b := <-w.in:
			w.process(b)
		case <-w.retry():
			w.probe()
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
	defer w.Started()
	for attempt := 1; ; attempt++ {
		err := w.startOnce(restart)
		if err == nil {
			break
		}
		if w.dead || w.stopped() {
			return false
		}
		if h := (*halting)(nil); errors.As(err, &h) {
			w.halt(h.reason, h.err)
			return false
		}
		w.Fail(w.d.now())
		w.d.log.Warn("starting a partition failed; retrying", "topic", w.key.topic, "partition", w.key.partition,
			"attempt", attempt, "err", err)
		select {
		case <-w.quit:
			return false
		case <-time.After(retryWait(attempt)):
		}
	}
	select {
	case <-w.rewoundCh:
		return true
	case <-w.quit:
		return false
	}
}

// halting is a start's error that retrying cannot get past: the
// partition halts for reason (see member.Halt).
type halting struct {
	reason string
	err    error
}

func (h *halting) Error() string { return h.err.Error() }
func (h *halting) Unwrap() error { return h.err }

// halt stops the partition for reason, once: its fetching stays paused
// (a worker resumes it only when its start succeeds), nothing of it is
// applied or committed, and the error log says why.
func (w *worker) halt(reason string, err error) {
	if !w.Halt.Halt(reason, err) {
		return
	}
	w.d.log.Error("an input partition stopped: nothing past this point is read or committed until the cause is dealt with (see PinsyncPartitionHalted in the README)",
		"topic", w.key.topic, "partition", w.key.partition, "reason", reason, "err", err)
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
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	defer cancel()
	if w.committed.Load() < 0 {
		if err := w.learnCommitted(ctx); err != nil {
			return err
		}
	}
	if restart {
		owned, err := w.d.owns(ctx, w)
		if err != nil {
			return err
		}
		if !owned {
			w.dead = true
			return errors.New("the partition has a new owner")
		}
	}
	// Initialising the transactional id aborts an earlier owner's open
	// transaction and fences it: from here on only this member writes the
	// partition's changes and state.
	if err := w.txn.connect(ctx); err != nil {
		return fmt.Errorf("initialising the transactional producer: %w", err)
	}
	if err := w.restore(ctx); err != nil {
		return err
	}
	at, err := w.resumeAt(ctx)
	if err != nil {
		return err
	}
	w.rewindTo = at
	w.d.rewind(w)
	return nil
}

// process applies a batch of records and writes their changes.
func (w *worker) process(b batch) {
	if b.gen != w.gen.Load() || w.held != nil {
		return // handed out before a rewind, or while waiting for the registry
	}
	d := w.d
	if err := w.txn.begin(); err != nil {
		w.fail(err)
		return
	}
	// Counted per batch, not per event: a labelled counter lookup costs
	// more than the rest of an event's bookkeeping.
	var applied, filtered [4]int // by schemas.Kind
	var keys keyCounts
	for _, r := range b.recs {
		if r.Offset < w.next {
			continue // applied before the state was written
		}
		ev := &w.ev
		var err error
		if !r.Attrs.IsControl() {
			err = d.dec.Decode(w.ctx, format.Record{Key: r.Key, Value: r.Value, Headers: r.Headers}, ev)
			if errors.Is(err, format.ErrRegistryUnavailable) {
				// Not the record's fault: the partition stops before it,
				// and reads it again once the registry answers.
				w.waitRegistry(r, err)
				break
			}
		}
		w.next, w.leaderEpoch = r.Offset+1, r.LeaderEpoch
		w.txn.advanced()
		if r.Attrs.IsControl() {
			continue
		}
		if err != nil {
			var de *schemas.DecodeError
			reason := "undecodable"
			if errors.As(err, &de) {
				reason = de.Reason
			}
			if reason == schemas.ReasonKeyMismatch {
				keys.add(schemas.KeyNotProfile, r.Offset)
			}
			d.m.events.WithLabelValues("unknown", "dead_lettered").Inc()
			w.txn.deadLetter(r, reason)
			continue
		}
		keys.add(ev.Key, r.Offset)
		var aud uint32
		if ev.Kind == schemas.KindMembership {
			a := d.auds.intern(ev.Audience, ev.AudienceName, ev.AdAccount)
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
		if aud != 0 && !w.fits(ev.Profile, aud) {
			applied[ev.Kind]--
			d.m.events.WithLabelValues(ev.Kind.String(), "dead_lettered").Inc()
			w.txn.deadLetter(r, ReasonStateTooLarge)
			continue
		}
		w.txn.at(ev.Timestamp, r.Offset >= w.vouchFrom)
		w.state.apply(ev, aud, w.emit)
	}
	for k := range applied {
		if applied[k] > 0 {
			d.m.events.WithLabelValues(schemas.Kind(k).String(), "applied").Add(float64(applied[k]))
		}
		if filtered[k] > 0 {
			d.m.events.WithLabelValues(schemas.Kind(k).String(), "filtered").Add(float64(filtered[k]))
		}
	}
	if d.misKeyed.add(w.key.partition, keys) {
		d.log.Warn("input records not keyed by their profile id: a profile's events must all reach one partition (key each record by its profile id, with any partitioner used consistently)",
			"topic", w.key.topic, "partition", w.key.partition, "offset", keys.last,
			"missing_key", keys.missing, "key_not_profile", keys.notProfile)
	}
	w.txn.settle()
}

// fits reports whether profile id's changelog record stays within
// Config.MaxRecordBytes once it is in aud, whatever identifiers it gains:
// sized before it is written, so that a transaction never holds a record
// that cannot be written.
func (w *worker) fits(id string, aud uint32) bool {
	if w.d.cfg.ChangelogTopic == "" {
		return true
	}
	p := w.state.grows(id, aud)
	if p == nil {
		return true
	}
	maxIDs := w.d.cfg.MaxIdentifiersPerType * len(ident.Types)
	key := len(changelogKey(w.key.topic, "")) + profileKeyLen
	return key+w.d.codec.bound(p, aud, maxIDs) <= w.d.cfg.maxRecordBytes()
}

// endTxn commits the open transaction, with the state its records left and
// the position; the epoch it seals then waits for the list stage.
func (w *worker) endTxn(ctx context.Context) {
	if !w.txn.inProgress() {
		return
	}
	n, marks, err := w.txn.commit(ctx, w.state, w.next, w.leaderEpoch)
	if err != nil {
		w.fail(err)
		return
	}
	w.txnFailing.Started()
	if w.next >= 0 {
		w.epochs.push(commit.Epoch{Next: w.next, LeaderEpoch: w.leaderEpoch, Changes: n, Marks: marks})
	}
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
	w.txnFailing.Fail(w.d.now())
	w.d.log.Warn("transaction failed; starting the partition again from its last committed state",
		"topic", w.key.topic, "partition", w.key.partition, "fenced", fenced(err), "err", err)
	w.txn.abort(w.ctx)
	w.txn.reset()
	w.release() // the restart reads the held record again
	w.accepting.Store(false)
	w.txn.closeProducer()
	w.rewoundCh = make(chan struct{})
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
		w.d.log.Warn("this member no longer owns the partition; it waits to be told", "topic", w.key.topic, "partition", w.key.partition)
	}
}

// removeLowerIDFA writes, in a transaction of their own, the removals of
// the IDFAs the restore dropped (see identifierRules), with the profiles
// rewritten without them.
func (w *worker) removeLowerIDFA() {
	if len(w.lowerIDFA) == 0 {
		return
	}
	if err := w.txn.begin(); err != nil {
		w.fail(err)
		return
	}
	w.txn.at(0, false)
	for _, c := range w.lowerIDFA {
		w.txn.collect(c)
	}
	w.lowerIDFA = nil
	w.txn.settle()
}

// countMember keeps each audience's count of members held here (typ 0)
// and of its lists' records they hold (typ the list's type).
func (as *audiences) countMember(aud uint32, typ ident.Type, delta int) {
	a := as.get(aud)
	switch {
	case a == nil:
	case typ == 0:
		a.members.Add(int64(delta))
	case typ.Valid():
		a.records[typ].Add(int64(delta))
	}
}
