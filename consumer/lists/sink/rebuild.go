package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// A list is rebuilt when it no longer holds exactly its audience: Pinterest
// answered 404 for it (deleted in Ads Manager), the token's user lost its
// role on the ad account (403: the audience is parked until the role is
// back), or an operator asked (pinsync resync). Pinterest cannot list a
// list's members or delete a list, but the profile state knows every
// member, so a rebuild makes a new list:
//
//  1. The list is durably marked in the registry (control.ListEntry.Rebuild);
//     from then on its changes are dropped as they arrive and committed,
//     so that nothing else waits for it.
//  2. When Pinterest may take writes for it (a parked account is checked
//     every ParkedRetry), its changes are kept again, without flushing, and
//     the members are read from the profile state (Members), which stands
//     after every change read before (see profiles.Members).
//  3. A new list named after the old with a generation suffix is created
//     holding exactly those members, the CUSTOMER_LIST audience is repointed
//     to it (campaigns follow), the registry records the new ids and the
//     old list as retired, and the kept changes are flushed to the new list.
//
// A failed attempt drops what it kept and is tried again later: the mark
// stays until a rebuild succeeds, on this owner or the next.

// rebuildError is returned by the resolver for a list the registry marks
// for a rebuild.
type rebuildError struct{ reason string }

func (e *rebuildError) Error() string {
	return "lists: the list waits for a rebuild (" + e.reason + ")"
}

// rebuildReason says whether err means the list must be rebuilt, and why
// ("" when it does not).
func rebuildReason(err error) string {
	var re *rebuildError
	if errors.As(err, &re) {
		return re.reason
	}
	switch pinterest.Classify(err) {
	case pinterest.ClassNotFound:
		return control.RebuildNotFound
	case pinterest.ClassPermission:
		return control.RebuildPermission
	}
	if refusedResolution(err) {
		return control.RebuildRefused
	}
	return ""
}

// waitsForPinterest reports a reason whose cause only Pinterest's side
// removes (a role given back, a refusal lifted): its attempts are spaced
// by the retry interval, not by the backoff.
func waitsForPinterest(reason string) bool {
	return reason == control.RebuildPermission || reason == control.RebuildRefused
}

// rebuildState is what the rebuilder knows of a list that waits for a
// rebuild. Guarded by rebuilder.mu.
type rebuildState struct {
	// reason is why the list waits for a rebuild.
	reason string
	since  time.Time
	// at is when the next attempt may start; running is set while one
	// runs, cancel ends it.
	at      time.Time
	fails   int
	running bool
	cancel  context.CancelFunc
	lastErr string
}

// rebuildTick is how often the sink looks for lists to rebuild.
const rebuildTick = time.Second

// maxRebuildBatch is the most lists one read of the changelog rebuilds.
const maxRebuildBatch = 64

// rebuildTimeout bounds one attempt: reading the changelog, and making
// and filling the list within the write budget.
const rebuildTimeout = 15 * time.Minute

// rebuilder parks the lists Pinterest can no longer write and rebuilds
// them from the profile state (see the comment at the top of this file).
// Its methods are safe for concurrent use.
type rebuilder struct {
	reg     Registry
	members Members
	make    ListMaker
	write   ListWriter
	res     *resolver
	dir     *directory
	// part places lists in the changes topic's partitions (for the
	// rebuild loop only: it is not safe for concurrent use).
	part       *changes.Partitioner
	owned      Owned
	setMode    func(window.ListID, window.Mode)
	guard      Guard
	backoff    func(fails int) time.Duration
	maxRecords int
	retry      time.Duration // Config.ParkedRetry
	m          *metrics
	log        *slog.Logger
	now        func() time.Time

	mu sync.Mutex
	// waiting are the lists that wait for a rebuild.
	waiting map[*list]*rebuildState
	// quiesced is set once the member shuts down: no attempt starts.
	quiesced bool
}

// state returns why li waits for a rebuild ("" when it does not), since
// when, and what its last attempt met.
func (rb *rebuilder) state(li *list) (reason string, since time.Time, lastErr string) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if st := rb.waiting[li]; st != nil {
		return st.reason, st.since, st.lastErr
	}
	return "", time.Time{}, ""
}

