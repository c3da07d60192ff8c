package lists

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
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

// Members reads, from the profile state, the hashes of every member of
// each list's audience of the list's type, in one read. profiles.Members
// implements it.
type Members func(ctx context.Context, lists []changes.List) (map[changes.List][]ident.Hash, error)

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
	return ""
}

// rebuildState is what the stage knows of a list's rebuild. Guarded by
// listInfo.mu.
type rebuildState struct {
	// reason is why the list waits for a rebuild; "" when it does not.
	reason string
	since  time.Time
	// at is when the next attempt may start; running is set while one
	// runs, cancel ends it.
	at      time.Time
	fails   int
	running bool
	cancel  context.CancelFunc
	lastErr string
	// generation and retired are the registry's, for the status.
	generation int
	retired    []string
}

func (li *listInfo) rebuildReason() string {
	li.mu.Lock()
	defer li.mu.Unlock()
	return li.rb.reason
}

// registryKey is li's key in the list registry.
func registryKey(li *listInfo) control.ListKey {
	return control.ListKey{AdAccount: li.adAccount(), Audience: li.key.Audience, Type: li.key.Type}
}

// markRebuild durably marks li for a rebuild and drops its changes: those
// waiting now and those read until the rebuild starts. The registry mark
// comes first: once the changes are committed, only it says the list is
// behind.
func (s *Stage) markRebuild(ctx context.Context, li *listInfo, reason string) error {
	if s.deps.Registry == nil {
		return errors.New("lists: no registry to mark the list for a rebuild")
	}
	k := registryKey(li)
	e, ok, err := s.deps.Registry.Lookup(ctx, k)
	if err != nil {
		return fmt.Errorf("list registry: %w", err)
	}
	if !ok {
		ids := li.ids()
		e = control.ListEntry{CustomerListID: ids.listID, AudienceID: ids.audienceID, Name: ids.name}
	}
	e.Rebuild = reason
	if err := s.deps.Registry.Record(ctx, k, e); err != nil {
		return fmt.Errorf("list registry: %w", err)
	}
	// Pinterest has just refused the role: no use asking again at once.
	var wait time.Duration
	if reason == control.RebuildPermission {
		wait = s.cfg.ParkedRetry
	}
	s.pendRebuild(li, reason, e, wait)
	return nil
}

// pendRebuild records in memory that li waits for a rebuild (the registry
// says so already), the first attempt after wait, and drops its changes.
func (s *Stage) pendRebuild(li *listInfo, reason string, e control.ListEntry, wait time.Duration) {
	now := s.now()
	li.mu.Lock()
	fresh := li.rb.reason == ""
	if fresh {
		li.rb = rebuildState{reason: reason, since: now, at: now.Add(wait), generation: e.Generation, retired: e.Retired}
	}
	li.mu.Unlock()
	if fresh {
		var d commit.Deltas
		s.ws.SetMode(li.id, window.ModeDrop, &d)
		s.tr.Apply(&d)
		s.m.parked.WithLabelValues(li.key.Audience, li.key.Type.String(), reason).Set(1)
		s.log.Warn("list parked: its changes are dropped until it is rebuilt from the profile state",
			"audience", li.key.Audience, "list_type", li.key.Type.String(), "ad_account", li.adAccount(), "reason", reason)
	}
}

// rebuildTick is how often the stage looks for lists to rebuild.
const rebuildTick = time.Second

// maxRebuildBatch is the most lists one read of the changelog rebuilds.
const maxRebuildBatch = 64

// rebuildTimeout bounds one attempt: reading the changelog, and making
// and filling the list within the write budget.
const rebuildTimeout = 15 * time.Minute

// rebuildLoop starts the rebuilds that are due, one batch at a time: each
// batch reads the whole changelog once.
func (s *Stage) rebuildLoop(ctx context.Context) {
	if s.deps.Registry == nil {
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
		s.adoptRebuilds()
		if lis := s.dueRebuilds(maxRebuildBatch); len(lis) > 0 {
			s.runRebuilds(lis)
		}
	}
}

// adoptRebuilds takes up the registry's marks on lists of the partitions
// this member owns: marked by an earlier owner, by pinsync resync, or
// before a restart.
func (s *Stage) adoptRebuilds() {
	owned := s.ownedPartitions()
	for k, e := range s.deps.Registry.Rebuilds() {
		l := changes.List{Type: k.Type, Audience: k.Audience}
		p := s.part.Partition(l.AppendKey(nil))
		if !owned[p] {
			continue
		}
		li := s.lists.intern(l, changes.Header{AdAccount: k.AdAccount}, p)
		if li.adAccount() != k.AdAccount {
			continue // a list of the audience in another account: not this one's
		}
		// Marked before this member took the list (a restart, a fixed
		// configuration): tried at once.
		s.pendRebuild(li, e.Rebuild, e, 0)
	}
}

