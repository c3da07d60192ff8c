// Package consumer is pinsync's sync engine: the two stages of every
// pinsync process, joined by the changes topic the way Kafka Streams joins
// two processors through a repartition topic.
//
//   - The profile stage (package profiles) consumes the input topic as the
//     consumer group kafka.group, keyed by profile: it keeps per-profile
//     state and its changelog, and writes each event's list changes to the
//     changes topic keyed by list.
//   - The list stage (package lists) consumes the changes topic as the
//     group "<kafka.group>.lists", keyed by list, so each list has exactly
//     one owner group-wide: it holds the list's window (package
//     lists/window), creates the list once and uploads within its share
//     of the app's write budget (package lists/sink), and commits after
//     the upload.
//
// Each stage's member of its group is a member.Member: the group's
// client, the poll loop and a worker goroutine per partition.
//
// An input offset is committed only once the list stage has committed past
// every change of the records before it (package commit): the input
// group's lag is the end-to-end lag.
//
// With Config.Rekey a third stage (package rekey, the group
// "<kafka.group>.rekey") goes first: it writes the input to the re-keyed
// topic keyed by each payload's profile id, committing the input offsets
// in the same transaction, and the profile stage consumes the re-keyed
// topic instead of the input; the rule above then holds from the re-keyed
// topic.
//
// It does not parse configuration files or serve HTTP; see cmd/pinsync.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/hold"
	"github.com/pinsync/pinsync/consumer/lists"
	"github.com/pinsync/pinsync/consumer/member"
	"github.com/pinsync/pinsync/consumer/membership"
	"github.com/pinsync/pinsync/consumer/profiles"
	"github.com/pinsync/pinsync/consumer/rekey"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/schemas/format"
)

// Pinterest is what the engine needs from the Pinterest API client: what
// the list stage needs. *pinterest.Client implements it.
type Pinterest = lists.Pinterest

// Budget is one category of the app's Pinterest budget (see lists.Budget).
type Budget = lists.Budget

// Deps are the engine's collaborators.
type Deps struct {
	// Kafka holds the connection options (seed brokers, TLS, SASL, client
	// id, group options such as the instance id). The stages add their
	// groups, topics, callbacks and commit options, and the session and
	// rebalance timeouts of Config.
	Kafka []kgo.Opt
	// Pinterest uploads the changes.
	Pinterest Pinterest
	// Writes and Reads are the app's ads_write and ads_read budgets as
	// this process spends them; the list stage sets their shares. Nil
	// means none.
	Writes, Reads Budget
	// Registry is the list registry and Layout the deployment's layout
	// (see control.Layout); with no Registry the engine opens the control
	// topic's own (unless Config.ControlTopic is "-"). A nil Layout beside
	// a Registry leaves the layout unchecked.
	Registry lists.Registry
	Layout   LayoutStore
	// Loans is the control topic the list stage's members lend each other
	// write budget through (package lists/lending); with no Registry the
	// engine uses the control topic it opens. Nil beside a Registry means
	// no lending: each member spends the share its partitions give it.
	Loans  lists.Loans
	Logger *slog.Logger
	// Registerer receives the metrics.
	Registerer prometheus.Registerer
	// Hold, when set, says why both stages must stop fetching (the
	// Pinterest client's Credentials: refused credentials); nil to go on.
	Hold hold.Func
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Leave, when set, is asked once as the engine starts to shut down:
	// true says this process stops for good (its replica is scaled away),
	// and its static members leave both groups as they close, so that the
	// others take their partitions at once instead of after the session
	// timeout. Nil or false keeps a static member's partitions for its
	// instance id until the session timeout (a restart). Dynamic members
	// always leave.
	Leave func(ctx context.Context) bool
	// SchemaRegistry reads the schemas of Config.InputFormat's registry
	// formats (avro, protobuf, json-schema); nil for the others.
	SchemaRegistry *format.Registry
}

