// Package lists is pinsync's list stage: a member of the list stage's
// consumer group, which reads the changes topic (package changes), keyed by
// list, so that each Pinterest list has exactly one owner group-wide.
//
// Its rooms:
//
//   - Stage, here, is the member: it joins the group, starts a worker per
//     assigned partition, takes its share of the write budget, commits an
//     offset of the changes topic only after every upload covering the
//     changes before it succeeded (package commit), and answers the
//     ownership check.
//   - A worker reads its partition in offset order and puts the changes
//     into the windows (package window), sealing an epoch every commit
//     interval.
//   - The dispatcher sends the windows that are due, within the budget
//     and the flight limit, to the sink (package sink), and gives each
//     flight's outcome back to its window.
//
// The arrows run one way: lists → sink → window, lists → window. What the
// sink needs of the member is handed to it: which partitions it owns, what
// a list's window does while the list is parked or rebuilt, the backoff,
// the dead-letter topic, and the write guard. The guard is the one call
// against the flow: just before every Pinterest write the client asks the
// member, which checks with a commit to the group coordinator that it still
// owns the list's partition, so that a member paused past its session
// timeout that woke after its partitions moved writes nothing for them.
//
// Lock order: the stage's lock (its workers) is never held while calling
// the sink or the windows; neither the window set's lock nor any of the
// sink's is held while calling back into the stage.
//
// It does not decode events or keep profile state (package profiles), and
// it does not talk to Pinterest itself (package sink).
package lists

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/hold"
	"github.com/pinsync/pinsync/consumer/lists/sink"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/consumer/membership"
)

// fetchMaxWait is how long a fetch waits for data on idle partitions.
const fetchMaxWait = 500 * time.Millisecond

// Config configures the list stage. Every field is required unless its
// comment says otherwise; package consumer fills them from its Config.
type Config struct {
	// Topic is the changes topic and Partitions its partition count.
	Topic      string
	Partitions int
	// Group is the list stage's consumer group.
	Group string
	// DLQTopic receives the records Pinterest refused for good, and
	// DLQPartitions is its partition count.
	DLQTopic      string
	DLQPartitions int32
	// FlushInterval is the longest a change waits in a window.
	FlushInterval time.Duration
	// CommitInterval is how often epochs are sealed and committed.
	CommitInterval time.Duration
	// RevokeTimeout bounds the flush of revoked partitions.
	RevokeTimeout time.Duration
	// MaxRecords is the per-request maximum of records.
	MaxRecords int
	// MaxBuffered caps the records waiting in windows; fetching pauses at
	// the cap.
	MaxBuffered int
	// MaxBufferedBytes caps the memory the windows hold for their records
	// (their tables, and room for each record in a flight); reading pauses
	// at the cap. 0: no cap but MaxBuffered.
	MaxBufferedBytes int64
	// MaxFlights bounds concurrent uploads.
	MaxFlights int
	// ListNameTemplate names a Pinterest list (and its audience).
	ListNameTemplate string
	// AudiencePollInterval is how often each list's audience size and
	// status are read; negative disables.
	AudiencePollInterval time.Duration
	// ParkedRetry is how often a parked list's ad account is checked
	// again (the role may be back), and the longest wait between attempts
	// to rebuild a list.
	ParkedRetry time.Duration
}

// Validate reports a missing or impossible field.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string) { errs = append(errs, fmt.Errorf("lists: Config.%s is required", f)) }
	if c.Topic == "" {
		bad("Topic")
	}
	if c.Partitions < 1 {
		bad("Partitions")
	}
	if c.Group == "" {
		bad("Group")
	}
	if c.DLQTopic == "" {
		bad("DLQTopic")
	}
	if c.DLQPartitions < 1 {
		bad("DLQPartitions")
	}
	if c.FlushInterval <= 0 {
		bad("FlushInterval")
	}
	if c.CommitInterval <= 0 {
		bad("CommitInterval")
	}
	if c.RevokeTimeout <= 0 {
		bad("RevokeTimeout")
	}
	if c.MaxRecords < 1 {
		bad("MaxRecords")
	}
	if c.MaxBuffered < c.MaxRecords {
		errs = append(errs, errors.New("lists: Config.MaxBuffered must be at least MaxRecords"))
	}
	if c.MaxFlights < 1 {
		bad("MaxFlights")
	}
	if c.MaxBufferedBytes < 0 {
		errs = append(errs, errors.New("lists: Config.MaxBufferedBytes must not be negative"))
	}
	if c.ParkedRetry <= 0 {
		bad("ParkedRetry")
	}
	if err := sink.CheckListNameTemplate(c.ListNameTemplate); err != nil {
		errs = append(errs, fmt.Errorf("lists: Config.ListNameTemplate: %w", err))
	}
	return errors.Join(errs...)
}

