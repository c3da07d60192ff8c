package control

import (
	"context"
	"encoding/json"
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
	// RebuildRequested): its owner drops the audience's changes and
	// rebuilds the list from the profile state once it can. A list never
	// created has no CustomerListID then.
	Rebuild string `json:"rebuild,omitempty"`
	// Retired are the customer lists of earlier generations: no audience
	// follows them any more, and pinsync never writes to them again
	// (Pinterest has no call to delete a list; Ads Manager can).
	Retired []string `json:"retired,omitempty"`
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
)

// valid reports whether e may be recorded: it names a customer list, or
// it has none because the list waits for a rebuild, or a rebuild found no
// member to create one with (the next add creates it).
func (e ListEntry) valid() bool {
	return e.CustomerListID != "" || e.Rebuild != "" || e.Generation > 0
}

func (e ListEntry) equal(o ListEntry) bool {
	return e.CustomerListID == o.CustomerListID && e.AudienceID == o.AudienceID && e.Name == o.Name &&
		e.Generation == o.Generation && e.Rebuild == o.Rebuild && slices.Equal(e.Retired, o.Retired)
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
	var e ListEntry
	if err := json.Unmarshal(r.Value, &e); err != nil || !e.valid() {
		t.logger.Warn("skipping a malformed list registry record", "offset", r.Offset)
		return
	}
	t.registry[k] = e
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

func (r *Registry) get(k ListKey) (ListEntry, bool) {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	e, ok := r.t.registry[k]
	return e, ok
}

// Record writes the entry of k and returns once it is durable and
// applied.
func (r *Registry) Record(ctx context.Context, k ListKey, e ListEntry) error {
	if !e.valid() {
		return fmt.Errorf("control: registry entry of %s has no customer list id", k.record())
	}
	if cur, ok := r.get(k); ok && cur.equal(e) {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	off, err := r.t.log.Append(ctx, k.record(), b)
	if err != nil {
		return err
	}
	return r.t.log.WaitApplied(ctx, off)
}

// Entries returns every entry (for status and tests).
func (r *Registry) Entries() map[ListKey]ListEntry {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	out := make(map[ListKey]ListEntry, len(r.t.registry))
	for k, e := range r.t.registry {
		out[k] = e
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
			out[k] = e
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
		if e.Rebuild != "" {
			continue
		}
		e.Rebuild = RebuildRequested
		if err := r.Record(ctx, k, e); err != nil {
			return nil, err
		}
	}
	return out, nil
}
