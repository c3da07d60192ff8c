// Package consumer is pinsync's sync engine: a member of a Kafka consumer
// group that decodes events (package schemas), folds them into per-profile
// state, turns the state's changes into per-list windows, uploads the
// windows to Pinterest (package pinterest), and commits offsets only after
// the uploads that cover them have succeeded.
//
// It does not parse configuration files or serve HTTP; see cmd/pinsync.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// Deps are the engine's collaborators.
type Deps struct {
	// Kafka holds the connection options (seed brokers, TLS, SASL, client
	// id, group options such as the instance id and session timeout). The
	// engine adds the consumer group, topics, callbacks and commit options.
	Kafka []kgo.Opt
	// Pinterest uploads the changes.
	Pinterest Pinterest
	// WriteLimiter is the ads_write budget the Pinterest client waits on;
	// the scheduler reads it so that due windows beyond the budget keep
	// filling instead of queueing. Nil means no budget.
	WriteLimiter *rate.Limiter
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Engine is one member of the sync consumer group. Create it with New and
// run it with Run; an Engine runs once.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	pin   Pinterest
	lim   *rate.Limiter
	dec   *schemas.Decoder
	kopts []kgo.Opt
	now   func() time.Time
	m     *metrics

	auds  *audiences
	tr    *tracker
	ws    *windows
	lists *lists

	cl *kgo.Client
	// uploadCtx outlives the run context so that the shutdown flush can
	// finish; it ends when the grace period does.
	uploadCtx context.Context

	mu       sync.Mutex
	workers  map[partKey]*worker
	joined   bool
	flights  int
	flightWG sync.WaitGroup
	lastErr  error // the last upload error, for status

	commitMu sync.Mutex
	dlqParts int32
}

// New validates cfg and builds an engine.
func New(cfg Config, deps Deps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pinterest == nil {
		return nil, errors.New("consumer: Deps.Pinterest is required")
	}
	cfg = cfg.withDefaults()
	dec, err := schemas.NewDecoder(cfg.Decoder)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer, cfg.FlushInterval)
	if err != nil {
		return nil, err
	}
	ls, err := newLists(deps.Pinterest, cfg.ListNameTemplate)
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
	tr := newTracker()
	return &Engine{
		cfg: cfg, log: log.With("component", "consumer"), pin: deps.Pinterest, lim: deps.WriteLimiter,
		dec: dec, kopts: deps.Kafka, now: now, m: m,
		auds:  newAudiences(cfg.Allow, cfg.Deny, cfg.AdAccount, cfg.AudienceAdAccounts, cfg.AllowAudienceSettings),
		tr:    tr,
		ws:    newWindows(tr, cfg.MaxRecords),
		lists: ls, workers: make(map[partKey]*worker),
	}, nil
}

// Run consumes until ctx ends, then flushes within the shutdown grace,
// commits what was uploaded and leaves the group. It returns nil after a
// clean shutdown.
func (e *Engine) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{}, e.kopts...)
	opts = append(opts,
		kgo.ConsumerGroup(e.cfg.Group),
		kgo.ConsumeTopics(e.cfg.Topics...),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.OnPartitionsAssigned(e.assigned),
		kgo.OnPartitionsRevoked(e.revoked),
		kgo.OnPartitionsLost(e.lost),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	uploadCtx, cancelUploads := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelUploads()
	e.uploadCtx = uploadCtx
	if err := e.prepareTopics(ctx); err != nil {
		return err
	}
	if e.cfg.ControlTopic != "-" {
		c, err := openClaims(ctx, e.kopts, e.cfg.ControlTopic, e.cfg.ClaimTimeout, e.log)
		if err != nil {
			return err
		}
		defer c.close()
		e.lists.claims = c
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	e.cl = cl
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var bgWG sync.WaitGroup
	bgWG.Add(3)
	go func() { defer bgWG.Done(); e.schedule(bg) }()
	go func() { defer bgWG.Done(); e.commitLoop(bg) }()
	go func() { defer bgWG.Done(); e.pollLoop(bg) }()

	e.poll(ctx)

	// Shutdown: stop fetching, flush within the grace period, commit, leave.
	e.log.Info("shutting down: flushing", "grace", e.cfg.ShutdownGrace)
	var errs []error
	parts := e.stopWorkers(nil)
	e.ws.markUrgent(nil)
	graceCtx, cancelGrace := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.ShutdownGrace)
	if !e.waitIdle(graceCtx, parts) {
		errs = append(errs, fmt.Errorf("shutdown: changes still pending after %s; they were not committed and will be replayed", e.cfg.ShutdownGrace))
	}
	if err := e.commit(graceCtx, nil); err != nil {
		errs = append(errs, err)
	}
	cancelGrace()
	cancelUploads()
	// The scheduler stops before the flights are waited for: it would
	// otherwise start new ones (Add concurrent with Wait) that outlive Run.
	stopBG()
	bgWG.Wait()
	e.flightWG.Wait()
	e.mu.Lock()
	e.joined = false
	e.mu.Unlock()
	cl.Close()
	return errors.Join(errs...)
}

