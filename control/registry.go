package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pinsync/pinsync/schemas/ident"
)

// ListKey names one Pinterest list in the registry: its ad account, its
// audience and its identifier type.
type ListKey struct {
	AdAccount string
	Audience  string
	Type      ident.Type
}

// ListEntry is what the registry holds of a list.
type ListEntry struct {
	CustomerListID string `json:"customer_list_id"`
	// AudienceID is the CUSTOMER_LIST audience following the list; empty
	// until it exists.
	AudienceID string `json:"audience_id,omitempty"`
	// Name is the list's (and its audience's) name at Pinterest.
	Name string `json:"name"`
	// Generation counts the lists rebuilds made: 0 for the list first
	// created; a rebuild's list is named with its generation (" #2"). An
	// attempt that made a list and failed counts too, its list retired.
	Generation int `json:"generation,omitempty"`
	// Rebuild, when set, says the list no longer holds exactly its
	// audience, and why (RebuildNotFound, RebuildPermission,
	// RebuildRequested, RebuildRefused): its owner drops the audience's changes and
	// rebuilds the list from the profile state once it can. A list never
	// created has no CustomerListID then.
	Rebuild string `json:"rebuild,omitempty"`
	// Retired are the customer lists of earlier generations: no audience
	// follows them any more, and pinsync never writes to them again
	// (Pinterest has no call to delete a list; Ads Manager can).
	Retired []string `json:"retired,omitempty"`
	// Building is the rebuild under way, once it has made its list: the
	// next attempt, on this owner or the next, fills the same list on
	// from where the last one stopped.
	Building *Building `json:"building,omitempty"`
	// Attempts counts the rebuild's attempts in a row that made no
	// progress (no changelog partition filled); 0 once it succeeds.
	Attempts int `json:"attempts,omitempty"`
}

// Building is a rebuild's new list, made and being filled from the
// profile state one changelog partition at a time. While it is under way
// the list's changes go to it (between the partitions' reads); its
// audience still follows the old list.
type Building struct {
	CustomerListID string `json:"customer_list_id"`
	Name           string `json:"name"`
	// Done are the changelog partitions whose members the list holds.
	Done []int32 `json:"done,omitempty"`
}

func (b *Building) equal(o *Building) bool {
	if b == nil || o == nil {
		return b == o
	}
	return b.CustomerListID == o.CustomerListID && b.Name == o.Name && slices.Equal(b.Done, o.Done)
}

// The reasons a list is rebuilt.
const (
	// RebuildNotFound: Pinterest answered 404 for the list (deleted in Ads
	// Manager).
	RebuildNotFound = "not_found"
	// RebuildPermission: the token's user lost the role on the list's ad
	// account (403); the audience is parked until it is back.
	RebuildPermission = "permission"
	// RebuildRequested: an operator asked for it (pinsync resync).
	RebuildRequested = "requested"
	// RebuildRefused: Pinterest refused for good a request about the list
	// that carried none of its records (the list's name, its audience,
	// its ad account); the audience is parked until Pinterest takes it.
	RebuildRefused = "refused"
)

// valid reports whether e may be recorded: it names a customer list, or
// it has none because the list waits for a rebuild, or a rebuild found no
// member to create one with, or the list is gone and could not be rebuilt
// (the next add creates it, and the gone list is retired), or it was never
// made (a parked list that resumed: its name says what to make).
func (e ListEntry) valid() bool {
	return e.CustomerListID != "" || e.Rebuild != "" || e.Generation > 0 || len(e.Retired) > 0 || e.Name != ""
}

func (e ListEntry) equal(o ListEntry) bool {
	return e.CustomerListID == o.CustomerListID && e.AudienceID == o.AudienceID && e.Name == o.Name &&
		e.Generation == o.Generation && e.Rebuild == o.Rebuild && slices.Equal(e.Retired, o.Retired) &&
		e.Building.equal(o.Building) && e.Attempts == o.Attempts
}

// registryPrefix starts the key of every registry record:
// "registry/<ad account>/<TYPE>/<audience>".
const registryPrefix = "registry/"