// Engine is one pinsync process's share of both stages. Create it with New
// and run it with Run; an Engine runs once.
type Engine struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *sharedMetrics
	now  func() time.Time

	// leaving is the answer of Deps.Leave at shutdown.
	leaving atomic.Bool

	mu       sync.Mutex
	profiles *profiles.Stage
	lists    *lists.Stage
	rekey    *rekey.Stage // with Config.Rekey
	topics   topicLayout

	// watch keeps what the topic watch found (see watchTopics).
	watch topicWatch
}

// New validates cfg and builds an engine. It connects to nothing.
func New(cfg Config, deps Deps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pinterest == nil {
		return nil, errors.New("consumer: Deps.Pinterest is required")
	}
	if k := cfg.InputFormat.Kind; k.Registered() && deps.SchemaRegistry == nil {
		return nil, fmt.Errorf("kafka.schema_registry.url: required for kafka.input_format.kind %s", k)
	}
	cfg = cfg.WithDefaults()
	e := &Engine{cfg: cfg, deps: deps, now: deps.Now}
	if e.now == nil {
		e.now = time.Now
	}
	m, err := newSharedMetrics(deps.Registerer, e.paused, e.outOfGroup, e.halted, e.watch.is, e.unhealthy)
	if err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e.log, e.m = log, m
	return e, nil
}

// paused is 1 while either stage's fetching is paused.
func (e *Engine) paused() float64 {
	if ps, ls := e.stages(); ps != nil && (ps.Paused() || ls.Paused()) {
		return 1
	}
	return 0
}

// outOfGroup is how long a stage's member has been out of its group, in
// seconds (0 before the stages start).
func (e *Engine) outOfGroup(stage string) float64 {
	ps, ls := e.stages()
	if ps == nil || ls == nil {
		return 0
	}
	m := ps.Membership()
	if stage == "lists" {
		m = ls.Membership()
	}
	return m.Out(e.now()).Seconds()
}

// unhealthy is how many partitions of a stage Healthy names.
func (e *Engine) unhealthy(stage string) float64 {
	ps, ls := e.stages()
	if ps == nil || ls == nil {
		return 0
	}
	if stage == "lists" {
		return float64(ls.UnhealthyCount(e.cfg.UnhealthyAfter))
	}
	return float64(ps.UnhealthyCount(e.cfg.UnhealthyAfter))
}

// halted is how many partitions a stage's reader halted for reason.
func (e *Engine) halted(stage, reason string) float64 {
	ps, ls := e.stages()
	if ps == nil || ls == nil {
		return 0
	}
	hs := ps.Halts()
	if stage == "lists" {
		hs = ls.Halts()
	}
	n := 0
	for _, h := range hs {
		if h.Reason == reason {
			n++
		}
	}
	return float64(n)
}

// haltReasons returns the reasons each stage's reader halts a partition
// for (see member.Halt): the label values of pinsync_partitions_halted.
func haltReasons() []struct{ stage, reason string } {
	return []struct{ stage, reason string }{
		{"lists", member.HaltGap},
		{"lists", member.HaltUnknownVersion},
		{"profiles", member.HaltGap},
		{"profiles", member.HaltUnknownVersion},
		{"profiles", member.HaltTopicReset},
		{"profiles", member.HaltStateLost},
	}
}

