// Package member is one member of a consumer group that hands each
// assigned partition's records to a goroutine of its own, in offset order:
// franz-go's goroutine-per-partition shape (its examples'
// goroutine_per_partition_consuming), the part of a Kafka Streams
// StreamThread that owns the consumer. Both of pinsync's stages run one.
//
// A Member builds the group's client (manual commits, read-committed
// fetches with control records, the cooperative-sticky balancer), runs
// the poll loop (gated by its stage, and by package hold), keeps a worker
// per owned partition, follows its standing in the group (package
// membership), commits offsets with their series, and reports each
// partition's lag and the partitions whose start keeps failing.
//
// A partition is the member's from its assignment until its revoke has
// finished: while the stage flushes and commits a revoked partition's
// work, Owner still finds its worker (a write guard asks it).
//
// What the stages do differently stays theirs, in a Handler: how a worker
// starts (pausing its partition until it is ready: the list stage learns
// the partition's end, the profile stage restores its state) and stops,
// what a revoke finishes and commits, what a poll waits for, and anything
// done to a partition's position from the poll goroutine (the profile
// stage's rewind, which Wake serves between polls).
//
// A partition whose records were lost to its reader (the broker no longer
// holds the offset it reads at), or that its worker cannot read on (a
// record of a format it does not know), halts: its worker stops there, so
// nothing past it is committed, and the member reports it (Halts) until
// the partition leaves. The member never moves a position by itself.
//
// It does not decide what to commit (package commit and the stages).
package member

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/hold"
	"github.com/pinsync/pinsync/consumer/membership"
)

// fetchMaxWait is how long a fetch waits for data on idle partitions. A
// partition resumed after its start waits for the fetch in flight to
// return; an idle one makes that fetch wait this long.
const fetchMaxWait = 500 * time.Millisecond

// Worker is the goroutine that handles one owned partition, as its member
// sees it.
type Worker interface {
	// Feed hands the worker the next records of its partition, from the
	// poll goroutine; it returns once the worker took them, stopped, or
	// ctx ended.
	Feed(ctx context.Context, recs []*kgo.Record)
	// Committed is the next offset committed for the partition (-1:
	// none).
	Committed() int64
	// FailingSince is when the partition's start began failing; zero
	// while it does not (see Failing).
	FailingSince() time.Time
	// Halted says why the worker stopped reading its partition; nil
	// while it reads (see Halt).
	Halted() *Halted
}

// Handler is what a stage does at each turn of its member's life. Every
// func but Assigned is required. The member holds no lock while it calls
// them.
type Handler[W Worker] struct {
	// Start returns the running worker of partition p, just assigned, its
	// fetching paused: the worker resumes it when it is ready for records.
	// It reports false to leave the partition without a worker (the stage
	// is shutting down: its next owner reads it).
	Start func(p int32) (W, bool)
	// Assigned, when set, is told after each assignment how many
	// partitions the member owns.
	Assigned func(owned int)
	// Revoked stops the workers of revoked partitions, finishes their
	// work and commits it, within the rebalance. The partitions stay the
	// member's until it returns.
	Revoked func(ctx context.Context, ws map[int32]W)
	// Lost stops the workers of lost partitions and drops their work,
	// committing nothing.
	Lost func(ws map[int32]W)
	// Gate waits, before each poll, until the stage can take more records;
	// false ends the poll loop (ctx ended).
	Gate func(ctx context.Context) bool
	// Max is how many records the next poll may return.
	Max func() int
	// Gap, when set, is told that records of w's partition were lost to
	// its reader: the broker no longer holds the offset it reads at (the
	// log start passed it: kerr.OffsetOutOfRange) or truncated the log
	// under it (kgo.ErrDataLoss). The member has paused the partition's
	// fetching. With Gap set the client never moves a position by itself
	// (its reset offset is none); without it, it resumes at the log
	// start.
	Gap func(w W, err error)
}

// Config configures a member.
type Config struct {
	// Topic is the topic consumed, and Group the consumer group.
	Topic, Group string
	Deps
}

