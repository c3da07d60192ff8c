// Package profiles is pinsync's profile stage: a member of the input
// topic's consumer group (keyed by profile) that decodes events (package
// schemas), folds them into per-profile state, and writes the list changes
// the state implies to the changes topic (package changes), keyed by list,
// for the list stage to upload.
//
// Each input partition has its own transactional producer (transactional
// id "<group>.profiles.<topic>.<partition>"): every commit interval one
// transaction carries the partition's changes, the state they leave (the
// compacted changelog) and the input position the state stands at. A new
// owner of the partition initialises the same transactional id first,
// which aborts an earlier owner's open transaction and fences it for good:
// a member paused past its session timeout that wakes after its partition
// moved can no longer write changes or state for it. The new owner then
// restores the state, committed records only, and reads on from its
// position; nothing is applied twice and nothing is lost.
//
// Input offsets are committed later, and separately: an input offset is
// committed once the list stage's group has committed past every change
// the records before it produced (package commit), so the input group's
// lag is the true end-to-end lag.
//
// It does not upload anything (package lists).
package profiles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/hold"
	"github.com/pinsync/pinsync/consumer/membership"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// fetchMaxWait is how long a fetch waits for data on idle partitions.
const fetchMaxWait = 500 * time.Millisecond

// Config configures the profile stage. Every field is required unless its
// comment says otherwise; package consumer fills them from its Config.
type Config struct {
	// Topic is the input topic.
	Topic string
	// Group is the input topic's consumer group.
	Group string
	// ChangesTopic is where list changes go, and ChangesPartitions its
	// partition count.
	ChangesTopic      string
	ChangesPartitions int
	// ListsGroup is the list stage's group: its commits of the changes
	// topic gate the input commits.
	ListsGroup string
	// ChangelogTopic holds the profile state, co-partitioned with the
	// input; empty means no durable state.
	ChangelogTopic string
	// DLQTopic receives records that cannot be decoded, and DLQPartitions
	// is its partition count.
	DLQTopic      string
	DLQPartitions int32
	// CommitInterval is how often each partition's transaction ends and
	// input offsets are committed.
	CommitInterval time.Duration
	// TransactionTimeout is the transaction timeout of each partition's
	// producer: an open transaction of a member that died is aborted by
	// the broker after it.
	TransactionTimeout time.Duration
	// RevokeTimeout bounds the end of a revoked partition's transaction.
	RevokeTimeout time.Duration
	// MaxPending caps the changes written to the changes topic that the
	// list stage has not committed past; fetching pauses at the cap.
	MaxPending int
	// MaxIdentifiersPerType bounds each profile's identifiers of one type.
	MaxIdentifiersPerType int
	// Allow and Deny select audiences by key glob; AdAccount,
	// AudienceAdAccounts and AllowAudienceSettings resolve each audience's
	// ad account (see consumer.Config).
	Allow, Deny           []string
	AdAccount             string
	AudienceAdAccounts    map[string]string
	AllowAudienceSettings bool
	// Decoder configures the event decoder.
	Decoder schemas.DecoderConfig
}

// Validate reports a missing or impossible field.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string) { errs = append(errs, fmt.Errorf("profiles: Config.%s is required", f)) }
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"Topic", c.Topic != ""}, {"Group", c.Group != ""}, {"ChangesTopic", c.ChangesTopic != ""},
		{"ChangesPartitions", c.ChangesPartitions > 0}, {"ListsGroup", c.ListsGroup != ""},
		{"DLQTopic", c.DLQTopic != ""}, {"DLQPartitions", c.DLQPartitions > 0},
		{"CommitInterval", c.CommitInterval > 0}, {"TransactionTimeout", c.TransactionTimeout > 0},
		{"RevokeTimeout", c.RevokeTimeout > 0}, {"MaxPending", c.MaxPending > 0},
		{"MaxIdentifiersPerType", c.MaxIdentifiersPerType > 0},
	} {
		if !f.ok {
			bad(f.name)
		}
	}
	if c.TransactionTimeout <= 2*c.CommitInterval {
		errs = append(errs, errors.New("profiles: Config.TransactionTimeout must exceed twice the CommitInterval"))
	}
	return errors.Join(errs...)
}