// Budget is one category of the app's Pinterest budget as this member
// spends it. *pinterest.Budget implements it.
type Budget interface {
	// SetShare sets the fraction of the group's budget this member may
	// spend.
	SetShare(fraction float64)
	// Tokens is how many requests may be sent at now without waiting.
	Tokens(now time.Time) float64
}

// Pinterest is what the list stage needs from the Pinterest API client.
// *pinterest.Client implements it.
type Pinterest = sink.Pinterest

// Registry keeps each list's Pinterest ids across owners.
// *control.Registry implements it.
type Registry = sink.Registry

// Members reads lists' members from the profile state, to rebuild them.
// profiles.Members implements it.
type Members = sink.Members

// ListStatus describes one Pinterest list.
type ListStatus = sink.ListStatus

// DefaultListNameTemplate is the default Pinterest list name.
const DefaultListNameTemplate = sink.DefaultListNameTemplate

// CheckListNameTemplate reports what is wrong with a list name template:
// a syntax error, a field it does not know, or names that two lists would
// share.
func CheckListNameTemplate(s string) error { return sink.CheckListNameTemplate(s) }

// Deps are the stage's collaborators.
type Deps struct {
	// Kafka holds the connection options; the stage adds its group.
	Kafka []kgo.Opt
	// Pinterest uploads.
	Pinterest Pinterest
	// Writes is the ads_write budget the scheduler reads, and Reads the
	// ads_read one. The stage sets each one's share to the fraction of the
	// changes topic's partitions it owns. Nil means no budget.
	Writes, Reads Budget
	// Registry keeps list ids across owners; nil means lists are found by
	// name (and cannot be rebuilt).
	Registry Registry
	// Members reads a list's members from the profile state, to rebuild
	// it; nil means lists cannot be rebuilt (they stay parked).
	Members Members
	Logger  *slog.Logger
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

// finalCommitTimeout bounds the last commit of Close.
const finalCommitTimeout = 5 * time.Second

// ErrNotOwner is returned (wrapped) by a write this member refused to send
// because the group coordinator no longer counts it as the owner of the
// list's partition.
var ErrNotOwner = errors.New("lists: not the owner of the list's partition")

// Stage is one member of the list stage's group. Create it with New, start
// it with Start and stop it with Close; a Stage runs once.
type Stage struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	m      *metrics
	cm     commit.Metrics
	deps   Deps
	writes Budget
	reads  Budget
	kopts  []kgo.Opt

	tr   *commit.Tracker
	ws   *window.Set
	sink *sink.Sink
	disp *dispatcher

	cl *kgo.Client
	// member follows this member's standing in its group.
	member *membership.Tracker
	// cancelUploads ends the flights' context (see dispatcher.ctx).
	cancelUploads context.CancelFunc
	bg            sync.WaitGroup
	stopBG        context.CancelFunc
	stopPoll      context.CancelFunc
	pollDone      chan struct{}

	paused atomic.Bool
	// waitingRoom counts the workers waiting for room under the byte cap.
	waitingRoom atomic.Int32
	// closing is set once the stage shuts down (Drain, Close).
	closing atomic.Bool

	mu      sync.Mutex
	workers map[int32]*worker
	// leaving are the workers of partitions being revoked: this member
	// still owns them while it flushes their windows.
	leaving map[int32]*worker

	// commitMu serialises commits: the periodic ones and the ownership
	// checks, which commit what was last committed.
	commitMu sync.Mutex
	// started is closed once Start has set cl: the group's callbacks,
	// which may run as soon as the client exists, wait for it.
	started chan struct{}
}

