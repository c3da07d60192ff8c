// Package lists is pinsync's list stage: a member of the list stage's
// consumer group, which reads the changes topic (package changes), keyed by
// list, so that each Pinterest list has exactly one owner group-wide.
//
// Its rooms:
//
//   - Stage, here, is the member's stage side (package member runs the
//     group member itself): it starts a worker per assigned partition,
//     takes its share of the write budget, and shuts down in order. Its
//     committer commits an offset of the changes topic only after every
//     upload covering the changes before it succeeded (package commit),
//     and answers the ownership check.
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
// Lock order: the committer's lock, then the member's (its workers) or
// the commit tracker's. The window set's lock is held while calling
// nothing, so never while the sink is called; the sink holds none of its
// locks while it calls Pinterest, the registry or what the member handed
// it (SetMode takes the window set's lock, the guard the committer's).
//
// It does not decode events or keep profile state (package profiles), and
// it does not talk to Pinterest itself (package sink).
package lists

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/lists/lending"
	"github.com/pinsync/pinsync/consumer/lists/sink"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/consumer/member"
)

// finalCommitTimeout bounds the last commit of Close.
const finalCommitTimeout = 5 * time.Second

// deliveryTimeout bounds the write of one record (a dead letter).
const deliveryTimeout = 30 * time.Second

// ErrNotOwner is returned (wrapped) by a write this member refused to send
// because the group coordinator no longer counts it as the owner of the
// list's partition.
var ErrNotOwner = errors.New("lists: not the owner of the list's partition")

// Stage is one member of the list stage's group. Create it with New, start
// it with Start and stop it with Close; a Stage runs once.
type Stage struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	deps Deps

	tr      *commit.Tracker
	ws      *window.Set
	writes  *lending.Pool // nil: no write budget
	sink    *sink.Sink
	disp    *dispatcher
	member  *member.Member[*worker]
	commits *committer
	workers *workerDeps

	// cancelUploads ends the flights' context (see dispatcher.ctx).
	cancelUploads context.CancelFunc
	bg            sync.WaitGroup
	stopBG        context.CancelFunc

	// capped is set while polling waits for the windows to hold fewer
	// than MaxBuffered records; waitingRoom counts the workers waiting for
	// room under MaxBufferedBytes.
	capped      atomic.Bool
	waitingRoom atomic.Int32
	// closing is set once the stage shuts down (Drain, Close).
	closing atomic.Bool
}