// Run starts both stages and runs until ctx ends; then it shuts down in
// order within the shutdown grace: the profile stage stops fetching and
// ends its transactions, the list stage flushes what it holds, the profile
// stage commits what the list stage passed, and both close their members:
// a dynamic member leaves its group, a static one only when Deps.Leave
// says the process stops for good. It returns nil after a clean shutdown.
func (e *Engine) Run(ctx context.Context) error {
	reg, layout, loans := e.deps.Registry, e.deps.Layout, e.deps.Loans
	if reg == nil && topicOn(e.cfg.ControlTopic) {
		ct, err := control.Open(ctx, control.Config{Kafka: e.deps.Kafka, Topic: e.cfg.ControlTopic, Logger: e.log})
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped before it started
			}
			return err
		}
		defer ct.Close()
		reg, layout, loans = ct.Registry(), ct, ct
	}
	topics, err := e.prepareTopics(ctx, layout)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	kopts := append(append([]kgo.Opt{}, e.deps.Kafka...),
		kgo.SessionTimeout(e.cfg.SessionTimeout), kgo.RebalanceTimeout(e.cfg.RebalanceTimeout))
	memberDeps := func(stage string, assigned prometheus.Gauge) member.Deps {
		return member.Deps{Kafka: kopts, Hold: e.hold, Commits: e.m.commits(stage), Assigned: assigned, Logger: e.log, Now: e.deps.Now,
			Leave: e.leaving.Load}
	}
	ls, err := lists.New(e.listsConfig(topics), lists.Deps{
		Member: memberDeps("lists", e.m.listPartitions), Pinterest: e.deps.Pinterest, Writes: e.deps.Writes, Reads: e.deps.Reads,
		Loans: loans, Registry: reg, Members: e.members(), Registerer: e.deps.Registerer, DeadLetters: e.m.deadLetters,
	})
	if err != nil {
		return err
	}
	ps, err := profiles.New(e.profilesConfig(topics), profiles.Deps{
		Member: memberDeps("profiles", e.m.assigned), Registerer: e.deps.Registerer, DeadLetters: e.m.deadLetters,
		SchemaRegistry: e.deps.SchemaRegistry,
	})
	if err != nil {
		return err
	}
	var rs *rekey.Stage
	if e.cfg.Rekey {
		if rs, err = rekey.New(e.rekeyConfig(topics), rekey.Deps{Kafka: kopts, Logger: e.log, Registerer: e.deps.Registerer,
			SchemaRegistry: e.deps.SchemaRegistry, Leave: e.leaving.Load, Now: e.deps.Now}); err != nil {
			return err
		}
	}
	if err := ls.Start(ctx); err != nil {
		return err
	}
	if err := ps.Start(ctx); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.ShutdownGrace)
		_ = ls.Close(cctx)
		cancel()
		return err
	}
	if rs != nil {
		if err := rs.Start(ctx); err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.ShutdownGrace)
			ps.Quiesce(cctx)
			ps.Close()
			_ = ls.Close(cctx)
			cancel()
			return err
		}
	}
	e.mu.Lock()
	e.profiles, e.lists, e.rekey, e.topics = ps, ls, rs, topics
	e.mu.Unlock()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		e.watchTopics(ctx, topics)
	}()

	<-ctx.Done()
	<-watched
	e.log.Info("shutting down: flushing", "grace", e.cfg.ShutdownGrace)
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.ShutdownGrace)
	defer cancel()
	if e.deps.Leave != nil && e.deps.Leave(grace) {
		e.leaving.Store(true)
		e.log.Info("stopping for good: both members leave their groups as they close")
	}
	var errs []error
	if rs != nil {
		// First: what it wrote and committed is the profile stage's to
		// read; what it had not is read again by the next member.
		rs.Close(grace)
	}
	ps.Quiesce(grace)
	// The list stage reads what the profile stage's last transactions
	// wrote, then flushes every window once; a third of the grace at most.
	drain, cancelDrain := context.WithTimeout(grace, e.cfg.ShutdownGrace/3)
	ls.Drain(drain)
	cancelDrain()
	if !ps.Commit(grace) {
		errs = append(errs, fmt.Errorf("shutdown: input records whose changes were not uploaded within %s stay uncommitted; the next owner resumes from the state, and their changes are uploaded from the changes topic", e.cfg.ShutdownGrace))
	}
	ps.Close()
	if err := ls.Close(grace); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// members reads a list's members from the changelog, to rebuild it; nil
// without a changelog.
func (e *Engine) members() lists.Members {
	changelog := e.cfg.ChangelogTopic
	if !topicOn(changelog) {
		return nil
	}
	return func(ctx context.Context) (lists.MemberReader, error) {
		return profiles.OpenMemberReader(ctx, e.deps.Kafka, changelog, e.cfg.RebuildMaxBytes)
	}
}