// New validates cfg and builds a stage.
func New(cfg Config, deps Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pinterest == nil {
		return nil, errors.New("lists: Deps.Pinterest is required")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "lists")
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	m, err := newMetrics(deps.Registerer, cfg.FlushInterval)
	if err != nil {
		return nil, err
	}
	deps.Commits = deps.Commits.OrDefaults()
	if deps.Assigned == nil {
		deps.Assigned = prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered_assigned"})
	}
	if deps.DeadLetters == nil {
		deps.DeadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unregistered_dead_letters"}, []string{"reason"})
	}
	s := &Stage{
		cfg: cfg, log: log, now: now, m: m, cm: deps.Commits, deps: deps,
		writes: deps.Writes, reads: deps.Reads, kopts: deps.Kafka,
		tr: commit.NewTracker(), ws: window.New(cfg.MaxRecords, cfg.MaxBufferedBytes),
		workers: make(map[int32]*worker), leaving: make(map[int32]*worker), pollDone: make(chan struct{}),
		started: make(chan struct{}), member: membership.New(cfg.Group, now),
	}
	uploads, cancel := context.WithCancel(context.Background())
	s.cancelUploads = cancel
	s.disp = &dispatcher{
		ws: s.ws, tr: s.tr, writes: deps.Writes, interval: cfg.FlushInterval, maxFlights: cfg.MaxFlights,
		closing: &s.closing, ctx: uploads, m: m, log: log, now: now,
	}
	s.sink, err = sink.New(sink.Config{
		Partitions: cfg.Partitions, MaxRecords: cfg.MaxRecords, ListNameTemplate: cfg.ListNameTemplate,
		AudiencePollInterval: cfg.AudiencePollInterval, ParkedRetry: cfg.ParkedRetry,
	}, sink.Deps{
		Pinterest: deps.Pinterest, Registry: deps.Registry, Members: deps.Members,
		Owned: s.ownedPartitions, SetMode: s.disp.setMode, Backoff: backoff, DeadLetter: s.deadLetter, Guard: s.owns,
		Logger: log, Registerer: deps.Registerer, Now: now,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	s.disp.sink = s.sink
	s.setShare(0)
	return s, nil
}

// Start joins the group and starts consuming, scheduling, uploading and
// committing in the background. ctx bounds only the start.
func (s *Stage) Start(ctx context.Context) error {
	opts := append([]kgo.Opt{}, s.kopts...)
	opts = append(opts,
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.cfg.Topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers count as records: a partition's commit then
		// reaches its end, and the end a restored profile stage waits for.
		kgo.KeepControlRecords(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		// A partition resumed after its start waits for the fetch in
		// flight to return; an idle one makes that fetch wait this long.
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		kgo.WithHooks(s.member),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A dead letter the broker cannot take fails its flush (tried
		// again later) rather than hanging it.
		kgo.RecordDeliveryTimeout(deliveryTimeout),
	)
	if err := ctx.Err(); err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("lists: kafka client: %w", err)
	}
	s.cl = cl
	close(s.started)
	bg, stop := context.WithCancel(context.Background())
	s.stopBG = stop
	s.bg.Add(3)
	go func() { defer s.bg.Done(); s.sink.Run(bg) }()
	go func() { defer s.bg.Done(); s.disp.run(bg) }()
	go func() { defer s.bg.Done(); s.commitLoop(bg) }()
	pctx, stopPoll := context.WithCancel(context.Background())
	s.stopPoll = stopPoll
	go func() { defer close(s.pollDone); s.poll(pctx) }()
	return nil
}

// Drain reads every owned partition of the changes topic up to what is
// committed in it now (after the profile stage's last transactions), then
// flushes every window at once: one last flush per list, not one per batch
// arriving during the shutdown. Changes committed later are left to the
// next owner. It stops waiting when ctx ends and flushes what it has.
func (s *Stage) Drain(ctx context.Context) {
	defer s.hurry()
	s.mu.Lock()
	ws := maps.Clone(s.workers)
	s.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	adm := kadm.NewClient(s.cl)
	ends, err := adm.ListCommittedOffsets(ctx, s.cfg.Topic)
	if err != nil {
		s.log.Warn("shutdown: reading the changes topic's ends failed; flushing what was read", "err", err)
		return
	}
	// A partition of which nothing arrived here has nothing to read when
	// it holds nothing (its start is its end) or the group's committed
	// offset is at its end already.
	starts, err := adm.ListStartOffsets(ctx, s.cfg.Topic)
	if err != nil {
		s.log.Warn("shutdown: reading the changes topic's starts failed; flushing what was read", "err", err)
		return
	}
	committed, err := adm.FetchOffsets(ctx, s.cfg.Group)
	if err != nil {
		s.log.Warn("shutdown: reading the list group's offsets failed; flushing what was read", "err", err)
		return
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		behind := 0
		for p, w := range ws {
			end, ok := ends.Lookup(s.cfg.Topic, p)
			if !ok || end.Err != nil {
				continue
			}
			read := w.read.Load()
			if read < 0 {
				if st, ok := starts.Lookup(s.cfg.Topic, p); ok && st.Err == nil && st.Offset >= end.Offset {
					continue
				}
				if c, ok := committed.Lookup(s.cfg.Topic, p); ok && c.Err == nil && c.At >= end.Offset {
					continue
				}
			}
			select {
			case <-w.done:
				continue
			default:
			}
			if read < end.Offset {
				behind++
			}
		}
		// Fetching paused at the buffer cap reads on only as windows
		// flush: flushing starts now.
		if behind == 0 || s.paused.Load() || s.waitingRoom.Load() > 0 {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Warn("shutdown: changes partitions not read to their end in time; flushing what was read", "partitions", behind)
			return
		case <-t.C:
		}
	}
}

// hurry makes every window flush now, and every change read from now on;
// the workers seal their open epochs at once, so that those flushes
// complete them without waiting for the commit interval.
func (s *Stage) hurry() {
	s.quiesce()
	s.mu.Lock()
	for _, w := range s.workers {
		select {
		case w.sealNow <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	s.ws.MarkUrgent(nil)
}

// Close stops fetching, flushes what the windows hold until ctx ends,
// commits what was uploaded and leaves the group. What is not uploaded by
// then stays uncommitted, for the next owner to read again.
func (s *Stage) Close(ctx context.Context) error {
	var errs []error
	s.quiesce()
	s.stopPolling()
	parts := s.stopWorkers(nil)
	s.ws.MarkUrgent(nil)
	if !s.waitIdle(ctx, parts) {
		errs = append(errs, errors.New("lists: changes still pending at the end of the shutdown grace; they were not committed and will be read again"))
	}
	// What was uploaded is committed even when the grace is spent.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalCommitTimeout)
	if err := s.commit(cctx, nil); err != nil {
		errs = append(errs, err)
	}
	cancel()
	s.sink.StopRebuilds(nil)
	s.cancelUploads()
	// The scheduler stops before the flights are waited for: it would
	// otherwise start new ones (Add concurrent with Wait) that outlive
	// Close.
	s.stopBG()
	s.bg.Wait()
	s.disp.wg.Wait()
	s.member.Left()
	s.cl.Close()
	return errors.Join(errs...)
}

// quiesce marks the stage as shutting down: urgent windows flush for the
// shutdown, and no rebuild starts.
func (s *Stage) quiesce() {
	s.closing.Store(true)
	s.sink.Quiesce()
}

// stopPolling ends the poll goroutine; scheduling, uploading and
// committing go on.
func (s *Stage) stopPolling() {
	s.stopPoll()
	<-s.pollDone
}

// poll fetches records and hands each partition's batch to its worker,
// pausing while the windows hold MaxBuffered records.
func (s *Stage) poll(ctx context.Context) {
	for ctx.Err() == nil {
		waited, err := s.ws.WaitBelow(ctx, s.cfg.MaxBuffered, func() { s.paused.Store(true) })
		if waited {
			s.paused.Store(false)
		}
		if err != nil || !hold.Wait(ctx, s.deps.Hold, &s.paused, s.log) {
			return
		}
		// A record holds up to changes.MaxChanges changes: poll no more
		// than the room left, so the cap holds within one record's worth.
		room := s.cfg.MaxBuffered - s.ws.Buffered()
		pctx, cancel := hold.PollContext(ctx, s.deps.Hold)
		fetches := s.cl.PollRecords(pctx, min(max(room/changes.MaxChanges, 1), 10_000))
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
			w := s.workers[p.Partition]
			s.mu.Unlock()
			if w == nil {
				return // revoked meanwhile: the next owner reads them
			}
			w.highWater.Store(p.HighWatermark)
			select {
			case w.in <- p.Records:
			case <-w.quit:
			case <-ctx.Done():
			}
		})
	}
}

// assigned starts a worker for each new partition, its fetching paused
// until the worker has learnt where the partition ends.
func (s *Stage) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	<-s.started
	cl.PauseFetchPartitions(assigned)
	s.member.Assigned()
	s.mu.Lock()
	for _, ps := range assigned {
		for _, p := range ps {
			if s.workers[p] != nil {
				continue
			}
			w := s.newWorker(p)
			s.workers[p] = w
			go w.run()
		}
	}
	n := len(s.workers)
	s.mu.Unlock()
	s.sink.Assigned(s.now())
	s.setShare(n)
	s.log.Info("partitions assigned", "partitions", fmtParts(assigned))
}

// revoked flushes the revoked partitions' changes within the revoke
// timeout and commits them; what cannot be flushed in time is dropped
// uncommitted, for the next owner to read again. No upload holding their
// changes is in flight when it returns.
func (s *Stage) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	<-s.started
	s.stopWorkers(revoked)
	// During Close the workers are stopped already, their partitions
	// leaving: one revoked now is revoked like any other, or this member
	// would go on flushing and committing it for the rest of the grace.
	parts := s.leavingOf(revoked)
	if len(parts) == 0 {
		return
	}
	// A rebuild in progress stops: its kept changes are dropped, and its
	// mark in the registry tells the next owner.
	s.sink.StopRebuilds(partitionsOf(parts))
	s.ws.MarkUrgent(parts)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RevokeTimeout)
	idle := s.waitIdle(wctx, parts)
	cancel()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RevokeTimeout)
	if err := s.commit(cctx, parts); err != nil {
		s.log.Warn("commit on revoke failed", "err", err)
	}
	cancel()
	if !idle {
		s.log.Warn("revoke: changes not uploaded in time were dropped uncommitted; the next owner reads them again",
			"partitions", fmtParts(revoked), "timeout", s.cfg.RevokeTimeout)
	}
	s.forget(parts)
	s.setShare(s.owned())
	s.log.Info("partitions revoked", "partitions", fmtParts(revoked))
}