// mark durably marks li for a rebuild and drops its changes: those
// waiting now and those read until the rebuild starts. The registry mark
// comes first: once the changes are committed, only it says the list is
// behind.
func (rb *rebuilder) mark(ctx context.Context, li *list, reason string) error {
	if rb.reg == nil {
		return errors.New("lists: without a control topic (kafka.control_topic \"-\") a list cannot be parked: its changes wait until Pinterest takes them")
	}
	e, err := rb.reg.Update(ctx, li.registryKey(), func(cur control.ListEntry, ok bool) (control.ListEntry, error) {
		if err := rb.guard.check(ctx, li); err != nil {
			return cur, err
		}
		if !ok {
			ids := li.ids()
			cur = control.ListEntry{CustomerListID: ids.listID, AudienceID: ids.audienceID, Name: ids.name}
		}
		cur.Rebuild = reason
		return cur, nil
	})
	if err != nil {
		return fmt.Errorf("list registry: %w", err)
	}
	// Pinterest has just refused the role: no use asking again at once.
	var wait time.Duration
	if waitsForPinterest(reason) {
		wait = rb.retry
	}
	rb.pend(li, reason, e, wait)
	return nil
}

// pend records in memory that li waits for a rebuild (the registry says
// so already), the first attempt after wait, and drops its changes.
func (rb *rebuilder) pend(li *list, reason string, e control.ListEntry, wait time.Duration) {
	now := rb.now()
	rb.mu.Lock()
	fresh := rb.waiting[li] == nil
	if fresh {
		rb.waiting[li] = &rebuildState{reason: reason, since: now, at: now.Add(wait)}
	}
	rb.mu.Unlock()
	if fresh {
		li.setGeneration(e.Generation, e.Retired)
		rb.setMode(li.id, window.ModeDrop)
		rb.m.parked.WithLabelValues(li.key.Audience, li.key.Type.String(), reason).Set(1)
		rb.log.Warn("list parked: its changes are dropped until it is rebuilt from the profile state",
			"audience", li.key.Audience, "list_type", li.key.Type.String(), "ad_account", li.adAccount(), "reason", reason)
	}
}

// run starts the rebuilds that are due, one batch at a time, until ctx
// ends: each batch reads the whole changelog once.
func (rb *rebuilder) run(ctx context.Context) {
	if rb.reg == nil {
		return
	}
	t := time.NewTicker(rebuildTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rb.adopt()
		if lis := rb.due(maxRebuildBatch); len(lis) > 0 {
			rb.attempt(ctx, lis)
		}
	}
}

// adopt takes up the registry's marks on lists of the partitions this
// member owns: marked by an earlier owner, by pinsync resync, or before a
// restart.
func (rb *rebuilder) adopt() {
	owned := rb.owned()
	for k, e := range rb.reg.Rebuilds() {
		l := changes.List{Type: k.Type, Audience: k.Audience}
		p := rb.part.Partition(l.AppendKey(nil))
		if !owned[p] {
			continue
		}
		li := rb.dir.intern(l, changes.Header{AdAccount: k.AdAccount}, p)
		if li.adAccount() != k.AdAccount {
			continue // a list of the audience in another account: not this one's
		}
		// Marked before this member took the list (a restart, a fixed
		// configuration): tried at once.
		rb.pend(li, e.Rebuild, e, 0)
	}
}

// due returns up to max owned lists whose rebuild may start now, marking
// them running.
func (rb *rebuilder) due(max int) []*list {
	now := rb.now()
	owned := rb.dir.of(rb.owned())
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.quiesced {
		return nil
	}
	var out []*list
	for _, li := range owned {
		if len(out) == max {
			break
		}
		if st := rb.waiting[li]; st != nil && !st.running && !now.Before(st.at) {
			st.running = true
			out = append(out, li)
		}
	}
	return out
}

