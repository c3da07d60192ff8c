package profiles

import (
	"context"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/schemas/ident"
)

// txn is one input partition's transactional producer and its open
// transaction: the changes gathered by list, the dead letters, and at its
// end the changelog records of the state they leave and the partition's
// position, committed together. It also remembers where the partition's
// changes landed in the changes topic (marks). Only the partition's worker
// uses it.
type txn struct {
	d   *workerDeps
	key partKey
	// ctx is the worker's: it ends when a stop's deadline passes.
	ctx  context.Context
	part *changes.Partitioner
	prod *kgo.Client

	open     bool
	changes  int           // collected, written or not
	batch    int           // collected by the batch being applied
	adds     int           // written, for the changes metric
	removes  int           // written, for the changes metric
	recs     []*kgo.Record // its change records, whose offsets become marks
	posDirty bool
	errMu    sync.Mutex
	prodErr  error
	marks    []int64 // per changes partition: offset after our last change there

	// slots gather the transaction's changes by list; touched are the
	// slots holding some (an index may repeat).
	slots   []*slot
	touched []int
	// ts and vouch are the event time and the vouching of the changes
	// collected now.
	ts    int64
	vouch bool

	// legacy are changelog keys of a version that keyed profiles by plain
	// id, restored under their digest: the next transaction deletes them.
	legacy []string
	// described are the audiences whose record (name, override) the
	// partition's changelog holds: restored, or written by a transaction
	// of this partition.
	described map[uint32]bool
}

// slot gathers one transaction's changes to one list, written as one
// record at its end (or whenever it holds changes.MaxChanges).
type slot struct {
	aud       uint32
	key       []byte
	partition int32
	cs        []changes.Change
}

func newTxn(d *workerDeps, key partKey, ctx context.Context) *txn {
	t := &txn{d: d, key: key, ctx: ctx, part: changes.NewPartitioner(d.cfg.ChangesPartitions),
		marks: make([]int64, d.cfg.ChangesPartitions)}
	for i := range t.marks {
		t.marks[i] = -1
	}
	return t
}

// connect makes the partition's transactional producer, once, and
// initialises its transactional id, which aborts an earlier owner's open
// transaction and fences it: from there on only this member writes the
// partition's changes and state.
func (t *txn) connect(ctx context.Context) error {
	cfg := t.d.cfg
	if t.prod == nil {
		prod, err := kgo.NewClient(append(append([]kgo.Opt{}, t.d.kopts...),
			kgo.TransactionalID(cfg.Group+".profiles."+t.key.topic+"."+strconv.Itoa(int(t.key.partition))),
			kgo.TransactionTimeout(cfg.TransactionTimeout),
			// A record not written within the transaction's timeout fails
			// (the broker would abort its transaction anyway): a broker
			// that cannot take it stops commits instead of hanging them.
			kgo.RecordDeliveryTimeout(cfg.TransactionTimeout),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			// Digests do not compress.
			kgo.ProducerBatchCompression(kgo.NoCompression()),
			// A batch the topics take (their max.message.bytes bounds a
			// batch, not a record): records are sized within it.
			kgo.ProducerBatchMaxBytes(int32(cfg.maxRecordBytes()+RecordOverhead)),
		)...)
		if err != nil {
			return err
		}
		t.prod = prod
	}
	if _, _, err := t.prod.ProducerID(ctx); err != nil {
		t.closeProducer()
		return err
	}
	return nil
}

// closeProducer releases the producer; connect makes a new one.
func (t *txn) closeProducer() {
	if t.prod != nil {
		t.prod.Close()
		t.prod = nil
	}
}

// inProgress reports whether a transaction is open.
func (t *txn) inProgress() bool { return t.open }

// pending is the changes the open transaction collected, written or not.
func (t *txn) pending() int { return t.changes }

// begin opens a transaction unless one is open.
func (t *txn) begin() error {
	if t.open {
		return nil
	}
	if err := t.prod.BeginTransaction(); err != nil {
		return err
	}
	t.open = true
	return nil
}

// at sets the event time and vouching of the changes collected next.
func (t *txn) at(ts int64, vouch bool) { t.ts, t.vouch = ts, vouch }

// advanced records that the partition's position moved: the transaction
// writes it.
func (t *txn) advanced() { t.posDirty = true }

// restored takes what a restore found for the changelog: the legacy keys
// to delete and the audiences it describes already.
func (t *txn) restored(legacy []string, described []uint32) {
	t.legacy = legacy
	t.described = make(map[uint32]bool, len(described))
	for _, a := range described {
		t.described[a] = true
	}
}

