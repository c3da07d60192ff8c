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
//     every ParkedRetry), the members are read from the profile state
//     (MemberReader) one changelog partition at a time, in key ranges when
//     a partition's members would pass the reader's bound. While a range is
//     read and sent, the list's changes are kept aside without flushing, so
//     that the state read stands after every change read before; between
//     ranges they go to the new list.
//  3. A new list named after the old with a generation suffix is created
//     with the first members and recorded in the registry as the rebuild
//     under way (control.Building), with each changelog partition once its
//     members are in: an attempt that fails, or whose owner dies, is carried
//     on by the next one, on this owner or the next, on the same list.
//  4. Once every partition is in, the CUSTOMER_LIST audience is repointed to
//     the new list (campaigns follow) and the registry records the new ids
//     and the old list as retired.
//
// The mark stays until a rebuild succeeds; attempts that make no progress
// are counted in the registry and stop after maxRebuildAttempts (pinsync
// resync starts the count again).

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
	up      *uploader
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
// waiting now and those read until the rebuild starts (parked). The
// registry mark comes first: once the changes are committed, only it says
// the list is behind. A list whose rebuild is under way is not parked:
// its changes go to the rebuild's list.
func (rb *rebuilder) mark(ctx context.Context, li *list, reason string) (parked bool, err error) {
	if rb.reg == nil {
		return false, errors.New("lists: without a control topic (kafka.control_topic \"-\") a list cannot be parked: its changes wait until Pinterest takes them")
	}
	ids := li.ids()
	e, err := rb.reg.Update(ctx, li.registryKey(), func(cur control.ListEntry, ok bool) (control.ListEntry, error) {
		if err := rb.guard.check(ctx, li); err != nil {
			return cur, err
		}
		if !ok {
			cur = control.ListEntry{CustomerListID: ids.listID, AudienceID: ids.audienceID, Name: ids.name}
		}
		if bl := cur.Building; bl != nil && bl.CustomerListID == ids.listID && reason == control.RebuildNotFound {
			// The rebuild's own list is gone: retired, the next attempt
			// makes another.
			cur.Building = nil
			if !slices.Contains(cur.Retired, ids.listID) {
				cur.Retired = append(slices.Clone(cur.Retired), ids.listID)
			}
		}
		if cur.Rebuild == "" || reason != control.RebuildRequested {
			cur.Rebuild = reason
		}
		return cur, nil
	})
	if err != nil {
		return false, fmt.Errorf("list registry: %w", err)
	}
	// Pinterest has just refused the role: no use asking again at once.
	var wait time.Duration
	if waitsForPinterest(reason) {
		wait = rb.retry
	}
	rb.pend(li, reason, e, wait)
	return e.Building == nil, nil
}