func (k ListKey) record() string {
	return registryPrefix + k.AdAccount + "/" + k.Type.String() + "/" + k.Audience
}

func parseListKey(s string) (ListKey, bool) {
	rest, ok := strings.CutPrefix(s, registryPrefix)
	if !ok {
		return ListKey{}, false
	}
	acct, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return ListKey{}, false
	}
	typ, aud, ok := strings.Cut(rest, "/")
	if !ok || aud == "" {
		return ListKey{}, false
	}
	t, err := ident.ParseType(typ)
	if err != nil {
		return ListKey{}, false
	}
	return ListKey{AdAccount: acct, Audience: aud, Type: t}, true
}

// registryRecord is a registry record's value: the entry and, when written
// by Update, the offset of the entry it was made from (Base; -1 when there
// was none). A record whose Base is not the offset of the entry in force
// when it is applied lost a race with another writer and is skipped, by
// every replica alike: each write is a read-modify-write of the entry as it
// stands. Records of earlier versions carry no Base and apply as they come.
type registryRecord struct {
	ListEntry
	Base *int64 `json:"base,omitempty"`
}

// registered is an entry in force and the offset of its record.
type registered struct {
	ListEntry
	offset int64
}

// applyRegistry folds a registry record into the registry. Called with
// t.mu held.
func (t *Topic) applyRegistry(r Record) {
	k, ok := parseListKey(r.Key)
	if !ok {
		return
	}
	if r.Value == nil {
		delete(t.registry, k)
		return
	}
	var rec registryRecord
	if err := json.Unmarshal(r.Value, &rec); err != nil || !rec.valid() {
		t.logger.Warn("skipping a malformed list registry record", "offset", r.Offset)
		return
	}
	cur, had := t.registry[k]
	base := int64(-1)
	if had {
		base = cur.offset
	}
	switch {
	case rec.Base != nil && *rec.Base != base:
		return // written from an entry another write replaced meanwhile
	case had && rec.Generation < cur.Generation:
		// A writer that did not see the newer generation (an earlier
		// version, a member paused past its session): a list's generation
		// never goes back.
		t.logger.Warn("skipping a list registry record older than the entry", "offset", r.Offset, "list", r.Key)
		return
	}
	t.registry[k] = registered{ListEntry: rec.ListEntry, offset: r.Offset}
}

// Registry is the list registry of the control topic: list key → customer
// list and audience ids. A list's owner writes its entry when it creates or
// finds the list; a later owner reads it instead of looking the list up
// by name. Its methods are safe for concurrent use.
type Registry struct{ t *Topic }

// Registry returns the topic's list registry.
func (t *Topic) Registry() *Registry { return &Registry{t: t} }

// Lookup returns the entry of k. When k is not known yet it first reads
// every record written before the call (a list an earlier owner recorded
// just before its partition moved is then found).
func (r *Registry) Lookup(ctx context.Context, k ListKey) (ListEntry, bool, error) {
	if e, ok := r.get(k); ok {
		return e, true, nil
	}
	if err := r.t.log.CatchUp(ctx); err != nil {
		return ListEntry{}, false, err
	}
	e, ok := r.get(k)
	return e, ok, nil
}

// Current returns the entry of k having read every record written before
// the call, whether k was known or not.
func (r *Registry) Current(ctx context.Context, k ListKey) (ListEntry, bool, error) {
	if err := r.t.log.CatchUp(ctx); err != nil {
		return ListEntry{}, false, err
	}
	e, ok := r.get(k)
	return e, ok, nil
}

func (r *Registry) get(k ListKey) (ListEntry, bool) {
	e, _, ok := r.getAt(k)
	return e, ok
}

// getAt returns the entry of k and the offset of its record (-1 when
// there is none).
func (r *Registry) getAt(k ListKey) (ListEntry, int64, bool) {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	e, ok := r.t.registry[k]
	if !ok {
		return ListEntry{}, -1, false
	}
	return e.ListEntry, e.offset, true
}