// attempt runs one attempt to rebuild each of lis, from one read of the
// profile state, and records each one's outcome. An attempt counts as
// running until its outcome is recorded: stop returns after that.
func (rb *rebuilder) attempt(ctx context.Context, lis []*list) {
	ctx, cancel := context.WithTimeout(ctx, rebuildTimeout)
	defer cancel()
	rb.mu.Lock()
	for _, li := range lis {
		rb.waiting[li].cancel = cancel
	}
	rb.mu.Unlock()
	start := rb.now()
	// Those Pinterest takes writes for keep their new changes aside from
	// now on: the state read next stands after every change read before.
	var ready []*list
	var keys []changes.List
	curs := map[*list]control.ListEntry{}
	access := map[string]error{} // by ad account
	for _, li := range lis {
		cur, err := rb.prepare(ctx, li, access)
		if err != nil {
			rb.finish(ctx, li, 0, control.ListEntry{}, err, start)
			continue
		}
		ready, curs[li] = append(ready, li), cur
		keys = append(keys, li.key)
	}
	if len(ready) == 0 {
		return
	}
	// Without a profile state (the changelog is off) there is nothing to
	// rebuild from: the list resumes (see resume).
	var members map[changes.List][]ident.Hash
	var err error
	if rb.members != nil {
		if members, err = rb.members(ctx, keys); err != nil {
			err = fmt.Errorf("reading the audience's members from the profile state: %w", err)
		}
	}
	for _, li := range ready {
		if err != nil {
			rb.finish(ctx, li, 0, control.ListEntry{}, err, start)
			continue
		}
		if rb.members == nil {
			e, rerr := rb.resume(ctx, li)
			rb.finish(ctx, li, 0, e, rerr, start)
			continue
		}
		hashes := members[li.key]
		e, berr := rb.build(ctx, li, curs[li], hashes)
		rb.finish(ctx, li, len(hashes), e, berr, start)
	}
}

// prepare checks that Pinterest takes writes for li (once per ad account
// of a batch), reads its registry entry and keeps its new changes aside.
func (rb *rebuilder) prepare(ctx context.Context, li *list, access map[string]error) (control.ListEntry, error) {
	acct := li.adAccount()
	err, checked := access[acct]
	if !checked {
		err = rb.make.CheckWriteAccess(ctx, acct)
		access[acct] = err
	}
	if err != nil {
		return control.ListEntry{}, err
	}
	cur, _, err := rb.reg.Lookup(ctx, li.registryKey())
	if err != nil {
		return control.ListEntry{}, fmt.Errorf("list registry: %w", err)
	}
	rb.setMode(li.id, window.ModeHold)
	return cur, nil
}

// finish records the outcome of li's attempt: the list syncs again, or
// its kept changes go and the next attempt is scheduled.
func (rb *rebuilder) finish(ctx context.Context, li *list, n int, e control.ListEntry, err error, start time.Time) {
	now := rb.now()
	typ := li.key.Type.String()
	if err != nil {
		// What was kept aside goes: the mark stays, the next attempt
		// reads the state again.
		rb.setMode(li.id, window.ModeDrop)
		rb.m.rebuilds.WithLabelValues("error").Inc()
	} else {
		outcome := "ok"
		if rb.members == nil {
			outcome = "partial"
		}
		rb.m.rebuilds.WithLabelValues(outcome).Inc()
		rb.m.parked.DeletePartialMatch(map[string]string{"audience": li.key.Audience, "list_type": typ})
	}
	if err == nil {
		li.setGeneration(e.Generation, e.Retired)
		rb.mu.Lock()
		delete(rb.waiting, li)
		rb.mu.Unlock()
		rb.log.Info("list rebuilt from the profile state", "audience", li.key.Audience, "list_type", typ,
			"customer_list", e.CustomerListID, "audience_id", e.AudienceID, "generation", e.Generation,
			"retired", e.Retired, "records", n, "took", now.Sub(start).Round(time.Millisecond))
		return
	}
	rb.mu.Lock()
	st := rb.waiting[li]
	st.fails++
	st.lastErr = err.Error()
	if r := rebuildReason(err); waitsForPinterest(r) {
		st.reason = r
	}
	wait := min(rb.backoff(st.fails), rb.retry)
	if waitsForPinterest(st.reason) {
		wait = rb.retry
	}
	st.at = now.Add(wait)
	reason := st.reason
	rb.mu.Unlock()
	// The reason may have become permission.
	rb.m.parked.DeletePartialMatch(map[string]string{"audience": li.key.Audience, "list_type": typ})
	rb.m.parked.WithLabelValues(li.key.Audience, typ, reason).Set(1)
	rb.mu.Lock()
	st.running, st.cancel = false, nil
	rb.mu.Unlock()
	if ctx.Err() == nil {
		rb.log.Warn("list rebuild failed; it is tried again", "audience", li.key.Audience, "list_type", typ,
			"reason", reason, "err", err)
	}
}