// dueRebuilds returns up to max owned lists whose rebuild may start now,
// marking them running.
func (s *Stage) dueRebuilds(max int) []*listInfo {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return nil
	}
	now := s.now()
	var out []*listInfo
	for _, li := range s.ownedLists() {
		if len(out) == max {
			break
		}
		li.mu.Lock()
		due := li.rb.reason != "" && !li.rb.running && !now.Before(li.rb.at)
		if due {
			li.rb.running = true
		}
		li.mu.Unlock()
		if due {
			out = append(out, li)
		}
	}
	return out
}

// runRebuilds runs one attempt to rebuild each of lis, from one read of the
// profile state, and records each one's outcome. An attempt counts as
// running until its outcome is recorded: stopRebuilds returns after that.
func (s *Stage) runRebuilds(lis []*listInfo) {
	ctx, cancel := context.WithTimeout(s.uploadCtx, rebuildTimeout)
	defer cancel()
	for _, li := range lis {
		li.mu.Lock()
		li.rb.cancel = cancel
		li.mu.Unlock()
	}
	start := s.now()
	// Those Pinterest takes writes for keep their new changes aside from
	// now on: the state read next stands after every change read before.
	var ready []*listInfo
	var keys []changes.List
	curs := map[*listInfo]control.ListEntry{}
	access := map[string]error{} // by ad account
	for _, li := range lis {
		cur, err := s.prepareRebuild(ctx, li, access)
		if err != nil {
			s.finishRebuild(ctx, li, 0, control.ListEntry{}, err, start)
			continue
		}
		ready, curs[li] = append(ready, li), cur
		keys = append(keys, li.key)
	}
	if len(ready) == 0 {
		return
	}
	members, err := s.deps.Members(ctx, keys)
	if err != nil {
		err = fmt.Errorf("reading the audience's members from the profile state: %w", err)
	}
	for _, li := range ready {
		if err != nil {
			s.finishRebuild(ctx, li, 0, control.ListEntry{}, err, start)
			continue
		}
		hashes := members[li.key]
		e, berr := s.build(ctx, li, curs[li], hashes)
		s.finishRebuild(ctx, li, len(hashes), e, berr, start)
	}
}

// prepareRebuild checks that Pinterest takes writes for li (once per ad
// account of a batch), reads its registry entry and keeps its new changes
// aside.
func (s *Stage) prepareRebuild(ctx context.Context, li *listInfo, access map[string]error) (control.ListEntry, error) {
	if s.deps.Members == nil {
		return control.ListEntry{}, errors.New("lists: no profile state to rebuild from (the changelog is off)")
	}
	acct := li.adAccount()
	err, checked := access[acct]
	if !checked {
		err = s.pin.CheckWriteAccess(ctx, acct)
		access[acct] = err
	}
	if err != nil {
		return control.ListEntry{}, err
	}
	cur, _, err := s.deps.Registry.Lookup(ctx, registryKey(li))
	if err != nil {
		return control.ListEntry{}, fmt.Errorf("list registry: %w", err)
	}
	var d commit.Deltas
	s.ws.SetMode(li.id, window.ModeHold, &d)
	return cur, nil
}

// finishRebuild records the outcome of li's attempt: the list syncs again,
// or its kept changes go and the next attempt is scheduled.
func (s *Stage) finishRebuild(ctx context.Context, li *listInfo, n int, e control.ListEntry, err error, start time.Time) {
	now := s.now()
	typ := li.key.Type.String()
	if err != nil {
		// What was kept aside goes: the mark stays, the next attempt
		// reads the state again.
		var d commit.Deltas
		s.ws.SetMode(li.id, window.ModeDrop, &d)
		s.tr.Apply(&d)
		s.m.rebuilds.WithLabelValues("error").Inc()
	} else {
		s.m.rebuilds.WithLabelValues("ok").Inc()
		s.m.parked.DeletePartialMatch(map[string]string{"audience": li.key.Audience, "list_type": typ})
	}
	li.mu.Lock()
	if err == nil {
		li.rb = rebuildState{generation: e.Generation, retired: e.Retired}
	} else {
		li.rb.fails++
		li.rb.lastErr = err.Error()
		if r := rebuildReason(err); r == control.RebuildPermission {
			li.rb.reason = r
		}
		wait := min(backoff(li.rb.fails), s.cfg.ParkedRetry)
		if li.rb.reason == control.RebuildPermission {
			wait = s.cfg.ParkedRetry
		}
		li.rb.at = now.Add(wait)
	}
	reason := li.rb.reason
	li.mu.Unlock()
	if err != nil {
		// The reason may have become permission.
		s.m.parked.DeletePartialMatch(map[string]string{"audience": li.key.Audience, "list_type": typ})
		s.m.parked.WithLabelValues(li.key.Audience, typ, reason).Set(1)
		li.mu.Lock()
		li.rb.running, li.rb.cancel = false, nil
		li.mu.Unlock()
		if ctx.Err() == nil {
			s.log.Warn("list rebuild failed; it is tried again", "audience", li.key.Audience, "list_type", typ,
				"reason", reason, "err", err)
		}
		return
	}
	s.log.Info("list rebuilt from the profile state", "audience", li.key.Audience, "list_type", typ,
		"customer_list", e.CustomerListID, "audience_id", e.AudienceID, "generation", e.Generation,
		"retired", e.Retired, "records", n, "took", now.Sub(start).Round(time.Millisecond))
}