// prepareTopics creates the dead-letter and changelog topics when missing
// and learns the dead-letter topic's partition count, before the engine
// joins the group.
func (e *Engine) prepareTopics(ctx context.Context) error {
	acl, err := kgo.NewClient(e.kopts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer acl.Close()
	adm := kadm.NewClient(acl)
	if err := e.prepareChangelog(ctx, adm); err != nil {
		return err
	}
	details, err := adm.ListTopics(ctx, e.cfg.DLQTopic)
	if err != nil {
		return fmt.Errorf("kafka: list topics: %w", err)
	}
	if d, ok := details[e.cfg.DLQTopic]; ok && d.Err == nil {
		e.dlqParts = int32(len(d.Partitions))
		return nil
	}
	resp, err := adm.CreateTopic(ctx, 1, -1, nil, e.cfg.DLQTopic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafka: create dead-letter topic %q: %w", e.cfg.DLQTopic, err)
	}
	e.dlqParts = 1
	return nil
}

// poll fetches records and hands each partition's batch to its worker,
// pausing while the windows hold sync.max_buffered_records.
func (e *Engine) poll(ctx context.Context) {
	for ctx.Err() == nil {
		if !e.credentialsOK(ctx) {
			return
		}
		waited, err := e.ws.waitBelowFn(ctx, e.cfg.MaxBuffered, func() { e.m.fetchPaused.Set(1) })
		if waited {
			e.m.fetchPaused.Set(0)
		}
		if err != nil {
			return
		}
		fetches := e.cl.PollRecords(ctx, min(max(e.cfg.MaxBuffered/10, 100), 10_000))
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				e.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			e.mu.Lock()
			w := e.workers[partKey{p.Topic, p.Partition}]
			e.mu.Unlock()
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

// credentialsOK pauses fetching while Pinterest rejects the credentials
// for good (nothing could be uploaded, so buffering more only costs
// memory); it returns false when ctx ends.
func (e *Engine) credentialsOK(ctx context.Context) bool {
	cr, ok := e.pin.(interface{ CredentialsError() error })
	if !ok || cr.CredentialsError() == nil {
		return true
	}
	e.m.fetchPaused.Set(1)
	defer e.m.fetchPaused.Set(0)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for cr.CredentialsError() != nil {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// assigned starts a worker for each new partition.
func (e *Engine) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.joined = true
	for t, ps := range assigned {
		for _, p := range ps {
			k := partKey{t, p}
			if e.workers[k] != nil {
				continue
			}
			w := e.newWorker(k)
			e.workers[k] = w
			go w.run()
		}
	}
	e.m.assigned.Set(float64(len(e.workers)))
	e.log.Info("partitions assigned", "partitions", fmtParts(assigned))
}

// revoked flushes the revoked partitions' changes within the revoke
// timeout and commits them; what cannot be flushed in time is dropped
// uncommitted, for the next owner to replay. No upload holding their
// changes is in flight when it returns.
func (e *Engine) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	parts := e.stopWorkers(revoked)
	if len(parts) == 0 {
		return
	}
	e.ws.markUrgent(parts)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.RevokeTimeout)
	idle := e.waitIdle(wctx, parts)
	cancel()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.RevokeTimeout)
	if err := e.commit(cctx, parts); err != nil {
		e.log.Warn("commit on revoke failed", "err", err)
	}
	cancel()
	if !idle {
		e.log.Warn("revoke: changes not uploaded in time were dropped uncommitted; the next owner replays them",
			"partitions", fmtParts(revoked), "timeout", e.cfg.RevokeTimeout)
	}
	e.forget(parts)
	e.log.Info("partitions revoked", "partitions", fmtParts(revoked))
}

// lost drops the lost partitions' changes without committing.
func (e *Engine) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	parts := e.stopWorkers(lost)
	e.forget(parts)
	e.log.Warn("partitions lost", "partitions", fmtParts(lost))
}