func (e *Engine) listsConfig(t topicLayout) lists.Config {
	c := e.cfg
	return lists.Config{
		Topic: c.ChangesTopic, Partitions: t.changes, Group: c.listsGroup(), DLQTopic: c.DLQTopic, DLQPartitions: t.dlq,
		FlushInterval: c.FlushInterval, CommitInterval: c.CommitInterval, RevokeTimeout: c.RevokeTimeout,
		MaxRecords: c.MaxRecords, MaxBuffered: c.MaxBuffered, MaxBufferedBytes: c.MaxBufferedBytes, MaxFlights: c.MaxFlights,
		ListNameTemplate: c.ListNameTemplate, AudiencePollInterval: c.AudiencePollInterval, ParkedRetry: c.ParkedRetry,
		BudgetLease: c.budgetLease(),
	}
}

// rekeyConfig is the re-key stage's configuration: the profile stage's
// decoder, so that it reads the profile id the profile stage would.
func (e *Engine) rekeyConfig(t topicLayout) rekey.Config {
	c := e.cfg
	return rekey.Config{
		Input: c.Topics[0], Output: c.RekeyTopic(), Partitions: t.input, Group: c.rekeyGroup(), ProfilesGroup: c.Group,
		TransactionalID: rekey.TransactionalID(c.Group, instanceID(e.deps.Kafka)), TransactionTimeout: c.TransactionTimeout,
		Decoder: c.decoder(), Format: c.InputFormat,
	}
}

// instanceID is the group instance id the Kafka options set, or "".
func instanceID(opts []kgo.Opt) string {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return ""
	}
	defer cl.Close()
	if vs := cl.OptValues(kgo.InstanceID); len(vs) == 2 {
		if id, ok := vs[0].(string); ok && vs[1] == true {
			return id
		}
	}
	return ""
}

func (e *Engine) profilesConfig(t topicLayout) profiles.Config {
	c := e.cfg
	changelog := c.ChangelogTopic
	if !topicOn(changelog) {
		changelog = ""
	}
	return profiles.Config{
		Topic: c.ProfileTopic(), Group: c.Group, ChangesTopic: c.ChangesTopic, ChangesPartitions: t.changes,
		ListsGroup: c.listsGroup(), ChangelogTopic: changelog, DLQTopic: c.DLQTopic, DLQPartitions: t.dlq,
		CommitInterval: c.CommitInterval, TransactionTimeout: c.TransactionTimeout, RevokeTimeout: c.RevokeTimeout,
		MaxPending: c.MaxBuffered, MaxIdentifiersPerType: c.MaxIdentifiersPerType, MaxRecordBytes: t.maxRecord,
		Allow: c.Allow, Deny: c.Deny, AdAccount: c.AdAccount, AudienceAdAccounts: c.AudienceAdAccounts,
		AllowAudienceSettings: c.AllowAudienceSettings, Decoder: c.decoder(), Format: c.InputFormat,
	}
}

func (e *Engine) rekeyStage() *rekey.Stage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rekey
}

func (e *Engine) stages() (*profiles.Stage, *lists.Stage) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.profiles, e.lists
}