// lost drops the lost partitions' changes without committing.
func (s *Stage) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	<-s.started
	s.member.Lost()
	s.stopWorkers(lost)
	parts := s.leavingOf(lost) // during Close too
	s.forget(parts)
	s.setShare(s.owned())
	s.log.Warn("partitions lost", "partitions", fmtParts(lost))
}

func (s *Stage) owned() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.workers)
}

// setShare gives this member the fraction of the app's budget that its
// partitions are of the changes topic: the shares of the group's members
// never sum above one, since a partition is owned by one member at a time
// (a revoked partition's share is given up before the next owner takes it).
func (s *Stage) setShare(owned int) {
	f := float64(owned) / float64(s.cfg.Partitions)
	for _, b := range []Budget{s.writes, s.reads} {
		if b != nil {
			b.SetShare(f)
		}
	}
	s.deps.Assigned.Set(float64(owned))
}

// forget drops partitions: their changes leave the windows, flights that
// hold them are cancelled and waited for, and their bookkeeping goes.
func (s *Stage) forget(parts map[*commit.Partition]bool) {
	if len(parts) == 0 {
		return
	}
	s.mu.Lock()
	for p := range parts {
		if w := s.leaving[p.Partition]; w != nil && w.pt == p {
			delete(s.leaving, p.Partition)
		}
	}
	s.mu.Unlock()
	s.sink.Forget(partitionsOf(parts))
	for p := range parts {
		pl := strconv.Itoa(int(p.Partition))
		s.cm.Committed.DeleteLabelValues(p.Topic, pl)
		s.cm.Lag.DeleteLabelValues(p.Topic, pl)
	}
	s.disp.forget(parts)
}