// forget drops partitions: their changes leave the windows, flights that
// hold them are cancelled and waited for, and their bookkeeping goes.
func (e *Engine) forget(parts map[*partTrack]bool) {
	if len(parts) == 0 {
		return
	}
	for p := range parts {
		e.tr.remove(p)
		e.m.committed.DeleteLabelValues(p.key.topic, strconv.Itoa(int(p.key.partition)))
		e.m.lag.DeleteLabelValues(p.key.topic, strconv.Itoa(int(p.key.partition)))
	}
	// One step: marking their windows urgent first would let the scheduler
	// start a flight of their changes that nobody waits for.
	flights := e.ws.drop(parts)
	for _, f := range flights {
		f.cancel()
	}
	for _, f := range flights {
		<-f.done
	}
}

// stopWorkers stops the workers of the given partitions (all when nil),
// each sealing its open epoch, and returns their trackers.
func (e *Engine) stopWorkers(which map[string][]int32) map[*partTrack]bool {
	e.mu.Lock()
	var ws []*worker
	if which == nil {
		for k, w := range e.workers {
			ws = append(ws, w)
			delete(e.workers, k)
		}
	} else {
		for t, ps := range which {
			for _, p := range ps {
				k := partKey{t, p}
				if w := e.workers[k]; w != nil {
					ws = append(ws, w)
					delete(e.workers, k)
				}
			}
		}
	}
	e.m.assigned.Set(float64(len(e.workers)))
	e.mu.Unlock()
	parts := make(map[*partTrack]bool, len(ws))
	for _, w := range ws {
		close(w.quit)
	}
	for _, w := range ws {
		<-w.done
		parts[w.pt] = true
	}
	return parts
}

// waitIdle waits until none of parts (all tracked when nil) has changes
// pending, or ctx ends. It reports whether they became idle.
func (e *Engine) waitIdle(ctx context.Context, parts map[*partTrack]bool) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		idle := true
		for p := range parts {
			if !e.tr.idle(p) {
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

// commitLoop commits completed epochs periodically.
//
// It also commits as soon as an epoch may have completed, so that a
// replica that dies replays as little as possible.
func (e *Engine) commitLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.exportMembers()
		case <-e.tr.done:
		}
		if err := e.commit(ctx, nil); err != nil && ctx.Err() == nil {
			e.log.Warn("commit failed", "err", err)
		}
	}
}