// Status is a snapshot of what the engine is doing, for /status and the
// status page. It holds no identifier and no secret.
type Status struct {
	// Joined reports that every stage (the re-key stage too, with
	// Config.Rekey) is a member of its group: each
	// holds its group's current generation.
	Joined bool `json:"joined"`
	// Groups are the members' standing in their groups: profiles, lists,
	// and rekey with Config.Rekey.
	Groups   []GroupStatus `json:"groups"`
	Buffered int           `json:"buffered_records"`
	// BufferedBytes is what the list stage's windows hold, counted
	// against sync.max_buffered_bytes.
	BufferedBytes int64  `json:"buffered_bytes"`
	FetchPaused   bool   `json:"fetch_paused"`
	Flights       int    `json:"uploads_in_flight"`
	LastError     string `json:"last_upload_error,omitempty"`
	// Partitions are the input partitions this process's profile stage
	// owns; ListPartitions the changes topic's partitions its list stage
	// owns.
	Partitions     []PartitionStatus `json:"partitions"`
	ListPartitions []PartitionStatus `json:"list_partitions"`
	// PendingChanges are changes the profile stage wrote that the list
	// stage has not committed past.
	PendingChanges int64 `json:"pending_changes"`
	// TopicChanged says which topic is no longer the one the stages
	// started with (see watchTopics): both stages stopped fetching.
	TopicChanged string `json:"topic_changed,omitempty"`
	// Parked names the lists this process owns that wait for a rebuild,
	// their changes dropped: "audience/TYPE (reason)".
	Parked []string `json:"parked_lists,omitempty"`
	// RegistryWaits are the input partitions paused at a record whose
	// schema the schema registry could not tell (it is down): they read
	// on once it answers.
	RegistryWaits []RegistryWait `json:"schema_registry_waits,omitempty"`
	// MisKeyed are, by input partition, the records this process read
	// that are not keyed by their profile id (see profiles.MisKeyed).
	MisKeyed []MisKeyed `json:"mis_keyed,omitempty"`
	// Audiences are the audiences this process knows: as the profile
	// stage sees them (members of its input partitions) and as the list
	// stage owns their lists. Each list appears on its owner only.
	Audiences []AudienceStatus `json:"audiences"`
}

// PartitionStatus describes one owned partition.
type PartitionStatus = lists.PartitionStatus

// RegistryWait is an input partition waiting for the schema registry.
type RegistryWait = profiles.RegistryWait

// MisKeyed counts an input partition's records not keyed by their profile
// id.
type MisKeyed = profiles.MisKeyed

// GroupStatus is one stage's member's standing in its consumer group (see
// package membership).
type GroupStatus struct {
	Stage  string `json:"stage"`
	Group  string `json:"group"`
	Member bool   `json:"member"`
	// OutSince is when the member left its group, or started before it
	// first joined; zero while it is a member.
	OutSince time.Time `json:"out_since,omitzero"`
}

func groupStatus(stage string, m membership.Status) GroupStatus {
	return GroupStatus{Stage: stage, Group: m.Group, Member: m.Member, OutSince: m.OutSince}
}

// AudienceStatus describes one audience and the lists of it this process
// owns.
type AudienceStatus struct {
	Key       string `json:"key"`
	Name      string `json:"name,omitempty"`
	AdAccount string `json:"ad_account_id"`
	Synced    bool   `json:"synced"`
	// LocalMembers is the profiles in the audience on this process's
	// input partitions: the sum over processes is the audience's members.
	LocalMembers int64 `json:"local_members"`
	// LocalRecords is, by list type (EMAIL, IDFA, MAID), the identifiers
	// those members hold: the sum over processes is what each list holds
	// once synced, against which Pinterest's size gives its match rate.
	LocalRecords map[string]int64 `json:"local_records,omitempty"`
	// Lists are the audience's lists this process owns, with figures of
	// the whole list.
	Lists []ListStatus `json:"lists"`
}

// ListStatus describes one Pinterest list its owner holds.
type ListStatus = lists.ListStatus