// Record writes the entry of k as given, whatever the entry in force, and
// returns once it is durable and applied (unless it would take the list's
// generation back: then it is not applied, and Record says so). Prefer
// Update, which changes the entry in force.
func (r *Registry) Record(ctx context.Context, k ListKey, e ListEntry) error {
	_, err := r.Update(ctx, k, func(ListEntry, bool) (ListEntry, error) { return e, nil })
	return err
}

// ErrRegistryConflict is returned (wrapped) by Update when its writes kept
// losing races with other writers of the same entry.
var ErrRegistryConflict = errors.New("control: the registry entry kept changing")

// ErrStaleGeneration is returned (wrapped) by Update when the entry it
// would write has an older generation than the entry in force.
var ErrStaleGeneration = errors.New("control: the registry entry has a newer generation")

// maxUpdateAttempts bounds Update's retries after lost races.
const maxUpdateAttempts = 8

// Update reads the entry of k as it stands after every record written
// before the call, calls change with it (ok false and a zero entry when
// there is none), and writes what change returns, if it differs, on
// condition that the entry was not replaced meanwhile; when it was, it
// reads again and calls change again. change may be called several times;
// an error from it aborts the update (the place for an ownership check:
// it runs just before the write). Update returns the entry in force
// afterwards.
func (r *Registry) Update(ctx context.Context, k ListKey, change func(cur ListEntry, ok bool) (ListEntry, error)) (ListEntry, error) {
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		if err := r.t.log.CatchUp(ctx); err != nil {
			return ListEntry{}, err
		}
		cur, base, ok := r.getAt(k)
		next, err := change(cur, ok)
		if err != nil {
			return cur, err
		}
		if ok && cur.equal(next) {
			return cur, nil
		}
		if !next.valid() {
			return cur, fmt.Errorf("control: registry entry of %s has no customer list id", k.record())
		}
		if ok && next.Generation < cur.Generation {
			return cur, fmt.Errorf("%w: %s is at generation %d, the write at %d", ErrStaleGeneration, k.record(), cur.Generation, next.Generation)
		}
		b, err := json.Marshal(registryRecord{ListEntry: next, Base: &base})
		if err != nil {
			return cur, err
		}
		off, err := r.t.log.Append(ctx, k.record(), b)
		if err != nil {
			return cur, err
		}
		if err := r.t.log.WaitApplied(ctx, off); err != nil {
			return cur, err
		}
		if now, at, _ := r.getAt(k); at == off {
			return now, nil
		}
	}
	return ListEntry{}, fmt.Errorf("%w: %s after %d attempts", ErrRegistryConflict, k.record(), maxUpdateAttempts)
}

// Entries returns every entry (for status and tests).
func (r *Registry) Entries() map[ListKey]ListEntry {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	out := make(map[ListKey]ListEntry, len(r.t.registry))
	for k, e := range r.t.registry {
		out[k] = e.ListEntry
	}
	return out
}

// Rebuilds returns the entries of the lists waiting to be rebuilt.
func (r *Registry) Rebuilds() map[ListKey]ListEntry {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	out := map[ListKey]ListEntry{}
	for k, e := range r.t.registry {
		if e.Rebuild != "" {
			out[k] = e.ListEntry
		}
	}
	return out
}

// RequestRebuild marks for a rebuild (RebuildRequested) every registered
// list of audience, of type t only unless t is 0, having read every entry
// written before the call. It returns the entries as they were; none when
// no list of the audience is registered. A list marked already keeps its
// reason.
func (r *Registry) RequestRebuild(ctx context.Context, audience string, t ident.Type) (map[ListKey]ListEntry, error) {
	if err := r.t.log.CatchUp(ctx); err != nil {
		return nil, err
	}
	out := map[ListKey]ListEntry{}
	for k, e := range r.Entries() {
		if k.Audience != audience || (t != 0 && k.Type != t) {
			continue
		}
		out[k] = e
		if _, err := r.Update(ctx, k, func(cur ListEntry, _ bool) (ListEntry, error) {
			if cur.Rebuild == "" {
				cur.Rebuild = RebuildRequested
			}
			cur.Attempts = 0 // a rebuild that gave up is tried again
			return cur, nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