// Deps are the stage's collaborators.
type Deps struct {
	// Kafka holds the connection options; the stage adds its group and
	// its producers' transactional ids.
	Kafka  []kgo.Opt
	Logger *slog.Logger
	// Registerer receives the stage's own metrics; Commits, Assigned and
	// DeadLetters are series the caller shares between the stages.
	Registerer  prometheus.Registerer
	Commits     commit.Metrics
	Assigned    prometheus.Gauge
	DeadLetters *prometheus.CounterVec
	// Hold, when set, says why fetching must wait (Pinterest refused
	// the credentials: nothing read now could be uploaded); nil to go on.
	// It is asked before every poll, and every hold.Poll while it holds.
	Hold hold.Func
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// partKey names one partition of one topic.
type partKey struct {
	topic     string
	partition int32
}

// Stage is one member of the input topic's group. Create it with New,
// start it with Start, and stop it with Quiesce, Commit and Close, in that
// order; a Stage runs once.
type Stage struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	cm    commit.Metrics
	deps  Deps
	dec   *schemas.Decoder
	auds  *audiences
	codec codec
	kopts []kgo.Opt
	now   func() time.Time

	cl  *kgo.Client
	adm *kadm.Client
	// member follows this member's standing in its group.
	member *membership.Tracker

	mu      sync.Mutex
	workers map[partKey]*worker
	// quiesced is set by Quiesce: a partition assigned afterwards gets no
	// worker (nothing would fetch for it); its next owner reads it.
	quiesced bool
	// rewinds are the workers waiting for the poll loop to move their
	// partition's fetch position; pollCancel ends the poll in progress.
	rewinds    []*worker
	pollCancel context.CancelFunc

	// pending is the changes written by this member's partitions that the
	// list stage has not committed past; drained is closed and replaced
	// when it falls.
	pending   atomic.Int64
	paused    atomic.Bool
	drainedMu sync.Mutex
	drained   chan struct{}

	commitMu sync.Mutex
	// started is closed once Start has set cl: the group's callbacks,
	// which may run as soon as the client exists, wait for it.
	started  chan struct{}
	stopBG   context.CancelFunc
	bg       sync.WaitGroup
	pollDone chan struct{}
}

// New validates cfg and builds a stage.
func New(cfg Config, deps Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dec, err := schemas.NewDecoder(cfg.Decoder)
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
	deps.Commits = deps.Commits.OrDefaults()
	if deps.Assigned == nil {
		deps.Assigned = prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered_assigned"})
	}
	if deps.DeadLetters == nil {
		deps.DeadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unregistered_dead_letters"}, []string{"reason"})
	}
	auds, err := newAudiences(cfg.Allow, cfg.Deny, cfg.AdAccount, cfg.AudienceAdAccounts, cfg.AllowAudienceSettings)
	if err != nil {
		return nil, err
	}
	return &Stage{
		cfg: cfg, log: log.With("component", "profiles"), m: m, cm: deps.Commits, deps: deps, dec: dec,
		auds: auds, codec: codec{auds}, kopts: deps.Kafka, now: now,
		workers: make(map[partKey]*worker), drained: make(chan struct{}), pollDone: make(chan struct{}),
		started: make(chan struct{}), member: membership.New(cfg.Group, now),
	}, nil
}

// Start joins the group and starts consuming and committing in the
// background. ctx bounds only the start.
func (s *Stage) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	opts := append([]kgo.Opt{}, s.kopts...)
	opts = append(opts,
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.cfg.Topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Events of an aborted transaction never happened; markers count
		// as records, so that a partition's commit reaches its end.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		// A partition resumed after its start waits for the fetch in
		// flight to return; an idle one makes that fetch wait this long.
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		kgo.WithHooks(s.member),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("profiles: kafka client: %w", err)
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	close(s.started)
	bg, stop := context.WithCancel(context.Background())
	s.stopBG = stop
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.commitLoop(bg) }()
	go func() { defer s.bg.Done(); s.exportLoop(bg) }()
	go func() { defer close(s.pollDone); s.poll(bg) }()
	return nil
}

