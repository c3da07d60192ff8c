// Package sink is the Pinterest side of the lists one member of the list
// stage owns, shaped like a Kafka Connect SinkTask: the member hands it
// each flight of a window (Upload) and learns which records reached
// Pinterest; the member alone decides what to commit.
//
//   - The list directory interns each list the member reads changes of,
//     each behind its own methods and lock: its key, partition, Pinterest
//     ids and figures.
//   - Resolution finds or creates each list and its CUSTOMER_LIST audience
//     once: from the list registry, else by name from one listing of the
//     ad account taken after the last assignment, else by creating it
//     with its first adds.
//   - An upload writes a flight's adds, then its removes; a batch
//     Pinterest refuses for good is bisected and the records it refuses
//     alone are handed to the member's DeadLetter.
//   - A list Pinterest can no longer write (404, 403, or pinsync resync)
//     is parked, marked in the registry, and rebuilt from the profile state
//     (see rebuild.go).
//   - The audience poll reads what Pinterest matched of each list.
//
// What crosses into the member is handed in: which partitions it owns
// (Owned), what a list's window does with its changes (SetMode), the
// retry backoff, the dead-letter topic (DeadLetter) and the write Guard.
//
// The Guard is the one deliberate call against the flow, from the
// Pinterest client back up to the member. Every write, whatever it waited
// for (the budget, a token, a retry), runs it just before the request goes
// on the wire, through pinterest.WithWriteGuard: the member checks with
// its group coordinator that it still owns the list's changes partition. A
// member paused past its session timeout (GC, SIGSTOP, a slow node) that
// wakes after its partitions moved must send nothing, and only a check
// made milliseconds before the request can say so; made earlier, here,
// it would go stale while the write waits.
//
// Lock order: no lock of the sink (the directory's, a list's, the
// resolver's, the rebuilder's) is held while it calls the Pinterest
// client, the registry or the member's funcs; the window set's lock is
// never held while the sink is called (package window calls nothing).
//
// It reads no Kafka topic and commits nothing (package lists), and it does
// not talk HTTP itself (package pinterest).
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// Config configures a sink. Every field is required unless its comment
// says otherwise; package lists fills them from its Config.
type Config struct {
	// Partitions is the changes topic's partition count: a list's
	// partition is where its changes go (changes.Partitioner).
	Partitions int
	// MaxRecords is the per-request maximum of records.
	MaxRecords int
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

// Owned returns the changes partitions the member owns now (not those it
// is giving up).
type Owned func() map[int32]bool

// Guard checks that the member still owns changes partition p; an error
// means it does not, or could not say. See the package comment.
type Guard func(ctx context.Context, p int32) error

// check runs g for li's partition (nothing when g is nil): before a
// registry write, as the Pinterest client runs it before a request.
func (g Guard) check(ctx context.Context, li *list) error {
	if g == nil {
		return nil
	}
	return g(ctx, li.partition)
}

// on returns ctx with g as the write guard of li's writes.
func (g Guard) on(ctx context.Context, li *list) context.Context {
	if g == nil {
		return ctx
	}
	return pinterest.WithWriteGuard(ctx, func(ctx context.Context) error { return g(ctx, li.partition) })
}

// Refused is a record Pinterest refused for good, alone in its request.
type Refused struct {
	// Partition is the changes partition of the list.
	Partition int32
	List      changes.List
	// ListID is the customer list written ("" for a creation).
	ListID string
	// Op is the operation refused: ADD or REMOVE.
	Op string
	// Hash is the record: a hash, never a plaintext identifier.
	Hash ident.Hash
	// Code is Pinterest's error code ("" when it gave none).
	Code string
}

// DeadLetter writes a refused record to the dead-letter topic and returns
// once it is durable.
type DeadLetter func(ctx context.Context, r Refused) error

// Members opens a reader of the profile state, to rebuild lists.
type Members func(ctx context.Context) (MemberReader, error)

// MemberReader reads, from the profile state, the hashes of every member
// of lists' audiences, of each list's type, one changelog partition at a
// time, or one key range of one. *profiles.MemberReader implements it.
type MemberReader interface {
	// Partitions are the changelog's partitions.
	Partitions() []int32
	// Read returns the members of lists among the profiles of partition p
	// in key range part of parts; fits false, with nothing, when they
	// pass the reader's bound.
	Read(ctx context.Context, p int32, part, parts int, lists []changes.List) (members map[changes.List][]ident.Hash, fits bool, err error)
	Close()
}

// Deps are the sink's collaborators.
type Deps struct {
	// Pinterest is the API client.
	Pinterest Pinterest
	// Registry keeps list ids across owners; nil means lists are found by
	// name (and cannot be rebuilt).
	Registry Registry
	// Members reads a list's members from the profile state, to rebuild
	// it; nil means lists cannot be rebuilt (they stay parked).
	Members Members
	// Owned, SetMode, Backoff and DeadLetter are the member's; Guard too,
	// nil for none.
	Owned      Owned
	SetMode    func(l window.ListID, m window.Mode)
	Backoff    func(fails int) time.Duration
	DeadLetter DeadLetter
	Guard      Guard
	Logger     *slog.Logger
	// Registerer receives the sink's metrics.
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Sink is the Pinterest side of one member's lists. Create it with New;
// its methods are safe for concurrent use.
type Sink struct {
	dir   *directory
	up    *uploader
	rb    *rebuilder
	poll  *poller
	owned Owned
	m     *metrics
}

// New validates cfg and builds a sink.
func New(cfg Config, deps Deps) (*Sink, error) {
	tmpl, err := parseTemplate(cfg.ListNameTemplate)
	if err != nil {
		return nil, fmt.Errorf("sink: Config.ListNameTemplate: %w", err)
	}
	if cfg.Partitions < 1 || cfg.MaxRecords < 1 || cfg.ParkedRetry <= 0 {
		return nil, errors.New("sink: Config.Partitions, MaxRecords and ParkedRetry are required")
	}
	if deps.Pinterest == nil || deps.Owned == nil || deps.SetMode == nil || deps.Backoff == nil || deps.DeadLetter == nil {
		return nil, errors.New("sink: Deps.Pinterest, Owned, SetMode, Backoff and DeadLetter are required")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	dir := newDirectory()
	res := newResolver(deps.Pinterest, deps.Registry, deps.Guard, tmpl, now, dir.lastAssigned)
	up := &uploader{write: deps.Pinterest, res: res, guard: deps.Guard, deadLetter: deps.DeadLetter, m: m}
	return &Sink{
		dir:   dir,
		owned: deps.Owned,
		m:     m,
		up:    up,
		rb: &rebuilder{
			reg: deps.Registry, members: deps.Members, make: deps.Pinterest, up: up, res: res, dir: dir,
			part: changes.NewPartitioner(cfg.Partitions), owned: deps.Owned, setMode: deps.SetMode, guard: deps.Guard,
			backoff: deps.Backoff, maxRecords: cfg.MaxRecords, retry: cfg.ParkedRetry, m: m, log: log, now: now,
			waiting: make(map[*list]*rebuildState),
		},
		poll: &poller{pin: deps.Pinterest, dir: dir, owned: deps.Owned, interval: cfg.AudiencePollInterval, m: m, log: log},
	}, nil
}

// Intern returns the id of list l, registering it on first sight with the
// header of the record that carried it, in changes partition p. The first
// ad account seen for a list is its account.
func (s *Sink) Intern(l changes.List, h changes.Header, p int32) window.ListID {
	return s.dir.intern(l, h, p).id
}

// Key returns the key of list id.
func (s *Sink) Key(id window.ListID) changes.List { return s.dir.get(id).key }

// Assigned tells the sink that partitions were assigned at now: a listing
// of lists by name taken before may miss a list an earlier owner created.
func (s *Sink) Assigned(now time.Time) { s.dir.assigned(now) }

// Result is what became of an upload.
type Result struct {
	// AddsOK and RemovesOK report that the adds, and the removes, reached
	// Pinterest (or the dead-letter topic).
	AddsOK, RemovesOK bool
	// Err is why the others did not; nil when both went.
	Err error
	// Parked reports that the list was marked for a rebuild (Err says
	// why): its changes, the upload's included, are dropped.
	Parked bool
}

// Upload sends adds and removes to list id, creating the list with the
// adds when it does not exist. When Pinterest says the list can no longer
// be written (deleted, or the role on its account gone), the list is
// parked before Upload returns. The flushes of one window never run
// concurrently: one list is never uploaded to twice at once.
func (s *Sink) Upload(ctx context.Context, id window.ListID, adds, removes []ident.Hash) Result {
	li := s.dir.get(id)
	var r Result
	r.AddsOK, r.RemovesOK, r.Err = s.up.upload(ctx, li, adds, removes)
	if rebuildReason(r.Err) == control.RebuildNotFound && s.rb.partial() && li.ids().listID != "" && ctx.Err() == nil {
		// The list cannot be rebuilt: it is made again by this upload's
		// adds, and holds the members added from now on.
		if err := s.rb.recreate(ctx, li); err != nil {
			r.Err = fmt.Errorf("%w (and making the list again failed: %v)", r.Err, err)
			return r
		}
		r.AddsOK, r.RemovesOK, r.Err = s.up.upload(ctx, li, adds, removes)
	}
	if reason := rebuildReason(r.Err); reason != "" && ctx.Err() == nil {
		// The list cannot take these changes: marked for a rebuild, it
		// drops them (the upload's too) and nothing waits for it.
		parked, err := s.rb.mark(ctx, li, reason)
		if err != nil {
			r.Err = fmt.Errorf("%w (and marking the list for a rebuild failed: %v)", r.Err, err)
		}
		r.Parked = parked
	}
	return r
}

// Run rebuilds the parked lists that are due and polls the owned lists'
// audiences until ctx ends; a rebuild in progress ends with ctx.
func (s *Sink) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { defer close(done); s.poll.run(ctx) }()
	s.rb.run(ctx)
	<-done
}

// Quiesce starts no rebuild from now on: the member is shutting down.
func (s *Sink) Quiesce() { s.rb.quiesce() }

// StopRebuilds cancels the rebuilds of the lists of the given partitions
// (all when nil) and returns once none runs. Their kept changes are
// dropped; their marks in the registry tell the next owner.
func (s *Sink) StopRebuilds(partitions map[int32]bool) { s.rb.stop(partitions) }

// Forget drops what the sink knows of the lists of partitions the member
// no longer owns, their rebuilds stopped first: the next owner takes them
// up from the registry, and reports their series. Should a partition come
// back, its lists' ids are read from the registry again.
func (s *Sink) Forget(partitions map[int32]bool) {
	s.rb.stop(partitions)
	s.rb.forget(partitions)
	lists := s.dir.of(partitions)
	s.m.forget(lists)
	for _, li := range lists {
		li.forget()
	}
}

// Lists describes the lists of the partitions the member owns, with their
// windows' figures, by audience and type; a list that does not exist at
// Pinterest and has nothing pending is left out.
func (s *Sink) Lists(windows map[window.ListID]window.Stat) []ListStatus {
	var out []ListStatus
	for _, li := range s.dir.of(s.owned()) {
		ls := li.snapshot()
		ls.Parked, ls.ParkedSince, ls.RebuildError = s.rb.state(li)
		w := windows[li.id]
		ls.Pending, ls.LastFlush = w.Pending, w.Flushed
		if ls.CustomerListID == "" && ls.Pending == 0 && ls.Parked == "" {
			continue // nothing to add to a list that does not exist
		}
		out = append(out, ls)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Audience < b.Audience || a.Audience == b.Audience && a.ListType < b.ListType
	})
	return out
}

// ListStatus describes one Pinterest list.
type ListStatus struct {
	Audience       string    `json:"audience"`
	Name           string    `json:"audience_name,omitempty"`
	AdAccount      string    `json:"ad_account_id"`
	ListType       string    `json:"list_type"`
	ListName       string    `json:"name,omitempty"`
	CustomerListID string    `json:"customer_list_id,omitempty"`
	AudienceID     string    `json:"audience_id,omitempty"`
	Partition      int32     `json:"partition"`
	Pending        int       `json:"pending_records"`
	LastFlush      time.Time `json:"last_flush,omitzero"`
	PinterestSize  int64     `json:"pinterest_size"`
	PinterestState string    `json:"pinterest_status,omitempty"`
	// ListCreated is when Pinterest created the customer list (read by
	// the audience poll): its size is judged once it has had a day or two.
	ListCreated time.Time `json:"list_created,omitzero"`
	// UploadedAdds and UploadedRemoves count the records this member's
	// writes to the list took since it owns it.
	UploadedAdds    int64 `json:"uploaded_adds"`
	UploadedRemoves int64 `json:"uploaded_removes"`
	// Generation counts the list's rebuilds; Retired are the customer
	// lists earlier generations used.
	Generation int      `json:"generation,omitempty"`
	Retired    []string `json:"retired_customer_list_ids,omitempty"`
	// Parked, when set, says why the list waits for a rebuild, its
	// changes dropped: permission, not_found or requested (see
	// pinsync_list_parked). ParkedSince is since when, RebuildError what
	// the last attempt met.
	Parked       string    `json:"parked,omitempty"`
	ParkedSince  time.Time `json:"parked_since,omitzero"`
	RebuildError string    `json:"rebuild_error,omitempty"`
}
