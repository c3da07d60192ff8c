// Package rekey is pinsync's re-key stage (kafka.rekey): a member of the
// group "<kafka.group>.rekey" on the input topic that writes every record
// unchanged (value, headers, timestamp) to the re-keyed topic, keyed by the
// profile id of its payload and partitioned by murmur2 of it (the default
// of franz-go and of the Java client), as Kafka Streams writes a
// repartition topic after a key change. The profile stage then consumes
// the re-keyed topic, where each profile's events are on one partition
// whatever key and partitioner the producer used.
//
// Each poll's records go out in one transaction that also commits their
// input offsets (kgo.GroupTransactSession): a member killed mid-way aborts
// both, and whoever reads the partition next writes the records again from
// the last committed offset; a record reaches the re-keyed topic exactly
// once. The re-keyed topic keeps every record until the profile stage's
// group has committed past it (no time or size retention); the stage
// deletes what the group has committed past (DeleteRecords).
//
// A record whose payload names no profile id the decoder accepts is
// written with its key, to the partition of the same number as its source:
// the profile stage decodes it as it would have from the input (and
// dead-letters it, or takes the key as its profile id). A record whose
// schema the schema registry cannot tell now is not written: the
// transaction aborts and the stage reads the partition again after a wait.
package rekey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/membership"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
)

// Config is the re-key stage's configuration; the engine fills it in.
type Config struct {
	// Input is the topic read and Output the re-keyed topic, of the same
	// partition count (Partitions).
	Input, Output string
	Partitions    int
	// Group is the stage's consumer group on the input; ProfilesGroup the
	// profile stage's on the output, whose commits bound what the stage
	// deletes from the output.
	Group, ProfilesGroup string
	// TransactionalID is the stage's producer's: stable for a static
	// member (its restart fences and aborts what it left open), unique
	// otherwise.
	TransactionalID    string
	TransactionTimeout time.Duration
	// MaxPollRecords bounds the records of one transaction. Default 10000.
	MaxPollRecords int
	// PurgeInterval is how often the output is trimmed to the profile
	// stage's commits. Default 30s; negative never.
	PurgeInterval time.Duration
	// Decoder and Format are the profile stage's: the profile id is the
	// one the profile stage would read.
	Decoder schemas.DecoderConfig
	Format  format.Config
}

// Defaults of Config.
const (
	DefaultMaxPollRecords = 10_000
	DefaultPurgeInterval  = 30 * time.Second
)

func (c Config) withDefaults() Config {
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = DefaultMaxPollRecords
	}
	if c.PurgeInterval == 0 {
		c.PurgeInterval = DefaultPurgeInterval
	}
	return c
}

// Validate reports what is missing from c.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Input == "" || c.Output == "" || c.Input == c.Output {
		errs = append(errs, fmt.Errorf("rekey: input %q and output %q must be two topics", c.Input, c.Output))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("rekey: %d partitions", c.Partitions))
	}
	if c.Group == "" || c.ProfilesGroup == "" || c.TransactionalID == "" {
		errs = append(errs, errors.New("rekey: the groups and the transactional id are required"))
	}
	if c.TransactionTimeout <= 0 {
		errs = append(errs, errors.New("rekey: the transaction timeout must be positive"))
	}
	if c.MaxPollRecords < 1 {
		errs = append(errs, fmt.Errorf("rekey: max poll records %d", c.MaxPollRecords))
	}
	return errors.Join(errs...)
}