// Quiesce stops fetching and ends every partition's open transaction,
// within ctx: afterwards every change of every record read is in the
// changes topic, for the list stage to pass.
func (s *Stage) Quiesce(ctx context.Context) {
	s.mu.Lock()
	cancel := s.pollCancel
	s.mu.Unlock()
	s.stopBG()
	if cancel != nil {
		cancel()
	}
	<-s.pollDone
	s.mu.Lock()
	s.quiesced = true
	ws := make([]*worker, 0, len(s.workers))
	for _, w := range s.workers {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	for _, w := range ws {
		w.stop(ctx, true)
	}
}

// Commit commits the input offsets the list stage has passed, waiting for
// it until every sealed epoch is committed or ctx ends. It reports whether
// everything was committed.
func (s *Stage) Commit(ctx context.Context) bool {
	// A shutdown waits on this: look often (each look is one offset fetch
	// of the list group).
	t := time.NewTicker(min(s.cfg.CommitInterval, 20*time.Millisecond))
	defer t.Stop()
	for {
		if err := s.commit(ctx, nil); err != nil && ctx.Err() == nil {
			s.log.Warn("commit failed", "err", err)
		}
		if s.pending.Load() == 0 && s.allCommitted() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

func (s *Stage) allCommitted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.workers {
		if w.waiting() {
			return false
		}
	}
	return true
}

// Close leaves the group and closes every producer. Call it after
// Quiesce.
func (s *Stage) Close() {
	s.stopBG()
	s.bg.Wait()
	s.mu.Lock()
	ws := make([]*worker, 0, len(s.workers))
	for k, w := range s.workers {
		ws = append(ws, w)
		delete(s.workers, k)
	}
	s.mu.Unlock()
	s.member.Left()
	for _, w := range ws {
		w.close()
	}
	s.cl.Close()
}

// poll fetches records and hands each partition's batch to its worker,
// moving partitions' positions for workers that asked between polls, and
// pausing while MaxPending changes wait for the list stage.
func (s *Stage) poll(ctx context.Context) {
	for ctx.Err() == nil {
		s.serveRewinds()
		if !s.waitPending(ctx) || !hold.Wait(ctx, s.deps.Hold, &s.paused, s.log) {
			return
		}
		pctx, cancel := hold.PollContext(ctx, s.deps.Hold)
		s.mu.Lock()
		s.pollCancel = cancel
		woken := len(s.rewinds) > 0
		s.mu.Unlock()
		if woken {
			cancel()
		}
		fetches := s.cl.PollRecords(pctx, min(max(s.cfg.MaxPending/10, 100), 10_000))
		s.mu.Lock()
		s.pollCancel = nil
		s.mu.Unlock()
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			s.mu.Lock()
			w := s.workers[partKey{p.Topic, p.Partition}]
			s.mu.Unlock()
			if w == nil {
				return // revoked meanwhile: the next owner reads them
			}
			w.highWater.Store(p.HighWatermark)
			if !w.accepting.Load() {
				return // restarting: it reads them again after its rewind
			}
			select {
			case w.in <- batch{gen: w.gen.Load(), recs: p.Records}:
			case <-w.quit:
			case <-ctx.Done():
			}
		})
	}
}

// rewind asks the poll loop to move w's partition to next (none when
// negative) and resume fetching it; w accepts batches again afterwards.
func (s *Stage) rewind(w *worker, next int64) {
	w.rewindTo = next
	s.mu.Lock()
	s.rewinds = append(s.rewinds, w)
	cancel := s.pollCancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// serveRewinds moves the partitions of the workers that asked, from the
// poll goroutine, between polls: no fetch of the old position is handed
// out afterwards.
func (s *Stage) serveRewinds() {
	s.mu.Lock()
	rs := s.rewinds
	s.rewinds = nil
	s.mu.Unlock()
	for _, w := range rs {
		if w.rewindTo >= 0 {
			s.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{w.key.topic: {w.key.partition: {Epoch: -1, Offset: w.rewindTo}}})
		}
		w.gen.Add(1)
		w.accepting.Store(true)
		s.cl.ResumeFetchPartitions(map[string][]int32{w.key.topic: {w.key.partition}})
		close(w.rewound)
	}
}

