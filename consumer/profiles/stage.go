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
// Its rooms: Stage is the group member's stage side (package member runs
// the member itself): it starts a worker per assigned partition and
// commits input offsets. Each worker applies its partition's records to
// the state in offset order (worker.go), writes what they change in the
// partition's transaction (txn.go), hands the epochs it seals to the
// committer (epochs.go), and restores the state when it takes the
// partition (restore.go, changelog.go).
//
// It does not upload anything (package lists).
package profiles

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/member"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
	"github.com/pinsync/pinsync/schemas/ident"
)

// partKey names one partition of one topic.
type partKey struct {
	topic     string
	partition int32
}

// Stage is one member of the input topic's group. Create it with New,
// start it with Start, and stop it with Quiesce, Commit and Close, in that
// order; a Stage runs once.
type Stage struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	auds   *audiences
	member *member.Member[*worker]
	// workers is what the stage hands each worker.
	workers *workerDeps
	pending *pending

	// quiesced is set by Quiesce: a partition assigned afterwards gets no
	// worker (nothing would fetch for it); its next owner reads it.
	quiesced atomic.Bool
	// rewinds are the workers waiting for the poll loop to move their
	// partition's fetch position.
	rewindMu sync.Mutex
	rewinds  []*worker
	// pauses are the workers waiting for the poll loop to pause their
	// partition (see worker.waitRegistry).
	pauses []*worker
	// waits are the partitions waiting for the schema registry.
	waits *registryWaits
	// misKeyed counts the records not keyed by their profile id.
	misKeyed *misKeyed

	commitMu sync.Mutex
	stopBG   context.CancelFunc
	bg       sync.WaitGroup
}

// New validates cfg and builds a stage.
func New(cfg Config, deps Deps) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	events, err := schemas.NewDecoder(cfg.Decoder)
	if err != nil {
		return nil, err
	}
	dec, err := format.NewDecoder(cfg.Format, deps.SchemaRegistry, events)
	if err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	md := deps.Member.WithDefaults("profiles")
	log, now := md.Logger, md.Now
	if deps.DeadLetters == nil {
		deps.DeadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unregistered_dead_letters"}, []string{"reason"})
	}
	auds, err := newAudiences(cfg.Allow, cfg.Deny, cfg.AdAccount, cfg.AudienceAdAccounts, cfg.AllowAudienceSettings)
	if err != nil {
		return nil, err
	}
	s := &Stage{cfg: cfg, log: log, m: m, auds: auds, pending: newPending(m.pending), waits: newRegistryWaits(m), misKeyed: newMisKeyed(m)}
	s.member = member.New(member.Config{Topic: cfg.Topic, Group: cfg.Group, Deps: md}, member.Handler[*worker]{
		Start: s.start, Revoked: s.revoked, Lost: s.lost, Gate: s.gate, Gap: (*worker).lost,
		Max: func() int { return min(max(cfg.MaxPending/10, 100), 10_000) },
	})
	s.workers = &workerDeps{
		cfg: cfg, log: s.log, m: m, dec: dec, auds: auds, codec: codec{auds}, kopts: md.Kafka, now: now,
		deadLetters: deps.DeadLetters, pending: s.pending, client: s.member.Client, rewind: s.rewind, owns: s.owns,
		pause: s.pause, waits: s.waits, misKeyed: s.misKeyed,
	}
	return s, nil
}

// Start joins the group and starts consuming and committing in the
// background. ctx bounds only the start.
func (s *Stage) Start(ctx context.Context) error {
	if err := s.member.Start(ctx); err != nil {
		return fmt.Errorf("profiles: %w", err)
	}
	bg, stop := context.WithCancel(context.Background())
	s.stopBG = stop
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.commitLoop(bg) }()
	go func() { defer s.bg.Done(); s.exportLoop(bg) }()
	return nil
}