// Deps are what a stage's caller hands the stage's member.
type Deps struct {
	// Kafka holds the connection options (a stage adds its own, a
	// producer's say); the member adds the group's.
	Kafka []kgo.Opt
	// Hold, when set, says why fetching must wait (Pinterest refused the
	// credentials: nothing read now could be uploaded); nil to go on. It
	// is asked before every poll, and every hold.Poll while it holds.
	Hold hold.Func
	// Commits are the stage's commit series and Assigned the count of the
	// partitions it owns, series the caller shares between the stages.
	Commits  commit.Metrics
	Assigned prometheus.Gauge
	Logger   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Leave, when set, is asked as the member closes: true makes a static
	// member (kgo.InstanceID) leave its group for good, as a dynamic member
	// always does, so that the group assigns its partitions at once (a
	// scale-down). Nil or false leaves a static member in its group until
	// the session timeout, its partitions kept for its instance id (a
	// restart).
	Leave func() bool
}

// leaveTimeout bounds the LeaveGroup of a static member that closes for
// good.
const leaveTimeout = 5 * time.Second

// WithDefaults returns d with a logger (one that discards when d has
// none) tagged with the stage's component, and time.Now when d has no
// clock.
func (d Deps) WithDefaults(component string) Deps {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	d.Logger = d.Logger.With("component", component)
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}

// owned is one partition the member owns and its worker.
type owned[W Worker] struct {
	w         W
	highWater atomic.Int64
}

// Member is one member of a consumer group. Create it with New, start it
// with Start and stop it with Close; a Member runs once. Its methods are
// safe for concurrent use.
type Member[W Worker] struct {
	cfg     Config
	h       Handler[W]
	log     *slog.Logger
	tracker *membership.Tracker
	cl      *kgo.Client
	// started is closed once Start has set cl: the group's callbacks,
	// which may run as soon as the client exists, wait for it.
	started  chan struct{}
	held     atomic.Bool
	stopPoll context.CancelFunc
	pollDone chan struct{}

	mu      sync.Mutex
	workers map[int32]*owned[W]
	// leaving are the workers of partitions being revoked: still the
	// member's until their revoke returns.
	leaving map[int32]W
	// pollCancel ends the poll in progress; woken says Wake was called
	// since the poll loop last served the stage's Gate.
	pollCancel context.CancelFunc
	woken      bool
}

// New returns a member; it connects to nothing.
func New[W Worker](cfg Config, h Handler[W]) *Member[W] {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Commits = cfg.Commits.OrDefaults()
	if cfg.Assigned == nil {
		cfg.Assigned = prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered_assigned"})
	}
	return &Member[W]{
		cfg: cfg, h: h, log: cfg.Logger, tracker: membership.New(cfg.Group, cfg.Now),
		started: make(chan struct{}), pollDone: make(chan struct{}),
		workers: make(map[int32]*owned[W]), leaving: make(map[int32]W),
	}
}

// Start joins the group and starts polling. ctx bounds only the start.
func (m *Member[W]) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	reset := kgo.NewOffset().AtStart()
	if m.h.Gap != nil {
		reset = kgo.NoResetOffset().AtStart()
	}
	opts := append(append([]kgo.Opt{}, m.cfg.Kafka...),
		kgo.ConsumerGroup(m.cfg.Group),
		kgo.ConsumeTopics(m.cfg.Topic),
		kgo.DisableAutoCommit(),
		// A partition the group never committed starts at its log start.
		kgo.ConsumeStartOffset(kgo.NewOffset().AtStart()),
		kgo.ConsumeResetOffset(reset),
		// Records of an aborted transaction never happened; markers count
		// as records, so that a partition's commit reaches its end.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.OnPartitionsAssigned(m.Assigned),
		kgo.OnPartitionsRevoked(m.Revoked),
		kgo.OnPartitionsLost(m.Lost),
		kgo.WithHooks(m.tracker),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	m.cl = cl
	close(m.started)
	pctx, stop := context.WithCancel(context.Background())
	m.stopPoll = stop
	go func() { defer close(m.pollDone); m.poll(pctx) }()
	return nil
}