// waitPending blocks while MaxPending changes wait for the list stage; it
// returns false when ctx ends.
func (s *Stage) waitPending(ctx context.Context) bool {
	paused := false
	defer func() {
		if paused {
			s.paused.Store(false)
		}
	}()
	for {
		s.drainedMu.Lock()
		ch := s.drained
		s.drainedMu.Unlock()
		if s.pending.Load() < int64(s.cfg.MaxPending) {
			return true
		}
		if !paused {
			paused = true
			s.paused.Store(true)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// addPending adjusts the pending count, waking the poll loop when it falls.
func (s *Stage) addPending(n int) {
	s.pending.Add(int64(n))
	s.m.pending.Set(float64(s.pending.Load()))
	if n < 0 {
		s.drainedMu.Lock()
		close(s.drained)
		s.drained = make(chan struct{})
		s.drainedMu.Unlock()
	}
}

// assigned starts a worker for each new partition, its fetching paused
// until it has restored the partition's state.
func (s *Stage) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	<-s.started
	cl.PauseFetchPartitions(assigned)
	s.member.Assigned()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quiesced {
		s.log.Info("partitions assigned while shutting down: left to the next owner", "partitions", fmtParts(assigned))
		return
	}
	for t, ps := range assigned {
		for _, p := range ps {
			k := partKey{t, p}
			if s.workers[k] != nil {
				continue
			}
			w := s.newWorker(k)
			s.workers[k] = w
			go w.run()
		}
	}
	s.deps.Assigned.Set(float64(len(s.workers)))
	s.log.Info("partitions assigned", "partitions", fmtParts(assigned))
}

// revoked ends the revoked partitions' transactions (their changes and
// state become durable for the next owner), commits what the list stage
// has passed, and closes their producers.
func (s *Stage) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	<-s.started
	ws := s.take(revoked)
	if len(ws) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RevokeTimeout)
	defer cancel()
	for _, w := range ws {
		w.stop(rctx, true)
	}
	if err := s.commit(rctx, ws); err != nil {
		s.log.Warn("commit on revoke failed", "err", err)
	}
	s.drop(ws)
	s.log.Info("partitions revoked", "partitions", fmtParts(revoked))
}

// lost abandons the lost partitions: their open transactions are aborted
// (the next owner's producer aborts them anyway) and nothing is committed.
func (s *Stage) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	<-s.started
	s.member.Lost()
	ws := s.take(lost)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RevokeTimeout)
	defer cancel()
	for _, w := range ws {
		w.stop(ctx, false)
	}
	s.drop(ws)
	s.log.Warn("partitions lost", "partitions", fmtParts(lost))
}

// take removes the workers of the given partitions from the stage.
func (s *Stage) take(which map[string][]int32) []*worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ws []*worker
	for t, ps := range which {
		for _, p := range ps {
			k := partKey{t, p}
			if w := s.workers[k]; w != nil {
				ws = append(ws, w)
				delete(s.workers, k)
			}
		}
	}
	s.deps.Assigned.Set(float64(len(s.workers)))
	return ws
}

// drop closes the workers and forgets their pending changes and series.
// It holds the commit lock: a commit running meanwhile would count the
// same epochs' changes off again.
func (s *Stage) drop(ws []*worker) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	for _, w := range ws {
		w.close()
		s.addPending(-w.queued() - w.txnChanges)
		pl := strconv.Itoa(int(w.key.partition))
		s.cm.Committed.DeleteLabelValues(w.key.topic, pl)
		s.cm.Lag.DeleteLabelValues(w.key.topic, pl)
	}
}

// commitLoop commits every commit interval.
func (s *Stage) commitLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.commit(ctx, nil); err != nil && ctx.Err() == nil {
			s.log.Warn("commit failed", "err", err)
		}
	}
}