// collect takes one change of the record being applied.
func (t *txn) collect(c change) {
	i := int(c.aud)*(ident.NumTypes+1) + int(c.typ)
	if i >= len(t.slots) {
		t.slots = append(t.slots, make([]*slot, i+1-len(t.slots))...)
	}
	sl := t.slots[i]
	if sl == nil {
		sl = &slot{aud: c.aud}
		sl.key = changes.List{Audience: t.d.auds.key(c.aud), Type: c.typ}.AppendKey(nil)
		sl.partition = t.part.Partition(sl.key)
		t.slots[i] = sl
	}
	if len(sl.cs) == 0 {
		t.touched = append(t.touched, i)
	}
	sl.cs = append(sl.cs, changes.Change{Hash: c.hash, Op: c.op, Vouched: c.vouched && t.vouch, TS: t.ts})
	t.batch++
	if len(sl.cs) == changes.MaxChanges {
		t.writeSlot(sl)
	}
}

// settle counts the changes the batch collected as the transaction's,
// and as pending from now: fetching pauses on them before they are
// written.
func (t *txn) settle() {
	if n := t.batch; n > 0 {
		t.changes += n
		t.batch = 0
		t.d.pending.add(n)
	}
}

// writeChanges produces the transaction's changes still gathered, one
// record per list, into the open transaction: fewer, fuller records than
// one per batch, which the transaction's commit makes visible at the same
// moment anyway.
func (t *txn) writeChanges() {
	for _, i := range t.touched {
		sl := t.slots[i]
		if len(sl.cs) > 0 {
			t.writeSlot(sl)
		}
		t.describe(sl.aud)
	}
	t.touched = t.touched[:0]
	if t.adds > 0 {
		t.d.m.changes.WithLabelValues("add").Add(float64(t.adds))
	}
	if t.removes > 0 {
		t.d.m.changes.WithLabelValues("remove").Add(float64(t.removes))
	}
	t.adds, t.removes = 0, 0
}

// describe writes, once per partition, what the changelog keeps of an
// audience whose lists the partition's changes touch: a new owner then
// resolves its ad account as the events did.
func (t *txn) describe(aud uint32) {
	cfg := t.d.cfg
	if cfg.ChangelogTopic == "" || t.described[aud] {
		return
	}
	key, name, override, ok := t.d.auds.meta(aud)
	if !ok {
		return
	}
	if t.described == nil {
		t.described = make(map[uint32]bool)
	}
	t.produce(&kgo.Record{Topic: cfg.ChangelogTopic, Partition: t.key.partition,
		Key: []byte(audienceKey(t.key.topic, key)), Value: audienceValue(name, override)})
	t.described[aud] = true
}

// writeSlot produces the changes sl holds (at most changes.MaxChanges) as
// one record.
func (t *txn) writeSlot(sl *slot) {
	h := t.d.auds.header(sl.aud)
	for _, c := range sl.cs {
		if c.Op == changes.Add {
			t.adds++
		} else {
			t.removes++
		}
	}
	v := changes.AppendValue(make([]byte, 0, 32+len(h.AdAccount)+len(h.Name)+len(sl.cs)*(34+4)), h, sl.cs)
	rec := &kgo.Record{Topic: t.d.cfg.ChangesTopic, Partition: sl.partition, Key: sl.key, Value: v}
	t.produce(rec)
	t.recs = append(t.recs, rec)
	sl.cs = sl.cs[:0]
}

func (t *txn) produce(r *kgo.Record) {
	t.prod.Produce(t.ctx, r, t.promise)
}

func (t *txn) promise(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	t.errMu.Lock()
	defer t.errMu.Unlock()
	if t.prodErr == nil {
		t.prodErr = err
	}
}

func (t *txn) takeErr() error {
	t.errMu.Lock()
	defer t.errMu.Unlock()
	err := t.prodErr
	t.prodErr = nil
	return err
}