// Client is the member's client, for the stage's commits, offsets and
// records of its own. Valid after Start.
func (m *Member[W]) Client() *kgo.Client { return m.cl }

// StopPolling ends the poll loop and returns once it has; the workers go
// on.
func (m *Member[W]) StopPolling() {
	m.stopPoll()
	<-m.pollDone
}

// Close leaves the group and closes the client (which runs Revoked for
// what the member still owns). Call it once the stage has stopped its
// workers.
//
// A static member's client does not leave its group when it closes: the
// group keeps its partitions for its instance id until the session
// timeout. When Deps.Leave says the member goes for good, Close then
// removes the instance id from the group (a LeaveGroup naming it, as Kafka
// Streams' close with leaveGroup does through the admin API, KIP-812), and
// the group assigns its partitions at once.
func (m *Member[W]) Close() {
	m.tracker.Left()
	instance, _ := m.cl.OptValue(kgo.InstanceID).(string)
	m.cl.Close()
	if instance != "" && m.cfg.Leave != nil && m.cfg.Leave() {
		m.leaveGroup(instance)
	}
}

// leaveGroup removes the static member instance from the group, with a
// client of its own (the member's is closed: it would no longer send
// anything, and before it closes it would rejoin).
func (m *Member[W]) leaveGroup(instance string) {
	cl, err := kgo.NewClient(m.cfg.Kafka...)
	if err != nil {
		m.log.Warn("leaving the group for good: no client; its partitions wait for the session timeout", "group", m.cfg.Group, "instance_id", instance, "err", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	resps, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(m.cfg.Group).InstanceIDs(instance).Reason("pinsync stops for good"))
	if err == nil {
		for _, r := range resps {
			if r.Err != nil && !errors.Is(r.Err, kerr.UnknownMemberID) {
				err = r.Err
			}
		}
	}
	if err != nil {
		m.log.Warn("leaving the group for good failed; its partitions wait for the session timeout", "group", m.cfg.Group, "instance_id", instance, "err", err)
		return
	}
	// UnknownMemberID: the client had left already, or its session had
	// expired; either way the partitions are free.
	m.log.Info("left the group for good", "group", m.cfg.Group, "instance_id", instance)
}

// poll fetches records and hands each partition's batch to its worker.
func (m *Member[W]) poll(ctx context.Context) {
	for ctx.Err() == nil {
		m.mu.Lock()
		m.woken = false
		m.mu.Unlock()
		if !m.h.Gate(ctx) || !hold.Wait(ctx, m.cfg.Hold, &m.held, m.log) {
			return
		}
		pctx, cancel := hold.PollContext(ctx, m.cfg.Hold)
		m.mu.Lock()
		m.pollCancel = cancel
		if m.woken {
			cancel()
		}
		m.mu.Unlock()
		fetches := m.cl.PollRecords(pctx, m.h.Max())
		m.mu.Lock()
		m.pollCancel = nil
		m.mu.Unlock()
		cancel()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fetches.EachError(func(t string, p int32, err error) {
			switch {
			case m.h.Gap != nil && t == m.cfg.Topic && Lost(err):
				m.gap(p, err)
			case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
				m.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			m.mu.Lock()
			o := m.workers[p.Partition]
			m.mu.Unlock()
			if o == nil {
				return // revoked meanwhile: the next owner reads them
			}
			o.highWater.Store(p.HighWatermark)
			o.w.Feed(ctx, p.Records)
		})
	}
}

// Lost reports whether a fetch error says that records are gone before
// they were read: the offset read at is out of the log's range, or the
// client found the log truncated under what it had read.
func Lost(err error) bool {
	var loss *kgo.ErrDataLoss
	return errors.Is(err, kerr.OffsetOutOfRange) || errors.As(err, &loss)
}

// gap pauses partition p, whose records were lost to its reader, and tells
// the stage (Handler.Gap).
func (m *Member[W]) gap(p int32, err error) {
	m.cl.PauseFetchPartitions(map[string][]int32{m.cfg.Topic: {p}})
	m.mu.Lock()
	o := m.workers[p]
	m.mu.Unlock()
	if o != nil {
		m.h.Gap(o.w, err)
	}
}

// Wake ends the poll in progress, or the next one, so that the stage's
// Gate runs again soon (to move a partition's position between polls).
func (m *Member[W]) Wake() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.woken = true
	if m.pollCancel != nil {
		m.pollCancel()
	}
}

// Assigned is the member's kgo.OnPartitionsAssigned: a worker for each new
// partition, its fetching paused until the worker resumes it.
func (m *Member[W]) Assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	<-m.started
	cl.PauseFetchPartitions(assigned)
	m.tracker.Assigned()
	var fresh []int32
	m.mu.Lock()
	for _, p := range assigned[m.cfg.Topic] {
		if m.workers[p] == nil {
			fresh = append(fresh, p)
		}
	}
	m.mu.Unlock()
	started := make(map[int32]W, len(fresh))
	var refused []int32
	for _, p := range fresh {
		w, ok := m.h.Start(p)
		if !ok {
			refused = append(refused, p)
			continue
		}
		started[p] = w
	}
	m.mu.Lock()
	for p, w := range started {
		m.workers[p] = &owned[W]{w: w}
	}
	n := len(m.workers)
	m.mu.Unlock()
	if len(refused) > 0 {
		m.log.Info("partitions assigned while shutting down: left to the next owner", "partitions", Format(assigned))
		return
	}
	m.cfg.Assigned.Set(float64(n))
	if m.h.Assigned != nil {
		m.h.Assigned(n)
	}
	m.log.Info("partitions assigned", "partitions", Format(assigned))
}