// downstream returns the list stage's committed offset in each changes
// partition (-1: none).
func (s *Stage) downstream(ctx context.Context) ([]int64, error) {
	resp, err := s.adm.FetchOffsets(ctx, s.cfg.ListsGroup)
	if err != nil {
		return nil, err
	}
	out := make([]int64, s.cfg.ChangesPartitions)
	for i := range out {
		out[i] = -1
	}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == s.cfg.ChangesTopic && o.Err == nil && int(o.Partition) < len(out) {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// commit commits, for the given workers (every one when nil), the next
// offset of their newest epoch the list stage has passed.
func (s *Stage) commit(ctx context.Context, ws []*worker) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if ws == nil {
		s.mu.Lock()
		for _, w := range s.workers {
			ws = append(ws, w)
		}
		s.mu.Unlock()
	}
	waiting := false
	for _, w := range ws {
		waiting = waiting || w.waiting()
	}
	if !waiting {
		s.updateLag(ws)
		return nil
	}
	down, err := s.downstream(ctx)
	if err != nil {
		return fmt.Errorf("reading the list stage's offsets: %w", err)
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	var done []*worker
	var epochs []commit.Epoch
	for _, w := range ws {
		e, n, ok := w.passed(down)
		s.addPending(-n)
		if !ok || e.Next <= w.committed.Load() {
			continue
		}
		if offsets[w.key.topic] == nil {
			offsets[w.key.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[w.key.topic][w.key.partition] = kgo.EpochOffset{Epoch: e.LeaderEpoch, Offset: e.Next}
		done = append(done, w)
		epochs = append(epochs, e)
	}
	if len(offsets) == 0 {
		return nil
	}
	if err := commit.Offsets(ctx, s.cl, offsets); err != nil {
		for i, w := range done {
			w.retain(epochs[i])
		}
		return err
	}
	for i, w := range done {
		w.committed.Store(epochs[i].Next)
		s.cm.Committed.WithLabelValues(w.key.topic, strconv.Itoa(int(w.key.partition))).Set(float64(epochs[i].Next))
	}
	s.cm.LastCommit.Set(float64(s.now().UnixNano()) / 1e9)
	s.updateLag(ws)
	return nil
}

// owns checks with the group coordinator that this member still owns w's
// partition, by committing what the group last committed there (a
// partition the group never committed resumes at its start either way, so
// offset 0 moves nothing). It reports false only when the coordinator no
// longer counts this member (commit.Expired); any other failure is an
// error, for the caller to retry.
func (s *Stage) owns(ctx context.Context, w *worker) (bool, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	off := max(w.committed.Load(), 0)
	err := commit.Owns(ctx, s.cl, w.key.topic, w.key.partition, kgo.EpochOffset{Epoch: -1, Offset: off})
	switch {
	case err == nil:
		return true, nil
	case commit.Expired(err):
		s.log.Warn("this member no longer owns the partition", "topic", w.key.topic, "partition", w.key.partition, "err", err)
		return false, nil
	default:
		return false, fmt.Errorf("checking that this member still owns the partition: %w", err)
	}
}

func (s *Stage) updateLag(ws []*worker) {
	for _, w := range ws {
		hw := w.highWater.Load()
		if hw <= 0 {
			continue
		}
		c := max(w.committed.Load(), 0)
		s.cm.Lag.WithLabelValues(w.key.topic, strconv.Itoa(int(w.key.partition))).Set(float64(max(hw-c, 0)))
	}
}

// exportLoop publishes each audience's count of members held here, and of
// its lists' records they hold (kept in atomics on the hot path), once a
// commit interval.
func (s *Stage) exportLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, a := range s.auds.all() {
				if a.selected {
					s.m.localMembers.WithLabelValues(a.key).Set(float64(a.members.Load()))
					for _, t := range ident.Types {
						s.m.localRecords.WithLabelValues(a.key, t.String()).Set(float64(a.records[t].Load()))
					}
				}
			}
		}
	}
}

// fmtParts renders a partition map for logs: topic:[0 1 2].
func fmtParts(m map[string][]int32) string {
	var b []byte
	for t, ps := range m {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, t...)
		b = append(b, ':')
		b = append(b, fmt.Sprint(ps)...)
	}
	return string(b)
}