// Status returns a snapshot of the engine.
func (e *Engine) Status() Status {
	ps, ls := e.stages()
	var st Status
	if ps == nil || ls == nil {
		return st
	}
	pst, lst := ps.Status(), ls.Status()
	st.Joined = pst.Membership.Member && lst.Membership.Member
	st.Groups = []GroupStatus{groupStatus("profiles", pst.Membership), groupStatus("lists", lst.Membership)}
	if rs := e.rekeyStage(); rs != nil {
		m := rs.Membership()
		st.Joined = st.Joined && m.Member
		st.Groups = append(st.Groups, groupStatus("rekey", m))
	}
	st.Buffered, st.BufferedBytes, st.Flights, st.LastError = lst.Buffered, lst.BufferedBytes, lst.Flights, lst.LastError
	st.FetchPaused = pst.FetchPaused || lst.FetchPaused
	st.Partitions, st.ListPartitions = pst.Partitions, lst.Partitions
	st.PendingChanges = pst.Pending
	if err := e.watch.err(); err != nil {
		st.TopicChanged = err.Error()
	}
	st.RegistryWaits = pst.RegistryWaits
	st.MisKeyed = pst.MisKeyed
	byKey := map[string]*AudienceStatus{}
	for _, a := range pst.Audiences {
		byKey[a.Key] = &AudienceStatus{Key: a.Key, Name: a.Name, AdAccount: a.AdAccount, Synced: a.Synced,
			LocalMembers: a.Members, LocalRecords: a.Records}
	}
	for _, l := range lst.Lists {
		if l.Parked != "" {
			st.Parked = append(st.Parked, l.Audience+"/"+l.ListType+" ("+l.Parked+")")
		}
		a := byKey[l.Audience]
		if a == nil {
			a = &AudienceStatus{Key: l.Audience, Name: l.Name, AdAccount: l.AdAccount, Synced: true}
			byKey[l.Audience] = a
		}
		a.Lists = append(a.Lists, l)
	}
	for _, a := range byKey {
		sort.Slice(a.Lists, func(i, j int) bool { return a.Lists[i].ListType < a.Lists[j].ListType })
		st.Audiences = append(st.Audiences, *a)
	}
	sort.Slice(st.Audiences, func(i, j int) bool { return st.Audiences[i].Key < st.Audiences[j].Key })
	return st
}

// Ready reports why the engine is not ready to serve, or nil: every stage
// (the re-key stage too, with Config.Rekey) has joined its group, none has
// been out of its group for longer than the session and rebalance timeouts
// together since (a short rebalance leaves it ready), no input partition
// waits for the schema registry, no partition they own has halted (see
// member.Halt: records lost before they were read, a format it does not
// know), and no topic changed under them (see watchTopics).
func (e *Engine) Ready() error {
	ps, ls := e.stages()
	if ps == nil || ls == nil {
		return errors.New("not started yet")
	}
	if err := e.watch.err(); err != nil {
		return err
	}
	if err := ps.RegistryUnavailable(); err != nil {
		return err
	}
	now, limit := e.now(), e.cfg.SessionTimeout+e.cfg.RebalanceTimeout
	if rs := e.rekeyStage(); rs != nil {
		if err := rs.RegistryUnavailable(); err != nil {
			return fmt.Errorf("re-key stage: %w", err)
		}
		if err := rs.Membership().Ready(now, limit); err != nil {
			return err
		}
	}
	if err := ps.Membership().Ready(now, limit); err != nil {
		return err
	}
	if err := ls.Membership().Ready(now, limit); err != nil {
		return err
	}
	return errors.Join(ps.Halted(), ls.Halted())
}

// Healthy reports whether the engine can make progress on its own: an
// error names the partitions that have failed to start (a restore, the
// fencing of an earlier owner) for longer than UnhealthyAfter. Retrying
// in this process has not helped; a restart may (a new connection, a new
// member).
func (e *Engine) Healthy() error {
	ps, ls := e.stages()
	if ps == nil || ls == nil {
		return nil // starting: readiness says so
	}
	return errors.Join(ps.Unhealthy(e.cfg.UnhealthyAfter), ls.Unhealthy(e.cfg.UnhealthyAfter))
}

// sharedMetrics are the series of both stages that one family holds:
// per-partition commit progress (labelled by stage), the partitions each
// stage owns, whether fetching is paused, dead letters.
type sharedMetrics struct {
	committed      *prometheus.GaugeVec
	lag            *prometheus.GaugeVec
	lastCommit     prometheus.Gauge
	assigned       prometheus.Gauge
	listPartitions prometheus.Gauge
	deadLetters    *prometheus.CounterVec
	// paused, outOfGroup and halted are read from the stages when
	// scraped.
	paused     prometheus.GaugeFunc
	outOfGroup []prometheus.GaugeFunc
	halted     []prometheus.GaugeFunc
	changed    []prometheus.GaugeFunc
	unhealthy  []prometheus.GaugeFunc
}