// Revoked is the member's kgo.OnPartitionsRevoked: the stage finishes the
// revoked partitions' work (Handler.Revoked), then the member lets them
// go. A partition already leaving (its worker stopped while the stage
// shuts down) is revoked like the others.
func (m *Member[W]) Revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	<-m.started
	ws := m.leave(revoked[m.cfg.Topic])
	if len(ws) == 0 {
		return
	}
	m.h.Revoked(ctx, ws)
	m.gone(ws)
	m.log.Info("partitions revoked", "partitions", Format(revoked))
}

// Lost is the member's kgo.OnPartitionsLost: its session ended, and the
// stage drops the lost partitions' work (Handler.Lost).
func (m *Member[W]) Lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	<-m.started
	m.tracker.Lost()
	ws := m.leave(lost[m.cfg.Topic])
	m.h.Lost(ws)
	m.gone(ws)
	m.log.Warn("partitions lost", "partitions", Format(lost))
}

// leave moves the workers of ps to leaving and returns them, with those
// that were leaving already.
func (m *Member[W]) leave(ps []int32) map[int32]W {
	m.mu.Lock()
	defer m.mu.Unlock()
	ws := make(map[int32]W, len(ps))
	for _, p := range ps {
		if o := m.workers[p]; o != nil {
			delete(m.workers, p)
			m.leaving[p] = o.w
		}
		if w, ok := m.leaving[p]; ok {
			ws[p] = w
		}
	}
	m.cfg.Assigned.Set(float64(len(m.workers)))
	return ws
}

// gone forgets partitions whose revoke or loss has finished, and their
// commit series.
func (m *Member[W]) gone(ws map[int32]W) {
	m.mu.Lock()
	for p, w := range ws {
		if l, ok := m.leaving[p]; ok && any(l) == any(w) {
			delete(m.leaving, p)
		}
	}
	m.mu.Unlock()
	for p := range ws {
		pl := strconv.Itoa(int(p))
		m.cfg.Commits.Committed.DeleteLabelValues(m.cfg.Topic, pl)
		m.cfg.Commits.Lag.DeleteLabelValues(m.cfg.Topic, pl)
	}
}