// exportMembers publishes each audience's count of local members (kept in
// an atomic on the hot path, exported here once a commit interval).
func (e *Engine) exportMembers() {
	for _, a := range e.auds.all() {
		e.m.localMembers.WithLabelValues(a.key).Set(float64(a.members.Load()))
	}
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// commit commits, for the given partitions (every tracked one when nil),
// the next offset of their newest completed epoch.
func (e *Engine) commit(ctx context.Context, parts map[*partTrack]bool) error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	var list []*partTrack
	if parts == nil {
		list = e.tr.snapshot()
	} else {
		for p := range parts {
			list = append(list, p)
		}
	}
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	var done []*partTrack
	var marks []*epochMark
	for _, p := range list {
		last, snaps := e.tr.completed(p)
		snaps = append(p.unwritten, snaps...)
		p.unwritten = nil
		if err := e.writeState(ctx, p, snaps); err != nil {
			// Nothing of this partition is committed until its state is in
			// the changelog; the snapshots wait for the next round.
			p.unwritten = snaps
			if last != nil {
				p.unwrittenMark = last
			}
			e.log.Warn("changelog write failed; commit of the partition waits", "topic", p.key.topic, "partition", p.key.partition, "err", err)
			continue
		}
		if last == nil {
			last, p.unwrittenMark = p.unwrittenMark, nil
		} else {
			p.unwrittenMark = nil
		}
		if last == nil || last.next <= p.committed.Load() {
			continue
		}
		if offsets[p.key.topic] == nil {
			offsets[p.key.topic] = make(map[int32]kgo.EpochOffset)
		}
		offsets[p.key.topic][p.key.partition] = kgo.EpochOffset{Epoch: last.leaderEpoch, Offset: last.next}
		done = append(done, p)
		marks = append(marks, last)
	}
	if len(offsets) == 0 {
		return nil
	}
	var commitErr error
	e.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					commitErr = errors.Join(commitErr, fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, kerr.ErrorForCode(p.ErrorCode)))
				}
			}
		}
	})
	if commitErr != nil {
		return commitErr
	}
	for i, p := range done {
		p.committed.Store(marks[i].next)
		e.m.committed.WithLabelValues(p.key.topic, strconv.Itoa(int(p.key.partition))).Set(float64(marks[i].next))
	}
	e.m.lastCommit.Set(float64(e.now().UnixNano()) / 1e9)
	e.updateLag()
	return nil
}

func (e *Engine) updateLag() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, w := range e.workers {
		hw := w.highWater.Load()
		if hw <= 0 {
			continue
		}
		c := w.pt.committed.Load()
		if c < 0 {
			c = 0
		}
		e.m.lag.WithLabelValues(k.topic, strconv.Itoa(int(k.partition))).Set(float64(max(hw-c, 0)))
	}
}

// schedule dispatches due windows: on a tick, when a window fills, and
// when a flight ends.
func (e *Engine) schedule(ctx context.Context) {
	tick := min(max(e.cfg.FlushInterval/20, 5*time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.ws.wake:
		}
		e.dispatch()
	}
}

// dispatch starts flights for the windows due now, within the write budget
// and the flight limit.
func (e *Engine) dispatch() {
	now := e.now()
	budget := math.Inf(1)
	if e.lim != nil && e.lim.Limit() != rate.Inf {
		budget = math.Floor(e.lim.TokensAt(now))
	}
	e.mu.Lock()
	free := e.cfg.MaxFlights - e.flights
	e.mu.Unlock()
	if free <= 0 {
		return
	}
	buffered, _ := e.ws.stats()
	e.m.buffered.Set(float64(buffered))
	for _, w := range e.ws.due(now, e.cfg.FlushInterval, budget, free) {
		// Workers change windows concurrently: read them under the lock.
		urgent, full := e.ws.kind(w)
		reason := "interval"
		switch {
		case urgent && e.uploadCtx.Err() == nil && e.shuttingDown():
			reason = "shutdown"
		case urgent:
			reason = "revoke"
		case full:
			reason = "full"
		}
		f, ctx := e.ws.take(w, reason, e.uploadCtx)
		e.mu.Lock()
		e.flights++
		e.mu.Unlock()
		e.flightWG.Add(1)
		go e.fly(ctx, f)
	}
}

func (e *Engine) shuttingDown() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.workers) == 0
}

// fly uploads one flight and finishes it.
func (e *Engine) fly(ctx context.Context, f *flight) {
	defer e.flightWG.Done()
	start := e.now()
	addsOK, removesOK, err := e.upload(ctx, f)
	end := e.now()
	cancelled := ctx.Err() != nil // finish cancels ctx
	ok := func(i int) bool {
		if i < len(f.adds) {
			return addsOK
		}
		return removesOK
	}
	failed := err != nil
	e.ws.finish(f, ok, failed, end, e.backoff)
	e.mu.Lock()
	e.flights--
	if failed {
		e.lastErr = err
	}
	e.mu.Unlock()
	outcome := "ok"
	if failed {
		outcome = "error"
		if !cancelled {
			e.log.Warn("upload failed; the window keeps its changes and retries", "audience", e.audKey(f.w.key.aud), "list_type", f.w.key.typ.String(), "records", f.records(), "err", err)
		}
	}
	e.m.flushes.WithLabelValues(f.reason, outcome).Inc()
	e.m.uploadDuration.Observe(end.Sub(start).Seconds())
	if addsOK || removesOK {
		e.observeLatency(f, ok, end)
	}
}