// New validates cfg and builds a stage.
func New(cfg Config, deps Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pinterest == nil {
		return nil, errors.New("lists: Deps.Pinterest is required")
	}
	md := deps.Member.WithDefaults("lists")
	log, now := md.Logger, md.Now
	m, err := newMetrics(deps.Registerer, cfg.FlushInterval)
	if err != nil {
		return nil, err
	}
	if deps.DeadLetters == nil {
		deps.DeadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unregistered_dead_letters"}, []string{"reason"})
	}
	s := &Stage{cfg: cfg, log: log, now: now, deps: deps,
		tr: commit.NewTracker(), ws: window.New(cfg.MaxRecords, cfg.MaxBufferedBytes)}
	var writes tokens
	if deps.Writes != nil {
		s.writes, err = lending.New(lending.Config{Lease: cfg.BudgetLease, Horizon: cfg.FlushInterval}, lending.Deps{
			Budget: deps.Writes, Work: s.ws, Exchange: deps.Loans, Logger: log, Registerer: deps.Registerer, Now: now,
		})
		if err != nil {
			return nil, err
		}
		writes = s.writes
	}
	md.Kafka = append(append([]kgo.Opt{}, md.Kafka...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A dead letter the broker cannot take fails its flush (tried
		// again later) rather than hanging it.
		kgo.RecordDeliveryTimeout(deliveryTimeout))
	s.member = member.New(member.Config{Topic: cfg.Topic, Group: cfg.Group, Deps: md}, member.Handler[*worker]{
		Start: s.start, Assigned: s.assigned, Revoked: s.revoked, Lost: s.lost, Gate: s.gate, Max: s.pollMax,
		Gap: (*worker).lost,
	})
	s.commits = &committer{member: s.member, tr: s.tr, topic: cfg.Topic, interval: cfg.CommitInterval, log: log}
	uploads, cancel := context.WithCancel(context.Background())
	s.cancelUploads = cancel
	s.disp = &dispatcher{
		ws: s.ws, tr: s.tr, writes: writes, interval: cfg.FlushInterval, maxFlights: cfg.MaxFlights,
		closing: &s.closing, ctx: uploads, m: m, log: log, now: now,
	}
	s.sink, err = sink.New(sink.Config{
		Partitions: cfg.Partitions, MaxRecords: cfg.MaxRecords, ListNameTemplate: cfg.ListNameTemplate,
		AudiencePollInterval: cfg.AudiencePollInterval, ParkedRetry: cfg.ParkedRetry,
	}, sink.Deps{
		Pinterest: deps.Pinterest, Registry: deps.Registry, Members: deps.Members,
		Owned: s.member.Owned, SetMode: s.disp.setMode, Backoff: backoff, DeadLetter: s.deadLetter, Guard: s.commits.owns,
		Logger: log, Registerer: deps.Registerer, Now: now,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	s.disp.sink = s.sink
	s.workers = &workerDeps{
		topic: cfg.Topic, interval: cfg.CommitInterval, now: now, log: log, m: m, tr: s.tr, ws: s.ws,
		intern: s.sink.Intern, bounds: s.bounds, resume: s.resume, pause: s.pause, closing: &s.closing, waitingRoom: &s.waitingRoom,
	}
	s.setShare(0)
	return s, nil
}

// Start joins the group and starts consuming, scheduling, uploading and
// committing in the background. ctx bounds only the start.
func (s *Stage) Start(ctx context.Context) error {
	if err := s.member.Start(ctx); err != nil {
		return fmt.Errorf("lists: %w", err)
	}
	bg, stop := context.WithCancel(context.Background())
	s.stopBG = stop
	s.bg.Add(3)
	if s.writes != nil {
		s.bg.Add(1)
		go func() { defer s.bg.Done(); s.writes.Run(bg) }()
	}
	go func() { defer s.bg.Done(); s.sink.Run(bg) }()
	go func() { defer s.bg.Done(); s.disp.run(bg) }()
	go func() { defer s.bg.Done(); s.commits.run(bg) }()
	return nil
}

// Drain reads every owned partition of the changes topic up to what is
// committed in it now (after the profile stage's last transactions), then
// flushes every window at once: one last flush per list, not one per batch
// arriving during the shutdown. Changes committed later are left to the
// next owner. It stops waiting when ctx ends and flushes what it has.
func (s *Stage) Drain(ctx context.Context) {
	defer s.hurry()
	ws := s.member.Workers()
	if len(ws) == 0 {
		return
	}
	adm := kadm.NewClient(s.member.Client())
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
		if behind == 0 || s.Paused() {
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
	for _, w := range s.member.Workers() {
		w.hurry()
	}
	s.ws.MarkUrgent(nil)
}

// quiesce marks the stage as shutting down: urgent windows flush for the
// shutdown, and no rebuild starts.
func (s *Stage) quiesce() {
	s.closing.Store(true)
	s.sink.Quiesce()
}

// Close stops fetching, flushes what the windows hold until ctx ends,
// commits what was uploaded and leaves the group. What is not uploaded by
// then stays uncommitted, for the next owner to read again.
func (s *Stage) Close(ctx context.Context) error {
	var errs []error
	s.quiesce()
	s.member.StopPolling()
	parts := stopWorkers(s.member.LeaveAll())
	s.ws.MarkUrgent(nil)
	if !s.waitIdle(ctx, parts) {
		errs = append(errs, errors.New("lists: changes still pending at the end of the shutdown grace; they were not committed and will be read again"))
	}
	// What was uploaded is committed even when the grace is spent.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalCommitTimeout)
	if err := s.commits.commit(cctx, nil); err != nil {
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
	s.member.Close()
	return errors.Join(errs...)
}

// start is the member's Handler.Start: a worker for partition p, which
// resumes its fetching once it has learnt where the partition ends.
func (s *Stage) start(p int32) (*worker, bool) {
	w := newWorker(s.workers, p)
	go w.run()
	return w, true
}

// assigned is the member's Handler.Assigned.
func (s *Stage) assigned(owned int) {
	s.sink.Assigned(s.now())
	s.setShare(owned)
}

// revoked is the member's Handler.Revoked: it flushes the revoked
// partitions' changes within the revoke timeout and commits them; what
// cannot be flushed in time is dropped uncommitted, for the next owner to
// read again. No upload holding their changes is in flight when it
// returns.
func (s *Stage) revoked(ctx context.Context, ws map[int32]*worker) {
	parts := stopWorkers(ws)
	// A rebuild in progress stops: its kept changes are dropped, and its
	// mark in the registry tells the next owner.
	s.sink.StopRebuilds(partitionsOf(parts))
	s.ws.MarkUrgent(parts)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RevokeTimeout)
	idle := s.waitIdle(wctx, parts)
	cancel()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RevokeTimeout)
	if err := s.commits.commit(cctx, parts); err != nil {
		s.log.Warn("commit on revoke failed", "err", err)
	}
	cancel()
	if !idle {
		ps := make([]int32, 0, len(ws))
		for p := range ws {
			ps = append(ps, p)
		}
		s.log.Warn("revoke: changes not uploaded in time were dropped uncommitted; the next owner reads them again",
			"partitions", member.Format(map[string][]int32{s.cfg.Topic: ps}), "timeout", s.cfg.RevokeTimeout)
	}
	s.forget(parts)
	s.setShare(len(s.member.Owned()))
}

// lost is the member's Handler.Lost: it drops the lost partitions' changes
// without committing.
func (s *Stage) lost(ws map[int32]*worker) {
	s.forget(stopWorkers(ws))
	s.setShare(len(s.member.Owned()))
}

// stopWorkers stops workers, each sealing its open epoch, and returns
// their trackers once they have.
func stopWorkers(ws map[int32]*worker) map[*commit.Partition]bool {
	for _, w := range ws {
		w.stop()
	}
	parts := make(map[*commit.Partition]bool, len(ws))
	for _, w := range ws {
		<-w.done
		parts[w.pt] = true
	}
	return parts
}

// gate is the member's Handler.Gate: polling pauses while the windows hold
// MaxBuffered records, or are at their byte cap.
func (s *Stage) gate(ctx context.Context) bool {
	waited, err := s.ws.WaitBelow(ctx, s.cfg.MaxBuffered, func() { s.capped.Store(true) })
	if waited {
		s.capped.Store(false)
	}
	return err == nil
}

// pollMax is the member's Handler.Max. A record holds up to
// changes.MaxChanges changes: poll no more than the room left, so that the
// cap holds within one record's worth.
func (s *Stage) pollMax() int {
	room := s.cfg.MaxBuffered - s.ws.Buffered()
	return min(max(room/changes.MaxChanges, 1), 10_000)
}

// setShare gives this member the fraction of the app's budget that its
// partitions are of the changes topic: the shares of the group's members
// never sum above one, since a partition is owned by one member at a time
// (a revoked partition's share is given up before the next owner takes it).
// With lending, the write budget's pool then lends what the member does
// not use and borrows what it lacks (package lending).
func (s *Stage) setShare(owned int) {
	f := float64(owned) / float64(s.cfg.Partitions)
	if s.writes != nil {
		s.writes.SetShare(f)
	}
	if s.deps.Reads != nil {
		s.deps.Reads.SetShare(f)
	}
}

// forget drops partitions: what the sink knows of their lists, their
// changes in the windows and the flights holding some (cancelled and
// waited for), and their commit bookkeeping.
func (s *Stage) forget(parts map[*commit.Partition]bool) {
	if len(parts) == 0 {
		return
	}
	s.sink.Forget(partitionsOf(parts))
	s.disp.forget(parts)
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

// deadLetter is the sink's DeadLetter: it writes a record Pinterest
// refused for good to the dead-letter topic. The value is the hash, never
// a plaintext identifier.
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
	if err := s.member.Client().ProduceSync(ctx, rec).FirstErr(); err != nil {
		return err
	}
	s.deps.DeadLetters.WithLabelValues("pinterest_rejected").Inc()
	return nil
}

// resume resumes fetching partition p, paused since its assignment.
func (s *Stage) resume(p int32) {
	s.member.Client().ResumeFetchPartitions(map[string][]int32{s.cfg.Topic: {p}})
}

// partitionsOf returns the partition numbers of tracked partitions.
func partitionsOf(parts map[*commit.Partition]bool) map[int32]bool {
	out := make(map[int32]bool, len(parts))
	for p := range parts {
		out[p.Partition] = true
	}
	return out
}