// LeaveAll moves every worker to leaving and returns them: the stage
// stops them and finishes their work while it shuts down; a revoke
// meanwhile revokes them as usual.
func (m *Member[W]) LeaveAll() map[int32]W { return m.takeAll(true) }

// Clear removes every worker and returns them: the stage closes them, and
// a revoke afterwards finds nothing to do.
func (m *Member[W]) Clear() map[int32]W { return m.takeAll(false) }

func (m *Member[W]) takeAll(leave bool) map[int32]W {
	m.mu.Lock()
	defer m.mu.Unlock()
	ws := make(map[int32]W, len(m.workers))
	for p, o := range m.workers {
		delete(m.workers, p)
		if leave {
			m.leaving[p] = o.w
		}
		ws[p] = o.w
	}
	return ws
}

// Workers returns the workers of the partitions the member owns, leaving
// ones aside.
func (m *Member[W]) Workers() map[int32]W {
	m.mu.Lock()
	defer m.mu.Unlock()
	ws := make(map[int32]W, len(m.workers))
	for p, o := range m.workers {
		ws[p] = o.w
	}
	return ws
}

// Owned returns the partitions the member owns, leaving ones aside.
func (m *Member[W]) Owned() map[int32]bool {
	ps := map[int32]bool{}
	for p := range m.Workers() {
		ps[p] = true
	}
	return ps
}

// Owner returns the worker of partition p, leaving or not.
func (m *Member[W]) Owner(p int32) (W, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o := m.workers[p]; o != nil {
		return o.w, true
	}
	w, ok := m.leaving[p]
	return w, ok
}

// Leaving reports whether partition p is leaving: its worker stopped, its
// revoke not finished.
func (m *Member[W]) Leaving(p int32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.leaving[p]
	return ok
}

// Held reports whether polling waits for the Hold.
func (m *Member[W]) Held() bool { return m.held.Load() }

// Membership is the member's standing in its group.
func (m *Member[W]) Membership() membership.Status { return m.tracker.Status() }

// Commit commits offsets of the member's topic, as the member of its
// current generation. When it succeeds, committed (if set) records it
// before the commit series and the lag are updated.
func (m *Member[W]) Commit(ctx context.Context, offsets map[int32]kgo.EpochOffset, committed func()) error {
	if err := commit.Offsets(ctx, m.cl, map[string]map[int32]kgo.EpochOffset{m.cfg.Topic: offsets}); err != nil {
		return err
	}
	if committed != nil {
		committed()
	}
	for p, eo := range offsets {
		m.cfg.Commits.Committed.WithLabelValues(m.cfg.Topic, strconv.Itoa(int(p))).Set(float64(eo.Offset))
	}
	m.cfg.Commits.LastCommit.Set(float64(m.cfg.Now().UnixNano()) / 1e9)
	m.UpdateLag()
	return nil
}

// UpdateLag sets each owned partition's lag series: its high watermark
// minus its committed offset.
func (m *Member[W]) UpdateLag() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, o := range m.workers {
		hw := o.highWater.Load()
		if hw <= 0 {
			continue
		}
		c := max(o.w.Committed(), 0)
		m.cfg.Commits.Lag.WithLabelValues(m.cfg.Topic, strconv.Itoa(int(p))).Set(float64(max(hw-c, 0)))
	}
}