// build makes li's new list holding hashes, cur being its registry entry
// (see the comment at the top of this file), and returns the registry
// entry it wrote.
func (s *Stage) build(ctx context.Context, li *listInfo, cur control.ListEntry, hashes []ident.Hash) (control.ListEntry, error) {
	acct := li.adAccount()
	k := registryKey(li)
	base := baseName(cur.Name)
	if base == "" {
		var err error
		if base, err = s.res.name(li); err != nil {
			return control.ListEntry{}, err
		}
	}
	e := control.ListEntry{AudienceID: cur.AudienceID, Generation: cur.Generation + 1, Retired: slices.Clone(cur.Retired)}
	e.Name = base + " #" + strconv.Itoa(e.Generation)
	if cur.CustomerListID != "" {
		e.Retired = append(e.Retired, cur.CustomerListID)
	}
	ctx = pinterest.WithWriteGuard(ctx, func(ctx context.Context) error { return s.owns(ctx, li.partition) })
	if len(hashes) > 0 {
		// The list is made with one request's worth, and recorded as
		// retired (the mark stays) before it is filled: if this attempt
		// fails, or its owner dies, the next attempt leaves it and makes
		// another. Success records it as the list.
		first := hashes[:min(len(hashes), s.cfg.MaxRecords)]
		cl, err := s.pin.CreateCustomerList(ctx, acct, e.Name, li.key.Type, first)
		if cl.ID == "" {
			return control.ListEntry{}, err
		}
		cur.Retired = append(slices.Clone(cur.Retired), cl.ID)
		cur.Generation = e.Generation // the next attempt's name is its own
		if rerr := s.deps.Registry.Record(ctx, k, cur); rerr != nil {
			return control.ListEntry{}, fmt.Errorf("list registry: %w", rerr)
		}
		if err != nil {
			return control.ListEntry{}, err
		}
		s.m.uploads.WithLabelValues("create", "ok").Inc()
		if err := s.pin.UpdateCustomerList(ctx, acct, cl.ID, pinterest.Add, hashes[len(first):]); err != nil {
			return control.ListEntry{}, err
		}
		e.CustomerListID = cl.ID
		au, err := s.res.followList(ctx, acct, e.Name, e.AudienceID, cl.ID)
		if err != nil {
			return control.ListEntry{}, err
		}
		e.AudienceID = au.ID
		li.setAudience(au)
	}
	// With no member there is no list to make (Pinterest needs a record
	// to create one): the next add creates it and repoints the audience.
	if err := s.deps.Registry.Record(ctx, k, e); err != nil {
		return control.ListEntry{}, fmt.Errorf("list registry: %w", err)
	}
	li.setIDs(listIDs{name: e.Name, listID: e.CustomerListID, audienceID: e.AudienceID})
	var d commit.Deltas
	s.ws.SetMode(li.id, window.ModeSync, &d)
	s.countUploaded(li, "add", len(hashes))
	return e, nil
}

// generationSuffix is what a rebuild appends to a list's name.
var generationSuffix = regexp.MustCompile(` #[0-9]+$`)

// baseName is a list name without its generation suffix.
func baseName(name string) string { return generationSuffix.ReplaceAllString(name, "") }

// stopRebuilds cancels the rebuilds of lists of the given partitions (all
// when nil) and waits until none runs.
func (s *Stage) stopRebuilds(parts map[int32]bool) {
	for {
		running := false
		for _, li := range s.lists.all() {
			if parts != nil && !parts[li.partition] {
				continue
			}
			li.mu.Lock()
			if li.rb.running {
				running = true
				if li.rb.cancel != nil {
					li.rb.cancel()
				}
			}
			li.mu.Unlock()
		}
		if !running {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// forgetRebuilds drops what this member knew of the rebuilds of lists of
// the given partitions: their next owner takes them up from the registry.
func (s *Stage) forgetRebuilds(parts map[int32]bool) {
	for _, li := range s.lists.all() {
		if !parts[li.partition] {
			continue
		}
		li.mu.Lock()
		had := li.rb.reason != ""
		li.rb = rebuildState{}
		li.mu.Unlock()
		if had {
			var d commit.Deltas
			s.ws.SetMode(li.id, window.ModeSync, &d)
			s.m.parked.DeletePartialMatch(map[string]string{"audience": li.key.Audience, "list_type": li.key.Type.String()})
		}
	}
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