// deadLetter writes a record Pinterest refused for good to the dead-letter
// topic, for the sink. The value is the hash, never a plaintext
// identifier.
func (s *Stage) deadLetter(ctx context.Context, r sink.Refused) error {
	rec := &kgo.Record{
		Topic:     s.cfg.DLQTopic,
		Partition: r.Partition % s.cfg.DLQPartitions,
		Value:     r.Hash.AppendHex(nil),
		Headers: []kgo.RecordHeader{
			{Key: "pinsync.reason", Value: []byte("pinterest_rejected")},
			{Key: "pinsync.pinterest.code", Value: []byte(r.Code)},
			{Key: "pinsync.audience", Value: []byte(r.List.Audience)},
			{Key: "pinsync.list_type", Value: []byte(r.List.Type.String())},
			{Key: "pinsync.list_id", Value: []byte(r.ListID)},
			{Key: "pinsync.operation", Value: []byte(r.Op)},
		},
	}
	if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return err
	}
	s.deps.DeadLetters.WithLabelValues("pinterest_rejected").Inc()
	return nil
}

// ownedPartitions returns the changes partitions this member owns.
func (s *Stage) ownedPartitions() map[int32]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	owned := make(map[int32]bool, len(s.workers))
	for p := range s.workers {
		owned[p] = true
	}
	return owned
}