func (e *Engine) audKey(id uint32) string {
	if a := e.auds.get(id); a != nil {
		return a.key
	}
	return ""
}

func (e *Engine) observeLatency(f *flight, ok func(int) bool, end time.Time) {
	endMS := end.UnixMilli()
	for i, m := range f.meta {
		if m.ts > 0 && ok(i) {
			e.m.eventToUpload.Observe(float64(endMS-m.ts) / 1000)
		}
	}
}

// upload sends a flight's adds and removes to its list, creating the list
// with the adds when it does not exist yet.
func (e *Engine) upload(ctx context.Context, f *flight) (addsOK, removesOK bool, err error) {
	a := e.auds.get(f.w.key.aud)
	typ := f.w.key.typ.String()
	listID, created, err := e.lists.ensure(ctx, a, f.w.key, f.adds)
	if created {
		e.m.uploads.WithLabelValues("create", "ok").Inc()
		e.m.perRequest.Observe(float64(len(f.adds)))
		e.m.uploaded.WithLabelValues(a.key, typ, "add").Add(float64(len(f.adds)))
		// A list this flight created holds only its adds: the removals,
		// disjoint from them, have nothing to remove.
		return true, true, err
	}
	if err != nil {
		return false, false, err
	}
	if listID == "" { // no list and nothing to add: removals are moot
		return true, true, nil
	}
	if !addsOK {
		if err := e.uploadOp(ctx, a, f.w.key.typ, listID, pinterest.Add, f.adds); err != nil {
			return false, false, err
		}
		addsOK = true
	}
	if err := e.uploadOp(ctx, a, f.w.key.typ, listID, pinterest.Remove, f.removes); err != nil {
		return addsOK, false, err
	}
	return addsOK, true, nil
}

// uploadOp writes records with op; a batch Pinterest rejects for good is
// bisected and the records it rejects alone are dead-lettered.
func (e *Engine) uploadOp(ctx context.Context, a *audience, typ ident.Type, listID string, o pinterest.Operation, hs []ident.Hash) error {
	if len(hs) == 0 {
		return nil
	}
	label := "add"
	if o == pinterest.Remove {
		label = "remove"
	}
	err := e.pin.UpdateCustomerList(ctx, a.adAccount, listID, o, hs)
	if err == nil {
		e.m.uploads.WithLabelValues(label, "ok").Inc()
		e.m.perRequest.Observe(float64(len(hs)))
		e.m.uploaded.WithLabelValues(a.key, typ.String(), label).Add(float64(len(hs)))
		return nil
	}
	e.m.uploads.WithLabelValues(label, "error").Inc()
	if !rejected(err) {
		return err
	}
	if len(hs) == 1 {
		return e.deadLetterHash(ctx, a, listID, o, hs[0], err)
	}
	mid := len(hs) / 2
	if err := e.uploadOp(ctx, a, typ, listID, o, hs[:mid]); err != nil {
		return err
	}
	return e.uploadOp(ctx, a, typ, listID, o, hs[mid:])
}

// rejected reports whether err is Pinterest refusing the request's content
// for good: neither authentication, permission, rate nor availability.
func rejected(err error) bool {
	var pe *pinterest.Error
	if !errors.As(err, &pe) || pinterest.IsRetryable(err) {
		return false
	}
	return pe.StatusCode != 401 && pe.StatusCode != 403 && pe.StatusCode != 404 && pe.StatusCode != 429
}

// backoff is the wait before a failed window is flushed again.
func (e *Engine) backoff(fails int) time.Duration {
	d := 500 * time.Millisecond << min(fails-1, 7)
	d = min(d, time.Minute)
	return d/2 + rand.N(d/2+1)
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