// Quiesce stops fetching and ends every partition's open transaction,
// within ctx: afterwards every change of every record read is in the
// changes topic, for the list stage to pass.
func (s *Stage) Quiesce(ctx context.Context) {
	s.stopBG()
	s.member.StopPolling()
	s.quiesced.Store(true)
	for _, w := range s.member.Workers() {
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
		if s.pending.load() == 0 && s.allCommitted() {
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
	for _, w := range s.member.Workers() {
		if w.epochs.waiting() {
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
	for _, w := range s.member.Clear() {
		w.close()
	}
	s.member.Close()
}

// start is the member's Handler.Start: a worker for partition p, which
// restores the partition's state before it resumes its fetching.
func (s *Stage) start(p int32) (*worker, bool) {
	if s.quiesced.Load() {
		return nil, false
	}
	w := newWorker(s.workers, partKey{s.cfg.Topic, p})
	go w.run()
	return w, true
}

// gate is the member's Handler.Gate: between polls it moves the positions
// of the partitions whose workers asked (rewind), then waits while
// MaxPending changes wait for the list stage.
func (s *Stage) gate(ctx context.Context) bool {
	s.rewindMu.Lock()
	ps, rs := s.pauses, s.rewinds
	s.pauses, s.rewinds = nil, nil
	s.rewindMu.Unlock()
	// Pauses first: a worker that paused and asked to read again since
	// the last poll resumes.
	for _, w := range ps {
		w.paused(s.member.Client())
	}
	for _, w := range rs {
		w.rewound(s.member.Client())
	}
	return s.pending.wait(ctx, s.cfg.MaxPending)
}

// rewind asks the poll loop to move w's partition to next (none when
// negative) and resume fetching it, from the poll goroutine and between
// polls: no fetch of the old position is handed out afterwards.
func (s *Stage) rewind(w *worker) {
	s.rewindMu.Lock()
	s.rewinds = append(s.rewinds, w)
	s.rewindMu.Unlock()
	s.member.Wake()
}

// pause asks the poll loop to pause w's partition between polls; no batch
// handed out before is applied (see worker.paused).
func (s *Stage) pause(w *worker) {
	s.rewindMu.Lock()
	s.pauses = append(s.pauses, w)
	s.rewindMu.Unlock()
	s.member.Wake()
}

// revoked is the member's Handler.Revoked: it ends the revoked partitions'
// transactions (their changes and state become durable for the next
// owner), commits what the list stage has passed, and closes their
// producers.
func (s *Stage) revoked(ctx context.Context, ws map[int32]*worker) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RevokeTimeout)
	defer cancel()
	list := make([]*worker, 0, len(ws))
	for _, w := range ws {
		w.stop(rctx, true)
		list = append(list, w)
	}
	if err := s.commit(rctx, list); err != nil {
		s.log.Warn("commit on revoke failed", "err", err)
	}
	s.drop(list)
}

// lost is the member's Handler.Lost: it abandons the lost partitions:
// their open transactions are aborted (the next owner's producer aborts
// them anyway) and nothing is committed.
func (s *Stage) lost(ws map[int32]*worker) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RevokeTimeout)
	defer cancel()
	list := make([]*worker, 0, len(ws))
	for _, w := range ws {
		w.stop(ctx, false)
		list = append(list, w)
	}
	s.drop(list)
}

// drop closes the workers and forgets their pending changes. It holds the
// commit lock: a commit running meanwhile would count the same epochs'
// changes off again.
func (s *Stage) drop(ws []*worker) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	for _, w := range ws {
		w.close()
		s.pending.add(-w.pendingChanges())
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
	resp, err := kadm.NewClient(s.member.Client()).FetchOffsets(ctx, s.cfg.ListsGroup)
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
		for _, w := range s.member.Workers() {
			ws = append(ws, w)
		}
	}
	waiting := false
	for _, w := range ws {
		waiting = waiting || w.epochs.waiting()
	}
	if !waiting {
		s.member.UpdateLag()
		return nil
	}
	down, err := s.downstream(ctx)
	if err != nil {
		return fmt.Errorf("reading the list stage's offsets: %w", err)
	}
	offsets := map[int32]kgo.EpochOffset{}
	var done []*worker
	var epochs []commit.Epoch
	for _, w := range ws {
		e, n, ok := w.epochs.passed(down)
		s.pending.add(-n)
		if !ok || e.Next <= w.Committed() {
			continue
		}
		offsets[w.key.partition] = kgo.EpochOffset{Epoch: e.LeaderEpoch, Offset: e.Next}
		done = append(done, w)
		epochs = append(epochs, e)
	}
	if len(offsets) == 0 {
		return nil
	}
	err = s.member.Commit(ctx, offsets, func() {
		for i, w := range done {
			w.setCommitted(epochs[i].Next)
		}
	})
	if err != nil {
		for i, w := range done {
			w.epochs.retain(epochs[i])
		}
		return err
	}
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
	off := max(w.Committed(), 0)
	err := commit.Owns(ctx, s.member.Client(), w.key.topic, w.key.partition, kgo.EpochOffset{Epoch: -1, Offset: off})
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

// pending counts the changes this member's partitions wrote that the list
// stage has not committed past; polling pauses while it is at the cap. It
// is safe for concurrent use.
type pending struct {
	n      atomic.Int64
	gauge  prometheus.Gauge
	capped atomic.Bool
	// drained is closed and replaced when the count falls.
	mu      sync.Mutex
	drained chan struct{}
}

func newPending(gauge prometheus.Gauge) *pending {
	return &pending{gauge: gauge, drained: make(chan struct{})}
}

func (p *pending) load() int64 { return p.n.Load() }

// add adjusts the count, waking wait when it falls.
func (p *pending) add(n int) {
	p.n.Add(int64(n))
	p.gauge.Set(float64(p.n.Load()))
	if n < 0 {
		p.mu.Lock()
		close(p.drained)
		p.drained = make(chan struct{})
		p.mu.Unlock()
	}
}

// wait blocks while the count is at limit or above, capped meanwhile; it
// returns false when ctx ends.
func (p *pending) wait(ctx context.Context, limit int) bool {
	paused := false
	defer func() {
		if paused {
			p.capped.Store(false)
		}
	}()
	for {
		p.mu.Lock()
		ch := p.drained
		p.mu.Unlock()
		if p.n.Load() < int64(limit) {
			return true
		}
		if !paused {
			paused = true
			p.capped.Store(true)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}