// stopWorkers stops the workers of the given partitions (all when nil),
// each sealing its open epoch, and returns their trackers.
func (s *Stage) stopWorkers(which map[string][]int32) map[*commit.Partition]bool {
	s.mu.Lock()
	var ws []*worker
	if which == nil {
		for p, w := range s.workers {
			ws = append(ws, w)
			delete(s.workers, p)
			s.leaving[p] = w
		}
	} else {
		for _, ps := range which {
			for _, p := range ps {
				if w := s.workers[p]; w != nil {
					ws = append(ws, w)
					delete(s.workers, p)
					s.leaving[p] = w
				}
			}
		}
	}
	s.mu.Unlock()
	parts := make(map[*commit.Partition]bool, len(ws))
	for _, w := range ws {
		close(w.quit)
		w.cancel()
	}
	for _, w := range ws {
		<-w.done
		parts[w.pt] = true
	}
	return parts
}

// leavingOf returns the tracked partitions of the given ones whose workers
// have stopped (revoked, or stopped by Close).
func (s *Stage) leavingOf(which map[string][]int32) map[*commit.Partition]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := map[*commit.Partition]bool{}
	for _, ps := range which {
		for _, p := range ps {
			if w := s.leaving[p]; w != nil {
				parts[w.pt] = true
			}
		}
	}
	return parts
}

// waitIdle waits until none of parts has changes pending, or ctx ends. It
// reports whether they became idle.
func (s *Stage) waitIdle(ctx context.Context, parts map[*commit.Partition]bool) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		idle := true
		for p := range parts {
			if !s.tr.Idle(p) {
				idle = false
				break
			}
		}
		if idle {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// commitLoop commits completed epochs every commit interval, and as soon
// as an epoch may have completed, so that a member that dies leaves as
// little as possible to read again.
func (s *Stage) commitLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CommitInterval)
	defer t.Stop()
	purge := time.NewTicker(purgeInterval)
	defer purge.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.tr.Done():
		case <-purge.C:
			s.purge(ctx)
			continue
		}
		if err := s.commit(ctx, nil); err != nil && ctx.Err() == nil {
			s.log.Warn("commit failed", "err", err)
		}
	}
}

// deliveryTimeout bounds the write of one record (a dead letter).
const deliveryTimeout = 30 * time.Second

// purgeInterval is how often the changes topic is trimmed.
const purgeInterval = 30 * time.Second