// Deps are the stage's collaborators.
type Deps struct {
	// Kafka holds the connection and group options (see consumer.Deps).
	Kafka          []kgo.Opt
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	SchemaRegistry *format.Registry
	// Leave, when set, is asked as the stage closes: true makes a static
	// member leave its group by its instance id (it stops for good), as
	// the other stages' members do (package member).
	Leave func() bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// TransactionalID returns the re-key stage's transactional id for a
// member of group: by its instance id when static, else unique to this
// process.
func TransactionalID(group, instanceID string) string {
	if instanceID != "" {
		return group + ".rekey." + instanceID
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return group + ".rekey.process-" + hex.EncodeToString(b[:])
}

// Stage is one member of the re-key group. Create it with New, start it
// with Start and stop it with Close.
type Stage struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	dec  *format.Decoder
	deps Deps
	// part places a re-keyed record by its key as franz-go's and the Java
	// client's default partitioners do (murmur2); used by run's goroutine
	// only.
	part kgo.TopicPartitioner

	// tracker follows the member's standing in its group (readiness,
	// /status).
	tracker *membership.Tracker

	sess   *kgo.GroupTransactSession
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	waiting error // the schema registry's, while the stage waits for it
}

// New validates cfg and builds the stage. It connects to nothing.
func New(cfg Config, deps Deps) (*Stage, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	events, err := schemas.NewDecoder(cfg.Decoder)
	if err != nil {
		return nil, err
	}
	dec, err := format.NewDecoder(cfg.Format, deps.SchemaRegistry, events)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &Stage{cfg: cfg, log: log.With("stage", "rekey"), m: m, dec: dec, deps: deps, tracker: membership.New(cfg.Group, now),
		part: kgo.StickyKeyPartitioner(nil).ForTopic(cfg.Output)}, nil
}

// Start joins the group and starts re-keying in the background.
func (s *Stage) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := s.cfg
	opts := append(append([]kgo.Opt{}, s.deps.Kafka...),
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(c.Input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers count as records, so that the group's commit reaches the
		// end of a transactional input.
		kgo.KeepControlRecords(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.TransactionalID(c.TransactionalID),
		kgo.TransactionTimeout(c.TransactionTimeout),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DefaultProduceTopic(c.Output),
		kgo.WithHooks(s.tracker),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { s.tracker.Assigned() }),
		kgo.OnPartitionsLost(func(context.Context, *kgo.Client, map[string][]int32) { s.tracker.Lost() }),
		// No delivery timeout: franz-go measures it from a record's
		// timestamp, which is its input record's (a backlog's is old);
		// the transaction's context bounds the flush.
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("rekey: kafka client: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.sess, s.cancel, s.done = sess, cancel, make(chan struct{})
	go s.run(rctx)
	return nil
}

// Close stops the stage: the transaction in flight ends (or aborts, when
// ctx ends first) and the member leaves its group. A static member keeps
// its partitions for its instance id, as the other stages' do, unless
// Deps.Leave says it stops for good: then it leaves by its instance id.
func (s *Stage) Close(ctx context.Context) {
	if s.sess == nil {
		return
	}
	s.cancel()
	select {
	case <-s.done:
	case <-ctx.Done():
	}
	instance, _ := s.sess.Client().OptValue(kgo.InstanceID).(string)
	s.tracker.Left()
	s.sess.Close()
	if instance != "" && s.deps.Leave != nil && s.deps.Leave() {
		s.leaveGroup(ctx, instance)
	}
}

// leaveGroup removes the static member instance from the group, with a
// client of its own (the session's is closed).
func (s *Stage) leaveGroup(ctx context.Context, instance string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(s.deps.Kafka...)
	if err == nil {
		defer cl.Close()
		var resps kadm.LeaveGroupResponses
		resps, err = kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(s.cfg.Group).InstanceIDs(instance).Reason("pinsync stops for good"))
		for _, r := range resps {
			if err == nil && r.Err != nil && !errors.Is(r.Err, kerr.UnknownMemberID) {
				err = r.Err
			}
		}
	}
	if err != nil {
		s.log.Warn("leaving the group for good failed; its partitions wait for the session timeout", "group", s.cfg.Group, "instance_id", instance, "err", err)
		return
	}
	s.log.Info("left the group for good", "group", s.cfg.Group, "instance_id", instance)
}

// Membership is the member's standing in its group.
func (s *Stage) Membership() membership.Status { return s.tracker.Status() }

// RegistryUnavailable reports, while the stage waits for the schema
// registry, why.
func (s *Stage) RegistryUnavailable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

func (s *Stage) setWaiting(err error) {
	s.mu.Lock()
	s.waiting = err
	s.mu.Unlock()
}

func (s *Stage) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer close(s.done)
	defer wg.Wait()
	if s.cfg.PurgeInterval > 0 {
		wg.Go(func() {
			t := time.NewTicker(s.cfg.PurgeInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s.purge(ctx)
				}
			}
		})
	}
	failures := 0
	for ctx.Err() == nil {
		fs := s.sess.PollRecords(ctx, s.cfg.MaxPollRecords)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			s.log.Warn("fetching the input failed", "topic", t, "partition", p, "err", err)
		})
		if fs.NumRecords() == 0 {
			continue
		}
		committed, err := s.transact(ctx, fs)
		switch {
		case ctx.Err() != nil:
			return
		case committed:
			failures = 0
			s.setWaiting(nil)
			s.m.transactions.WithLabelValues("committed").Inc()
			continue
		}
		s.m.transactions.WithLabelValues("aborted").Inc()
		failures++
		if errors.Is(err, format.ErrRegistryUnavailable) {
			s.setWaiting(err)
			s.m.registryErrors.Inc()
		}
		if err != nil {
			s.log.Warn("re-keying a batch failed; its input is read again from the last commit", "attempt", failures, "err", err)
		} else {
			s.log.Info("re-keying a batch aborted (the group rebalanced); its input is read again from the last commit", "records", fs.NumRecords())
		}
		// An abort without an error is a rebalance: read again at once.
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(failures)*500*time.Millisecond, 10*time.Second)):
			}
		}
	}
}