// pend records in memory that li waits for a rebuild (the registry says
// so already, e), the first attempt after wait, and drops its changes;
// unless the rebuild is under way (e.Building): its changes then go to the
// rebuild's list.
func (rb *rebuilder) pend(li *list, reason string, e control.ListEntry, wait time.Duration) {
	now := rb.now()
	rb.mu.Lock()
	fresh := rb.waiting[li] == nil
	if fresh {
		rb.waiting[li] = &rebuildState{reason: reason, since: now, at: now.Add(wait)}
	}
	rb.mu.Unlock()
	if !fresh {
		return
	}
	li.setGeneration(e.Generation, e.Retired)
	rb.m.parked.WithLabelValues(li.key.Audience, li.key.Type.String(), reason).Set(1)
	if e.Building != nil {
		rb.building(li, e)
		rb.setMode(li.id, window.ModeSync)
		rb.log.Warn("list rebuild under way: its changes go to the rebuild's list until it is filled",
			"audience", li.key.Audience, "list_type", li.key.Type.String(), "ad_account", li.adAccount(), "reason", reason,
			"customer_list", e.Building.CustomerListID, "partitions_done", len(e.Building.Done))
		return
	}
	rb.setMode(li.id, window.ModeDrop)
	rb.log.Warn("list parked: its changes are dropped until it is rebuilt from the profile state",
		"audience", li.key.Audience, "list_type", li.key.Type.String(), "ad_account", li.adAccount(), "reason", reason)
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

// attempt runs one attempt to rebuild each of lis, reading the profile
// state once for them all, one changelog partition at a time, and records
// each one's outcome. An attempt counts as running until its outcome is
// recorded: stop returns after that.
func (rb *rebuilder) attempt(ctx context.Context, lis []*list) {
	ctx, cancel := context.WithTimeout(ctx, rebuildTimeout)
	defer cancel()
	rb.mu.Lock()
	for _, li := range lis {
		rb.waiting[li].cancel = cancel
	}
	rb.mu.Unlock()
	start := rb.now()
	var bs []*build
	access := map[string]error{} // by ad account
	for _, li := range lis {
		b, err := rb.prepare(ctx, li, access)
		if err != nil {
			rb.finish(ctx, li, 0, control.ListEntry{}, err, start)
			continue
		}
		if rb.members == nil {
			// No profile state to rebuild from: the list resumes.
			e, err := rb.resume(ctx, li)
			rb.finish(ctx, li, 0, e, err, start)
			continue
		}
		bs = append(bs, b)
	}
	if len(bs) == 0 {
		return
	}
	rd, err := rb.members(ctx)
	if err != nil {
		err = fmt.Errorf("reading the audience's members from the profile state: %w", err)
		for _, b := range bs {
			rb.finish(ctx, b.li, b.records, control.ListEntry{}, err, start)
		}
		return
	}
	defer rd.Close()
	parts := rd.Partitions()
	for _, p := range parts {
		var now []*build
		for _, b := range bs {
			if b.err == nil && !slices.Contains(b.done, p) {
				now = append(now, b)
			}
		}
		if len(now) > 0 {
			rb.fillPartition(ctx, rd, p, len(parts), now)
		}
	}
	for _, b := range bs {
		if b.err != nil {
			rb.finish(ctx, b.li, b.records, control.ListEntry{}, b.err, start)
			continue
		}
		e, err := rb.complete(ctx, b)
		rb.finish(ctx, b.li, b.records, e, err, start)
	}
}

// maxRebuildAttempts is how many attempts in a row may make no progress
// before a rebuild stops being tried: the list stays parked, and
// pinsync resync tries again.
const maxRebuildAttempts = 10

// build is one list's rebuild within an attempt.
type build struct {
	li  *list
	cur control.ListEntry // the registry entry when the attempt started
	// gen and name are the new list's; listID is "" until it is made.
	gen    int
	name   string
	listID string
	// done are the changelog partitions the new list holds the members of.
	done    []int32
	records int
	err     error
}

// prepare checks that Pinterest takes writes for li (once per ad account
// of a batch), and counts the attempt in li's registry entry, whose
// rebuild under way (a list made, partitions filled) it carries on. A
// list with no list made yet keeps its new changes aside from now on: the
// state read next stands after every change read before.
func (rb *rebuilder) prepare(ctx context.Context, li *list, access map[string]error) (*build, error) {
	acct := li.adAccount()
	err, checked := access[acct]
	if !checked {
		err = rb.make.CheckWriteAccess(ctx, acct)
		access[acct] = err
	}
	if err != nil {
		return nil, err
	}
	cur, _, err := rb.reg.Current(ctx, li.registryKey())
	if err != nil {
		return nil, fmt.Errorf("list registry: %w", err)
	}
	if cur.Attempts >= maxRebuildAttempts {
		return nil, fmt.Errorf("%w: %d attempts in a row made no progress; pinsync resync tries again", errGaveUp, cur.Attempts)
	}
	cur, err = rb.reg.Update(ctx, li.registryKey(), func(now control.ListEntry, _ bool) (control.ListEntry, error) {
		if err := rb.guard.check(ctx, li); err != nil {
			return now, err
		}
		now.Attempts++
		return now, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list registry: %w", err)
	}
	rb.m.rebuildAttempts.WithLabelValues(li.key.Audience, li.key.Type.String()).Set(float64(cur.Attempts))
	b := &build{li: li, cur: cur}
	if bl := cur.Building; bl != nil {
		b.gen, b.name, b.listID, b.done = cur.Generation, bl.Name, bl.CustomerListID, slices.Clone(bl.Done)
		rb.building(li, cur)
		return b, nil
	}
	base := baseName(cur.Name)
	if base == "" {
		if base, err = rb.res.name(li); err != nil {
			return nil, err
		}
	}
	b.gen = cur.Generation + 1
	b.name = base + " #" + strconv.Itoa(b.gen)
	rb.setMode(li.id, window.ModeHold)
	return b, nil
}

// errGaveUp says a rebuild is no longer tried.
var errGaveUp = errors.New("lists: rebuild given up")

// fillPartition fills the new lists of bs with their members in changelog
// partition p (one of n), read in as many key ranges as the reader's bound
// needs. While a range is read and its members sent, the lists' changes
// are kept aside: the state read stands after every change read before,
// and the changes read meanwhile are applied on top once its members are
// in. Between ranges, the changes of a list whose new list is made go to
// it. A list whose partition is filled records it in the registry.
func (rb *rebuilder) fillPartition(ctx context.Context, rd MemberReader, p int32, n int, bs []*build) {
	keys := make([]changes.List, len(bs))
	for i, b := range bs {
		keys[i] = b.li.key
	}
	parts := 1
	for part := 0; part < parts; {
		for _, b := range bs {
			rb.setMode(b.li.id, window.ModeHold)
		}
		got, fits, err := rd.Read(ctx, p, part, parts, keys)
		switch {
		case err != nil:
			err = fmt.Errorf("reading the audience's members from changelog partition %d: %w", p, err)
		case !fits:
			parts, part = 2*parts, 0
		default:
			for _, b := range bs {
				if b.err == nil {
					b.err = rb.fill(ctx, b, got[b.li.key])
				}
			}
			part++
		}
		for _, b := range bs {
			if err != nil && b.err == nil {
				b.err = err
			}
			if b.listID != "" && b.err == nil {
				rb.setMode(b.li.id, window.ModeSync)
			}
		}
		if err != nil {
			return
		}
	}
	for _, b := range bs {
		if b.err != nil || b.listID == "" {
			if b.err == nil {
				b.done = append(b.done, p) // nothing made yet: nothing to record
			}
			continue
		}
		b.done = append(b.done, p)
		_, b.err = rb.reg.Update(ctx, b.li.registryKey(), func(now control.ListEntry, _ bool) (control.ListEntry, error) {
			if err := rb.guard.check(ctx, b.li); err != nil {
				return now, err
			}
			if now.Building == nil || now.Building.CustomerListID != b.listID {
				return now, errors.New("lists: the registry no longer holds the rebuild under way")
			}
			bl := *now.Building
			bl.Done = slices.Clone(b.done)
			now.Building, now.Attempts = &bl, 0 // progress
			return now, nil
		})
		if b.err != nil {
			b.err = fmt.Errorf("list registry: %w", b.err)
			continue
		}
		rb.m.rebuildAttempts.WithLabelValues(b.li.key.Audience, b.li.key.Type.String()).Set(0)
		rb.m.rebuildProgress.WithLabelValues(b.li.key.Audience, b.li.key.Type.String()).Set(float64(len(b.done)) / float64(n))
		rb.log.Info("rebuild: a changelog partition's members are in the new list", "audience", b.li.key.Audience,
			"list_type", b.li.key.Type.String(), "partition", p, "partitions_done", len(b.done), "of", n,
			"records", b.records, "key_ranges", parts)
	}
}

// fill adds hashes, members read from the profile state, to b's new list,
// making it with the first ones if it does not exist yet: the list is then
// recorded in the registry as the rebuild under way before anything else.
// Records Pinterest refuses are bisected and dead-lettered like any
// upload's.
func (rb *rebuilder) fill(ctx context.Context, b *build, hashes []ident.Hash) error {
	if len(hashes) == 0 {
		return nil
	}
	li := b.li
	ctx = rb.guard.on(ctx, li)
	if b.listID == "" {
		id, rest, err := rb.create(ctx, b, hashes)
		if err != nil {
			return err
		}
		b.listID, hashes = id, rest
	}
	for len(hashes) > 0 {
		n := min(len(hashes), rb.maxRecords)
		if err := rb.up.send(ctx, li, b.listID, pinterest.Add, hashes[:n]); err != nil {
			if pinterest.Classify(err) == pinterest.ClassNotFound {
				return rb.abandon(ctx, b, err)
			}
			return err
		}
		b.records += n
		hashes = hashes[n:]
	}
	return nil
}

// create makes b's new list with the first of hashes that Pinterest
// takes (a creation refused for its record is tried with the next, up to
// three; the refused one is dead-lettered), records it as the rebuild
// under way, and returns its id and the hashes still to send.
func (rb *rebuilder) create(ctx context.Context, b *build, hashes []ident.Hash) (string, []ident.Hash, error) {
	li := b.li
	for i := 0; i < len(hashes) && i < 3; i++ {
		cl, err := rb.make.CreateCustomerList(ctx, li.adAccount(), b.name, li.key.Type, hashes[i:i+1])
		if cl.ID == "" {
			if pinterest.IsRefused(err) {
				if derr := rb.up.refused(ctx, li, "", pinterest.Add, hashes[i], err); derr != nil {
					return "", nil, derr
				}
				continue
			}
			return "", nil, err
		}
		rb.m.uploads.WithLabelValues("create", "ok").Inc()
		b.records++
		_, rerr := rb.reg.Update(ctx, li.registryKey(), func(now control.ListEntry, _ bool) (control.ListEntry, error) {
			if err := rb.guard.check(ctx, li); err != nil {
				return now, err
			}
			now.Generation = max(now.Generation, b.gen) // the next list's name is its own
			now.Building = &control.Building{CustomerListID: cl.ID, Name: b.name}
			return now, nil
		})
		if rerr != nil {
			return "", nil, fmt.Errorf("list registry: %w", rerr)
		}
		e := b.cur
		e.Building = &control.Building{CustomerListID: cl.ID, Name: b.name}
		rb.building(li, e)
		if err != nil { // a later chunk of the creation failed: sent again
			return cl.ID, hashes[i+1:], err
		}
		return cl.ID, hashes[i+1:], nil
	}
	return "", nil, notOfRecords(fmt.Errorf("the rebuild's list creation is refused for each of its first records"))
}

// building points li's writes to its rebuild's new list (e.Building):
// its changes go there between the changelog partitions' reads.
func (rb *rebuilder) building(li *list, e control.ListEntry) {
	li.setIDs(listIDs{name: e.Building.Name, listID: e.Building.CustomerListID, audienceID: e.AudienceID})
	li.setBuilding(true)
}

// abandon gives up b's new list, gone at Pinterest (cause): it is recorded
// retired, and the next attempt makes another.
func (rb *rebuilder) abandon(ctx context.Context, b *build, cause error) error {
	gone := b.listID
	_, err := rb.reg.Update(ctx, b.li.registryKey(), func(now control.ListEntry, _ bool) (control.ListEntry, error) {
		if err := rb.guard.check(ctx, b.li); err != nil {
			return now, err
		}
		if now.Building != nil && now.Building.CustomerListID == gone {
			now.Building = nil
		}
		if !slices.Contains(now.Retired, gone) {
			now.Retired = append(slices.Clone(now.Retired), gone)
		}
		return now, nil
	})
	b.li.setBuilding(false)
	b.li.setIDs(listIDs{name: b.cur.Name, listID: b.cur.CustomerListID, audienceID: b.cur.AudienceID})
	if err != nil {
		return fmt.Errorf("%w (and retiring it failed: %v)", cause, err)
	}
	return fmt.Errorf("the rebuild's list %s is gone: %w", gone, cause)
}

// complete ends b's rebuild, its list holding every member: the
// CUSTOMER_LIST audience is repointed to the new list (campaigns follow)
// and the registry records it as the list, the old one retired. With no
// member there is no list to make (Pinterest needs a record to create
// one): the next add creates it and repoints the audience. It returns the
// entry written.
func (rb *rebuilder) complete(ctx context.Context, b *build) (control.ListEntry, error) {
	li := b.li
	e := control.ListEntry{AudienceID: b.cur.AudienceID, Name: b.name, Generation: b.gen, CustomerListID: b.listID}
	if b.listID != "" {
		au, err := rb.res.followList(rb.guard.on(ctx, li), li.adAccount(), b.name, b.cur.AudienceID, b.listID)
		if err != nil {
			return control.ListEntry{}, err
		}
		e.AudienceID = au.ID
		li.setAudience(au)
	}
	written, err := rb.reg.Update(ctx, li.registryKey(), func(now control.ListEntry, _ bool) (control.ListEntry, error) {
		if err := rb.guard.check(ctx, li); err != nil {
			return now, err
		}
		next := e
		next.Generation = max(next.Generation, now.Generation)
		next.Retired = slices.Clone(now.Retired)
		if old := now.CustomerListID; old != "" && old != b.listID && !slices.Contains(next.Retired, old) {
			next.Retired = append(next.Retired, old)
		}
		return next, nil
	})
	if err != nil {
		return control.ListEntry{}, fmt.Errorf("list registry: %w", err)
	}
	li.setBuilding(false)
	li.setIDs(listIDs{name: written.Name, listID: written.CustomerListID, audienceID: written.AudienceID})
	rb.setMode(li.id, window.ModeSync)
	return written, nil
}

// finish records the outcome of li's attempt: the list syncs again, or
// its kept changes go and the next attempt is scheduled.
func (rb *rebuilder) finish(ctx context.Context, li *list, n int, e control.ListEntry, err error, start time.Time) {
	now := rb.now()
	typ := li.key.Type.String()
	if err != nil {
		// A list with a rebuild under way takes its changes on; otherwise
		// what was kept aside goes: the mark stays, the next attempt reads
		// the state again.
		if li.isBuilding() {
			rb.setMode(li.id, window.ModeSync)
		} else {
			rb.setMode(li.id, window.ModeDrop)
		}
		rb.m.rebuilds.WithLabelValues("error").Inc()
	} else {
		outcome := "ok"
		if rb.members == nil {
			outcome = "partial"
		}
		rb.m.rebuilds.WithLabelValues(outcome).Inc()
		rb.m.parked.DeletePartialMatch(map[string]string{"audience": li.key.Audience, "list_type": typ})
		rb.m.rebuildAttempts.DeleteLabelValues(li.key.Audience, typ)
		rb.m.rebuildProgress.DeleteLabelValues(li.key.Audience, typ)
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