// purge deletes the records of the changes topic this member committed
// past, as Kafka Streams does with a repartition topic: the topic keeps no
// time retention (the list stage may be an outage behind), so what the list
// stage is done with goes this way.
func (s *Stage) purge(ctx context.Context) {
	offs := kadm.Offsets{}
	for _, p := range s.tr.Partitions() {
		if c := p.Committed(); c > 0 {
			offs.Add(kadm.Offset{Topic: p.Topic, Partition: p.Partition, At: c, LeaderEpoch: -1})
		}
	}
	if len(offs) == 0 {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resps, err := kadm.NewClient(s.cl).DeleteRecords(dctx, offs)
	if err == nil {
		err = resps.Error()
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("trimming the changes topic failed; it is tried again", "err", err)
	}
}

// commit commits, for the given partitions (every tracked one when nil),
// the next offset of their newest completed epoch. parts' epochs are
// retained when the commit fails, for the next commit to retry.
func (s *Stage) commit(ctx context.Context, parts map[*commit.Partition]bool) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	var list []*commit.Partition
	if parts == nil {
		list = s.tr.Partitions()
	} else {
		for p := range parts {
			list = append(list, p)
		}
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	var done []*commit.Partition
	var marks []*commit.Mark
	for _, p := range list {
		m := s.tr.Completed(p)
		if m == nil || m.Next <= p.Committed() {
			continue
		}
		if offsets[p.Topic] == nil {
			offsets[p.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: m.LeaderEpoch, Offset: m.Next}
		done = append(done, p)
		marks = append(marks, m)
	}
	if len(offsets) == 0 {
		return nil
	}
	err := commit.Offsets(ctx, s.cl, offsets)
	if err != nil {
		// Keep the popped marks: the next commit retries them.
		for i, p := range done {
			s.tr.Retain(p, marks[i])
		}
		return err
	}
	for i, p := range done {
		p.SetCommitted(marks[i].Next, marks[i].LeaderEpoch)
		s.cm.Committed.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(marks[i].Next))
	}
	s.cm.LastCommit.Set(float64(s.now().UnixNano()) / 1e9)
	s.updateLag()
	return nil
}

// owns checks with the group coordinator that this member still owns
// changes partition p: it commits, as the member of its current
// generation, the offset it last committed there. The coordinator refuses
// the commit of a member it has expired (a member paused past its session
// timeout), which owns nothing any more.
func (s *Stage) owns(ctx context.Context, p int32) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	w := s.workers[p]
	if w == nil {
		w = s.leaving[p]
	}
	s.mu.Unlock()
	if w == nil {
		return fmt.Errorf("%w %d: revoked", ErrNotOwner, p)
	}
	eo, ok := w.probeOffset()
	if !ok {
		// Nothing read nor committed here yet (a rebuild on a partition
		// without new changes): what the group had committed when this
		// member joined.
		eo, ok = s.cl.CommittedOffsets()[s.cfg.Topic][p]
	}
	if !ok || eo.Offset < 0 {
		return fmt.Errorf("%w %d: nothing read or committed yet", ErrNotOwner, p)
	}
	err := commit.Owns(ctx, s.cl, s.cfg.Topic, p, eo)
	if commit.Expired(err) {
		return fmt.Errorf("%w %d: %v", ErrNotOwner, p, err)
	}
	if err != nil {
		return fmt.Errorf("lists: checking ownership of partition %d: %w", p, err)
	}
	return nil
}

func (s *Stage) updateLag() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, w := range s.workers {
		hw := w.highWater.Load()
		if hw <= 0 {
			continue
		}
		c := max(w.pt.Committed(), 0)
		s.cm.Lag.WithLabelValues(s.cfg.Topic, strconv.Itoa(int(p))).Set(float64(max(hw-c, 0)))
	}
}

// partitionStatus describes the changes topic's partitions this member
// owns.
func (s *Stage) partitionStatus() []PartitionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PartitionStatus, 0, len(s.workers))
	for p, w := range s.workers {
		hw := w.highWater.Load()
		c := w.pt.Committed()
		ps := PartitionStatus{Topic: s.cfg.Topic, Partition: p, Committed: c, HighWatermark: hw}
		if hw > 0 {
			ps.Lag = hw - max(c, 0)
		}
		out = append(out, ps)
	}
	return out
}

// endOffset returns the high watermark of partition p of the changes
// topic.
func (s *Stage) endOffset(ctx context.Context, p int32) (int64, error) {
	ends, err := kadm.NewClient(s.cl).ListEndOffsets(ctx, s.cfg.Topic)
	if err != nil {
		return 0, err
	}
	o, ok := ends.Lookup(s.cfg.Topic, p)
	if !ok {
		return 0, fmt.Errorf("no end offset for %s/%d", s.cfg.Topic, p)
	}
	if o.Err != nil {
		return 0, o.Err
	}
	return o.Offset, nil
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

// partitionsOf returns the partition numbers of tracked partitions.
func partitionsOf(parts map[*commit.Partition]bool) map[int32]bool {
	out := make(map[int32]bool, len(parts))
	for p := range parts {
		out[p.Partition] = true
	}
	return out
}