// Partitions describes the partitions the member owns, in order.
func (m *Member[W]) Partitions() []commit.PartitionStatus {
	m.mu.Lock()
	out := make([]commit.PartitionStatus, 0, len(m.workers))
	for p, o := range m.workers {
		hw, c := o.highWater.Load(), o.w.Committed()
		ps := commit.PartitionStatus{Topic: m.cfg.Topic, Partition: p, Committed: c, HighWatermark: hw}
		if hw > 0 {
			ps.Lag = hw - max(c, 0)
		}
		if h := o.w.Halted(); h != nil {
			ps.Halted = h.Reason
		}
		out = append(out, ps)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

// Unhealthy reports the owned partitions whose start has been failing for
// longer than limit, as an error that begins with what; nil when there is
// none.
func (m *Member[W]) Unhealthy(limit time.Duration, what string) error {
	stuck := m.failing(limit)
	if len(stuck) == 0 {
		return nil
	}
	sort.Strings(stuck)
	return fmt.Errorf("%s: %s", what, strings.Join(stuck, ", "))
}

// UnhealthyCount is how many owned partitions Unhealthy would name.
func (m *Member[W]) UnhealthyCount(limit time.Duration) int { return len(m.failing(limit)) }

// failing describes the owned partitions whose start has been failing for
// longer than limit: "topic/partition for duration".
func (m *Member[W]) failing(limit time.Duration) []string {
	now := m.cfg.Now()
	var stuck []string
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, o := range m.workers {
		if since := o.w.FailingSince(); !since.IsZero() && now.Sub(since) > limit {
			stuck = append(stuck, fmt.Sprintf("%s/%d for %s", m.cfg.Topic, p, now.Sub(since).Round(time.Second)))
		}
	}
	return stuck
}

// Halts returns why each owned partition that halted did, by partition.
func (m *Member[W]) Halts() map[int32]*Halted {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int32]*Halted{}
	for p, o := range m.workers {
		if h := o.w.Halted(); h != nil {
			out[p] = h
		}
	}
	return out
}

// HaltError reports the owned partitions that halted, each with its
// reason and what was found, as an error that begins with what; nil when
// none did.
func (m *Member[W]) HaltError(what string) error {
	hs := m.Halts()
	if len(hs) == 0 {
		return nil
	}
	ps := make([]int32, 0, len(hs))
	for p := range hs {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s/%d (%s: %v)", m.cfg.Topic, p, hs[p].Reason, hs[p].Err))
	}
	return fmt.Errorf("%s: %s", what, strings.Join(parts, "; "))
}

// The reasons a partition halts: the values of the reason label of
// pinsync_partitions_halted, a closed set.
const (
	// HaltGap: records were deleted before they were read (the log start
	// passed the position, an offset out of range, a fetch that skipped
	// records the log no longer holds).
	HaltGap = "gap"
	// HaltUnknownVersion: a record of a format this version does not know,
	// written by a newer one.
	HaltUnknownVersion = "unknown_version"
	// HaltTopicReset: the input topic was recreated or truncated under the
	// position the state stands at.
	HaltTopicReset = "topic_reset"
	// HaltStateLost: the changelog holds no state for a partition the group
	// has consumed.
	HaltStateLost = "state_lost"
)

// Halted is why a worker stopped reading its partition.
type Halted struct {
	// Reason is one of the Halt constants.
	Reason string
	// Err says what was found, and what to do.
	Err error
}

// Halt records that a worker stopped reading its partition for a reason
// it cannot get past on its own: nothing past where it stopped is read or
// committed until the partition leaves it. Workers embed it; it is safe
// for concurrent use.
type Halt struct{ h atomic.Pointer[Halted] }

// Halt records why the partition stopped; the first reason counts. It
// reports whether this call halted it.
func (h *Halt) Halt(reason string, err error) bool {
	return h.h.CompareAndSwap(nil, &Halted{Reason: reason, Err: err})
}

// Halted returns why the partition stopped; nil while it reads.
func (h *Halt) Halted() *Halted { return h.h.Load() }

// Failing records since when a worker's start (what it must do before it
// reads its partition) has been failing. Workers embed it; it is safe for
// concurrent use.
type Failing struct{ since atomic.Int64 }

// Fail records a failed attempt at now; the first one counts.
func (f *Failing) Fail(now time.Time) { f.since.CompareAndSwap(0, now.UnixNano()) }

// Started records that the start succeeded, or was abandoned.
func (f *Failing) Started() { f.since.Store(0) }

// FailingSince is when the start began failing; zero while it does not.
func (f *Failing) FailingSince() time.Time {
	if n := f.since.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Format renders a partition map for logs: topic:[0 1 2].
func Format(m map[string][]int32) string {
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