// partial reports that lists cannot be rebuilt from the profile state:
// the changelog is off (nothing to read the members from), or the control
// topic (nothing to mark a list in durably while its changes are dropped).
func (rb *rebuilder) partial() bool { return rb.members == nil || rb.reg == nil }

// recreate makes li, deleted at Pinterest, be created again by its next
// add, when lists cannot be rebuilt (partial): the new list holds only the
// members added from then on, and its audience is repointed to it. The
// registry, when there is one, records the deleted list as retired.
func (rb *rebuilder) recreate(ctx context.Context, li *list) error {
	old := li.ids().listID
	if rb.reg != nil {
		_, err := rb.reg.Update(ctx, li.registryKey(), func(cur control.ListEntry, _ bool) (control.ListEntry, error) {
			if err := rb.guard.check(ctx, li); err != nil {
				return cur, err
			}
			if cur.CustomerListID == old {
				cur.CustomerListID = ""
			}
			if !slices.Contains(cur.Retired, old) {
				cur.Retired = append(slices.Clone(cur.Retired), old)
			}
			return cur, nil
		})
		if err != nil {
			return fmt.Errorf("list registry: %w", err)
		}
	}
	rb.res.dropList(li)
	rb.m.rebuilds.WithLabelValues("partial").Inc()
	rb.log.Warn("list deleted at Pinterest; without a changelog and a control topic it cannot be rebuilt from the profile state: a new list is made, holding only the members added from now on",
		"audience", li.key.Audience, "list_type", li.key.Type.String(), "customer_list", old)
	return nil
}

// resume ends the wait of a list parked where there is no profile state
// to rebuild it from (the changelog is off): Pinterest takes writes for it
// again, and it carries on as it is, missing the changes dropped while it
// was parked. A list gone at Pinterest is made again by its next write
// (recreate).
func (rb *rebuilder) resume(ctx context.Context, li *list) (control.ListEntry, error) {
	name, err := rb.res.name(li)
	if err != nil {
		return control.ListEntry{}, err
	}
	e, err := rb.reg.Update(ctx, li.registryKey(), func(cur control.ListEntry, _ bool) (control.ListEntry, error) {
		if err := rb.guard.check(ctx, li); err != nil {
			return cur, err
		}
		cur.Rebuild = ""
		if cur.Name == "" {
			cur.Name = name // a list never made: the entry says what to make
		}
		return cur, nil
	})
	if err != nil {
		return control.ListEntry{}, fmt.Errorf("list registry: %w", err)
	}
	li.setIDs(listIDs{name: e.Name, listID: e.CustomerListID, audienceID: e.AudienceID})
	rb.setMode(li.id, window.ModeSync)
	rb.log.Warn("parked list resumed without a profile state (kafka.changelog_topic is \"-\"): it misses the changes dropped while it was parked",
		"audience", li.key.Audience, "list_type", li.key.Type.String())
	return e, nil
}