// deadLetter writes a record that cannot be applied to the dead-letter
// topic, in the open transaction.
func (t *txn) deadLetter(r *kgo.Record, reason string) {
	key, value := r.Key, r.Value
	headers := make([]kgo.RecordHeader, 0, 6)
	if size := len(key) + len(value); size > t.d.cfg.deadLetterBytes() {
		// The producer (and a broker at its defaults) refuses a record
		// of a megabyte: the dead letter is the record's head, so that
		// the partition goes on committing.
		headers = append(headers,
			kgo.RecordHeader{Key: "pinsync.decode_reason", Value: []byte(reason)},
			kgo.RecordHeader{Key: "pinsync.original_bytes", Value: []byte(strconv.Itoa(size))})
		reason = "too_large"
		head := min(deadLetterHeadBytes, t.d.cfg.deadLetterBytes()/2)
		key, value = key[:min(len(key), head)], value[:min(len(value), head)]
	}
	headers = append(headers,
		kgo.RecordHeader{Key: "pinsync.reason", Value: []byte(reason)},
		kgo.RecordHeader{Key: "pinsync.source.topic", Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: "pinsync.source.partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: "pinsync.source.offset", Value: []byte(strconv.FormatInt(r.Offset, 10))})
	t.produce(&kgo.Record{
		Topic:     t.d.cfg.DLQTopic,
		Partition: r.Partition % t.d.cfg.DLQPartitions,
		Key:       key,
		Value:     value,
		Headers:   headers,
	})
	t.d.deadLetters.WithLabelValues(reason).Inc()
}

// A dead letter carries the record as it came up to maxDeadLetterBytes of
// key and value (below the producer's and the broker's default limits of
// about 1 MB for a record with its headers), or up to what
// Config.MaxRecordBytes leaves beside the headers when that is less; a
// larger one carries its first deadLetterHeadBytes of key and of value
// (half that room at most), with the reason "too_large".
const (
	maxDeadLetterBytes  = 900_000
	deadLetterHeadBytes = 64 << 10
	// deadLetterHeaders is room for a dead letter's headers.
	deadLetterHeaders = 1 << 10
)

// DefaultMaxRecordBytes is the default of Config.MaxRecordBytes: the
// producer's default limit of a batch, less its overhead.
const DefaultMaxRecordBytes = 1_000_000 - RecordOverhead

// RecordOverhead is what a record costs a batch besides its key and value
// (the batch header, the record's lengths, varints and attributes).
const RecordOverhead = 128

// maxRecordBytes is Config.MaxRecordBytes with its default.
func (c Config) maxRecordBytes() int {
	if c.MaxRecordBytes > 0 {
		return c.MaxRecordBytes
	}
	return DefaultMaxRecordBytes
}

// deadLetterBytes is how large a dead letter's key and value may be.
func (c Config) deadLetterBytes() int {
	return min(maxDeadLetterBytes, c.maxRecordBytes()-deadLetterHeaders)
}

// ReasonStateTooLarge is the dead-letter reason of an event that would
// take its profile's changelog record past Config.MaxRecordBytes (a
// profile in more audiences than a record can hold): the event is not
// applied.
const ReasonStateTooLarge = "state_too_large"

// commit writes the state the transaction's records left (state's dirty
// profiles) and the position next, and commits the transaction, within
// the transaction's timeout. It returns the changes the transaction wrote
// and where the partition's changes stand in the changes topic (a copy);
// on an error the caller abandons the transaction (see reset).
func (t *txn) commit(ctx context.Context, state *profiles, next int64, leaderEpoch int32) (int, []int64, error) {
	cfg := t.d.cfg
	t.writeChanges()
	if cfg.ChangelogTopic != "" {
		for _, k := range t.legacy {
			t.produce(&kgo.Record{Topic: cfg.ChangelogTopic, Partition: t.key.partition, Key: []byte(k)})
		}
		state.takeDirty(func(key string, p *profile) {
			r := &kgo.Record{Topic: cfg.ChangelogTopic, Partition: t.key.partition, Key: []byte(changelogKey(t.key.topic, key))}
			if p != nil {
				r.Value = t.d.codec.encode(p)
			}
			t.produce(r)
		})
		if t.posDirty {
			t.produce(&kgo.Record{Topic: cfg.ChangelogTopic, Partition: t.key.partition,
				Key: []byte(positionKey(t.key.topic)), Value: positionValue(next, leaderEpoch)})
		}
	}
	// Writing and committing get the transaction's timeout, no more.
	ctx, cancel := context.WithTimeout(ctx, cfg.TransactionTimeout)
	defer cancel()
	err := t.prod.Flush(ctx)
	if err == nil {
		err = t.takeErr()
	}
	if err == nil {
		err = t.prod.EndTransaction(ctx, kgo.TryCommit)
	}
	if err != nil {
		return 0, nil, err
	}
	t.open = false
	t.legacy = nil
	for _, r := range t.recs {
		t.marks[r.Partition] = max(t.marks[r.Partition], r.Offset+1)
	}
	clear(t.recs)
	t.recs = t.recs[:0]
	t.d.m.transactions.WithLabelValues("committed").Inc()
	n := t.changes
	t.changes, t.posDirty = 0, false
	return n, append([]int64(nil), t.marks...), nil
}

// abort abandons the open transaction.
func (t *txn) abort(ctx context.Context) {
	if !t.open || t.prod == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, t.d.cfg.TransactionTimeout)
	defer cancel()
	_ = t.prod.AbortBufferedRecords(ctx)
	_ = t.prod.EndTransaction(ctx, kgo.TryAbort)
	t.open = false
	t.d.m.transactions.WithLabelValues("aborted").Inc()
}

// reset forgets the open transaction's bookkeeping; its changes no longer
// count as pending (they are written again after the rewind).
func (t *txn) reset() {
	t.d.pending.add(-t.changes)
	t.open = false
	clear(t.recs)
	t.recs = t.recs[:0]
	t.changes, t.batch, t.posDirty = 0, 0, false
	t.adds, t.removes = 0, 0
	t.takeErr()
	for _, i := range t.touched {
		t.slots[i].cs = t.slots[i].cs[:0]
	}
	t.touched = t.touched[:0]
}