// transact writes one poll's records to the output and commits their
// input offsets, in one transaction. It reports whether it committed; an
// abort rewinds the session to the last committed offsets.
func (s *Stage) transact(ctx context.Context, fs kgo.Fetches) (bool, error) {
	// A transaction under way ends even when the stage is closing (Close
	// bounds the wait): within the transaction timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.TransactionTimeout)
	defer cancel()
	if err := s.sess.Begin(); err != nil {
		return false, fmt.Errorf("beginning a transaction: %w", err)
	}
	var (
		mu      sync.Mutex
		prodErr error
		ev      schemas.Event
		failed  error
		routed  [2]int
	)
	fs.EachRecord(func(r *kgo.Record) {
		if failed != nil || r.Attrs.IsControl() {
			return
		}
		out, byProfile, err := s.rekey(ctx, r, &ev)
		if err != nil {
			failed = err
			return
		}
		if byProfile {
			routed[0]++
		} else {
			routed[1]++
		}
		s.sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				prodErr = cmpErr(prodErr, err)
				mu.Unlock()
			}
		})
	})
	// End commits the offsets even when a record failed: every record
	// must be written first, or the transaction aborts.
	flushErr := s.sess.Client().Flush(ctx)
	mu.Lock()
	failed = cmpErr(cmpErr(failed, flushErr), prodErr)
	mu.Unlock()
	try := kgo.TryCommit
	if failed != nil {
		try = kgo.TryAbort
	}
	committed, err := s.sess.End(ctx, try)
	mu.Lock()
	defer mu.Unlock()
	if committed {
		s.m.records.WithLabelValues("profile").Add(float64(routed[0]))
		s.m.records.WithLabelValues("source").Add(float64(routed[1]))
	}
	return committed, cmpErr(cmpErr(failed, err), prodErr)
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// rekey returns the output record of r and whether it is keyed by its
// payload's profile id. The payload's own id comes first (decoded without
// the key, which may be anything); a payload that names none is decoded
// with the key, as the profile stage would; a record neither decodes goes
// to its source's partition number with its key.
func (s *Stage) rekey(ctx context.Context, r *kgo.Record, ev *schemas.Event) (*kgo.Record, bool, error) {
	out := &kgo.Record{Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp, Partition: r.Partition}
	err := s.dec.Decode(ctx, format.Record{Value: r.Value, Headers: r.Headers}, ev)
	if err != nil && len(r.Key) > 0 && !errors.Is(err, format.ErrRegistryUnavailable) {
		err = s.dec.Decode(ctx, format.Record{Key: r.Key, Value: r.Value, Headers: r.Headers}, ev)
	}
	switch {
	case errors.Is(err, format.ErrRegistryUnavailable):
		return nil, false, err
	case err != nil || ev.Profile == "":
		return out, false, nil
	}
	out.Key = []byte(ev.Profile)
	out.Partition = int32(s.part.Partition(out, s.cfg.Partitions))
	return out, true, nil
}

// purge deletes the output's records the profile stage's group has
// committed past.
func (s *Stage) purge(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(s.sess.Client())
	resp, err := adm.FetchOffsets(pctx, s.cfg.ProfilesGroup)
	if err == nil {
		err = resp.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return // nothing committed yet
	}
	offs := kadm.Offsets{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == s.cfg.Output && o.Err == nil && o.At > 0 {
			offs.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.At, LeaderEpoch: -1})
		}
	})
	if err == nil && len(offs) > 0 {
		var dr kadm.DeleteRecordsResponses
		if dr, err = adm.DeleteRecords(pctx, offs); err == nil {
			err = dr.Error()
		}
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("trimming the re-keyed topic failed; it is tried again", "topic", s.cfg.Output, "err", err)
	}
}

type metrics struct {
	records        *prometheus.CounterVec
	transactions   *prometheus.CounterVec
	registryErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_rekeyed_records_total", Help: "Input records the re-key stage wrote to the re-keyed topic, by key: profile (keyed and partitioned by the profile id of their payload), source (no profile id decoded: their key and their source's partition number).",
		}, []string{"key"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_rekey_transactions_total", Help: "Transactions of the re-key stage (a poll's records and their input offsets), by outcome (committed, aborted).",
		}, []string{"outcome"}),
		registryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinsync_rekey_schema_registry_errors_total", Help: "Transactions of the re-key stage aborted because the schema registry could not tell a record's schema; the stage reads them again after a wait.",
		}),
	}
	for _, l := range []string{"profile", "source"} {
		m.records.WithLabelValues(l)
	}
	m.transactions.WithLabelValues("committed")
	m.transactions.WithLabelValues("aborted")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.records, m.transactions, m.registryErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