// build makes li's new list holding hashes, cur being its registry entry
// (see the comment at the top of this file), and returns the registry
// entry it wrote.
func (rb *rebuilder) build(ctx context.Context, li *list, cur control.ListEntry, hashes []ident.Hash) (control.ListEntry, error) {
	acct := li.adAccount()
	k := li.registryKey()
	base := baseName(cur.Name)
	if base == "" {
		var err error
		if base, err = rb.res.name(li); err != nil {
			return control.ListEntry{}, err
		}
	}
	e := control.ListEntry{AudienceID: cur.AudienceID, Generation: cur.Generation + 1, Retired: slices.Clone(cur.Retired)}
	e.Name = base + " #" + strconv.Itoa(e.Generation)
	if cur.CustomerListID != "" {
		e.Retired = append(e.Retired, cur.CustomerListID)
	}
	ctx = rb.guard.on(ctx, li)
	if len(hashes) > 0 {
		// The list is made with one request's worth, and recorded as
		// retired (the mark stays) before it is filled: if this attempt
		// fails, or its owner dies, the next attempt leaves it and makes
		// another. Success records it as the list.
		first := hashes[:min(len(hashes), rb.maxRecords)]
		cl, err := rb.make.CreateCustomerList(ctx, acct, e.Name, li.key.Type, first)
		if cl.ID == "" {
			return control.ListEntry{}, err
		}
		_, rerr := rb.reg.Update(ctx, k, func(now control.ListEntry, _ bool) (control.ListEntry, error) {
			if err := rb.guard.check(ctx, li); err != nil {
				return now, err
			}
			if !slices.Contains(now.Retired, cl.ID) {
				now.Retired = append(slices.Clone(now.Retired), cl.ID)
			}
			now.Generation = max(now.Generation, e.Generation) // the next attempt's name is its own
			return now, nil
		})
		if rerr != nil {
			return control.ListEntry{}, fmt.Errorf("list registry: %w", rerr)
		}
		if err != nil {
			return control.ListEntry{}, err
		}
		rb.m.uploads.WithLabelValues("create", "ok").Inc()
		if err := rb.write.UpdateCustomerList(ctx, acct, cl.ID, pinterest.Add, hashes[len(first):]); err != nil {
			return control.ListEntry{}, err
		}
		e.CustomerListID = cl.ID
		au, err := rb.res.followList(ctx, acct, e.Name, e.AudienceID, cl.ID)
		if err != nil {
			return control.ListEntry{}, err
		}
		e.AudienceID = au.ID
		li.setAudience(au)
	}
	// With no member there is no list to make (Pinterest needs a record
	// to create one): the next add creates it and repoints the audience.
	written, err := rb.reg.Update(ctx, k, func(now control.ListEntry, _ bool) (control.ListEntry, error) {
		if err := rb.guard.check(ctx, li); err != nil {
			return now, err
		}
		next := e
		for _, id := range now.Retired { // lists an attempt left behind meanwhile
			if id != next.CustomerListID && !slices.Contains(next.Retired, id) {
				next.Retired = append(next.Retired, id)
			}
		}
		return next, nil
	})
	if err != nil {
		return control.ListEntry{}, fmt.Errorf("list registry: %w", err)
	}
	e = written
	li.setIDs(listIDs{name: e.Name, listID: e.CustomerListID, audienceID: e.AudienceID})
	rb.setMode(li.id, window.ModeSync)
	rb.m.countUploaded(li, "add", len(hashes))
	return e, nil
}

// generationSuffix is what a rebuild appends to a list's name.
var generationSuffix = regexp.MustCompile(` #[0-9]+$`)

// baseName is a list name without its generation suffix.
func baseName(name string) string { return generationSuffix.ReplaceAllString(name, "") }

// quiesce starts no attempt from now on: the member is shutting down.
func (rb *rebuilder) quiesce() {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.quiesced = true
}

// stop cancels the rebuilds of lists of the given partitions (all when
// nil) and waits until none runs.
func (rb *rebuilder) stop(parts map[int32]bool) {
	for {
		running := false
		rb.mu.Lock()
		for li, st := range rb.waiting {
			if parts != nil && !parts[li.partition] {
				continue
			}
			if st.running {
				running = true
				if st.cancel != nil {
					st.cancel()
				}
			}
		}
		rb.mu.Unlock()
		if !running {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// forget drops what this member knew of the rebuilds of lists of the
// given partitions: their next owner takes them up from the registry.
func (rb *rebuilder) forget(parts map[int32]bool) {
	for _, li := range rb.dir.of(parts) {
		li.setGeneration(0, nil)
		rb.mu.Lock()
		had := rb.waiting[li] != nil
		delete(rb.waiting, li)
		rb.mu.Unlock()
		if had {
			rb.setMode(li.id, window.ModeSync)
			rb.m.parked.DeletePartialMatch(map[string]string{"audience": li.key.Audience, "list_type": li.key.Type.String()})
		}
	}
}