func newSharedMetrics(reg prometheus.Registerer, paused func() float64, outOfGroup func(stage string) float64,
	halted func(stage, reason string) float64, changed func(topic string) float64,
	unhealthy func(stage string) float64) (*sharedMetrics, error) {
	m := &sharedMetrics{
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_committed_offset", Help: "Next offset committed, per owned partition, by stage: profiles (the input topic), lists (the changes topic).",
		}, []string{"stage", "topic", "partition"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_consumer_lag", Help: "High watermark minus committed offset, per owned partition, by stage: profiles (the input topic: the end-to-end lag), lists (the changes topic).",
		}, []string{"stage", "topic", "partition"}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_last_commit_timestamp_seconds", Help: "Unix time of the last successful commit of input offsets.",
		}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_assigned_partitions", Help: "Input partitions this instance owns (profile stage).",
		}),
		listPartitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_list_partitions", Help: "Partitions of the changes topic this instance owns (list stage): its share of the lists and of the write budget.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_dead_letters_total", Help: "Records sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		paused: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pinsync_fetch_paused", Help: "1 while fetching is paused: sync.max_buffered_records changes wait (in windows, or for the list stage), or Pinterest refused the credentials.",
		}, paused),
	}
	for _, stage := range []string{"profiles", "lists"} {
		m.unhealthy = append(m.unhealthy, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pinsync_partitions_unhealthy", ConstLabels: prometheus.Labels{"stage": stage},
			Help: "Partitions this instance owns whose start (restore, fencing), or whose transactions, have been failing for longer than sync.unhealthy_after, by stage; /healthz names them and answers 503.",
		}, func() float64 { return unhealthy(stage) }))
		m.outOfGroup = append(m.outOfGroup, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pinsync_out_of_group_seconds", ConstLabels: prometheus.Labels{"stage": stage},
			Help: "Seconds this instance's member has been out of its consumer group, by stage (profiles, lists): since it started until it first joined, and from a JoinGroup or the loss of its partitions until its next assignment; 0 while it holds the group's current generation.",
		}, func() float64 { return outOfGroup(stage) }))
	}
	for _, h := range haltReasons() {
		m.halted = append(m.halted, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pinsync_partitions_halted", ConstLabels: prometheus.Labels{"stage": h.stage, "reason": h.reason},
			Help: "Partitions this instance owns whose reader stopped, by stage (profiles: the input topic; lists: the changes topic) and reason (gap: records deleted before they were read; unknown_version: a record of a format this version does not read; topic_reset: the input no longer holds the restored position; state_lost: the changelog lost a consumed partition's state); nothing past the point is committed. /readyz names them.",
		}, func() float64 { return halted(h.stage, h.reason) }))
	}
	for _, topic := range watchedTopics {
		m.changed = append(m.changed, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pinsync_topic_changed", ConstLabels: prometheus.Labels{"topic": topic},
			Help: "1 once a topic (input, changes, changelog) is no longer the one this instance's stages started with: another partition count, deleted, or deleted and created again; both stages stopped fetching. /readyz says why.",
		}, func() float64 { return changed(topic) }))
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.committed, m.lag, m.lastCommit, m.assigned, m.listPartitions, m.deadLetters, m.paused}
	for _, g := range slices.Concat(m.outOfGroup, m.halted, m.changed, m.unhealthy) {
		cs = append(cs, g)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// commits returns the commit series of a stage; only the profile stage's
// commits are the end-to-end progress that the last-commit time reports.
func (m *sharedMetrics) commits(stage string) commit.Metrics {
	l := prometheus.Labels{"stage": stage}
	cm := commit.Metrics{Committed: m.committed.MustCurryWith(l), Lag: m.lag.MustCurryWith(l)}
	if stage == "profiles" {
		cm.LastCommit = m.lastCommit
	}
	return cm
}
