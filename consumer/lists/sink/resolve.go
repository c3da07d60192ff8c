package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// DefaultListNameTemplate is the default Pinterest list name.
const DefaultListNameTemplate = "pinsync {{.Audience}} {{.ListType}}"

// parseTemplate parses a list name template and checks, by rendering it,
// that it gives each list of an audience (one per identifier type) and
// each audience a name of its own: Pinterest finds lists by name.
func parseTemplate(s string) (*template.Template, error) {
	t, err := template.New("list").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, err
	}
	render := func(audience string, typ ident.Type) (string, error) {
		var b strings.Builder
		err := t.Execute(&b, listNameData{Audience: audience, Name: audience, ListType: typ.String()})
		return b.String(), err
	}
	seen := map[string]bool{}
	for _, aud := range []string{"audience-one", "audience-two"} {
		for typ := ident.Type(1); typ <= ident.NumTypes; typ++ {
			n, err := render(aud, typ)
			if err != nil {
				return nil, err
			}
			if seen[n] {
				return nil, fmt.Errorf("%q gives two lists the name %q: it needs {{.ListType}} and {{.Audience}} (or {{.Name}})", s, n)
			}
			seen[n] = true
		}
	}
	return t, nil
}

// CheckListNameTemplate reports what is wrong with a list name template:
// a syntax error, a field it does not know, or names that two lists would
// share.
func CheckListNameTemplate(s string) error {
	_, err := parseTemplate(s)
	return err
}

// listNameData is what a list name template sees.
type listNameData struct{ Audience, Name, ListType string }

// resolver finds or creates the Pinterest list and CUSTOMER_LIST audience
// of each list, once: from the registry when it knows the list; else by
// name, from one listing of the ad account's lists taken after this member
// was assigned the list (an earlier owner may have created it and died
// before recording it); else by creating it with its first adds and
// recording it.
type resolver struct {
	pin ListMaker
	reg Registry
	// guard is the member's ownership check, run before each registry
	// write as before each Pinterest write.
	guard Guard
	tmpl  *template.Template
	now   func() time.Time
	// assignedAt is when this member was last assigned partitions.
	assignedAt func() time.Time

	mu      sync.Mutex
	checked map[string]bool // ad accounts whose write access was checked
	names   map[string]*nameIndex
}

// nameIndex is one listing of an ad account's customer lists and
// audiences, by name and by customer list.
type nameIndex struct {
	taken     time.Time
	lists     map[string]string             // name → customer list id
	audiences map[string]pinterest.Audience // customer list id → audience
}

func newResolver(pin ListMaker, reg Registry, guard Guard, tmpl *template.Template, now, assignedAt func() time.Time) *resolver {
	return &resolver{pin: pin, reg: reg, guard: guard, tmpl: tmpl, now: now, assignedAt: assignedAt,
		checked: make(map[string]bool), names: make(map[string]*nameIndex)}
}

// name renders the list name of li.
func (r *resolver) name(li *list) (string, error) {
	var b strings.Builder
	err := r.tmpl.Execute(&b, listNameData{Audience: li.key.Audience, Name: li.displayName(), ListType: li.key.Type.String()})
	return b.String(), err
}

// ensure returns the customer list id of li, creating the list with adds
// when it does not exist. created reports that every one of adds went into
// a new list (then an error is about its audience or its registry record
// only).
// An empty id with no error means there is no list and nothing to add: a
// removal from a list that does not exist has nothing to do. Flushes of one
// window never run concurrently, so one list is never resolved twice at
// once.
func (r *resolver) ensure(ctx context.Context, li *list, adds []ident.Hash) (id string, created bool, err error) {
	ids := li.ids()
	if ids.listID != "" && (ids.audienceID != "" || li.isBuilding()) {
		return ids.listID, false, nil
	}
	acct := li.adAccount()
	if err := r.checkAccess(ctx, acct); err != nil {
		return "", false, notOfRecords(err)
	}
	key := li.registryKey()
	var retired []string
	if ids.listID == "" && r.reg != nil {
		// As the registry stands now: another owner may have rebuilt the
		// list since this member last owned it.
		e, ok, err := r.reg.Current(ctx, key)
		if err != nil {
			return "", false, fmt.Errorf("list registry: %w", err)
		}
		if ok && e.Rebuild != "" {
			// Parked, or rebuilt: the rebuilder takes it up (see
			// rebuilder.pend).
			return "", false, &rebuildError{reason: e.Rebuild}
		}
		retired = e.Retired
		if ok {
			ids = listIDs{name: e.Name, listID: e.CustomerListID, audienceID: e.AudienceID}
			li.setIDs(ids)
			li.setGeneration(e.Generation, e.Retired)
			if ids.listID != "" && ids.audienceID != "" {
				return ids.listID, false, nil
			}
		}
	}
	if ids.name == "" {
		if ids.name, err = r.name(li); err != nil {
			return "", false, fmt.Errorf("list name for audience %q: %w", li.key.Audience, err)
		}
	}
	if ids.listID == "" {
		idx, err := r.fresh(ctx, acct)
		if err != nil {
			return "", false, notOfRecords(err)
		}
		// A list the registry says is retired is never taken back by its
		// name (a rebuild's half-made list, an old generation).
		if id := r.listByName(idx, ids.name); id != "" && !slices.Contains(retired, id) {
			ids.listID = id
			li.setIDs(ids)
			if err := r.record(ctx, li, key, ids); err != nil {
				return "", false, err
			}
		}
	}
	if ids.listID == "" {
		if len(adds) == 0 {
			return "", false, nil
		}
		cl, err := r.pin.CreateCustomerList(ctx, acct, ids.name, li.key.Type, adds)
		if cl.ID == "" {
			return "", false, &resolveError{ofRecords: true, err: err}
		}
		// The list exists even when err says a later chunk of its adds
		// failed: record it before anything else. Its adds then count as
		// not sent (created false): the retry sends them again as an
		// update, which is harmless for those that did land.
		ids.listID = cl.ID
		r.learnList(acct, ids.name, cl.ID)
		li.setIDs(ids)
		rerr := r.record(ctx, li, key, ids)
		if err != nil {
			return cl.ID, false, firstErr(err, rerr)
		}
		created = true
		if rerr != nil {
			return cl.ID, true, rerr
		}
	}
	var au pinterest.Audience
	if ids.audienceID != "" {
		// A rebuild found no member: the audience follows a retired list
		// until this one exists.
		au, err = r.followList(ctx, acct, ids.name, ids.audienceID, ids.listID)
	} else {
		au, err = r.ensureAudience(ctx, acct, ids, !created)
	}
	if err != nil {
		return ids.listID, created, notOfRecords(err)
	}
	li.setAudience(au)
	if err := r.record(ctx, li, key, li.ids()); err != nil {
		return ids.listID, created, err
	}
	return ids.listID, created, nil
}

// resolveError is an error of a list's resolution, saying whether the
// request that failed carried the flight's records (the creation of the
// list does; checking the ad account, listing its lists and making the
// audience do not): only a refusal of such a request is about the
// records, to be bisected and dead-lettered.
type resolveError struct {
	ofRecords bool
	err       error
}

func (e *resolveError) Error() string { return e.err.Error() }
func (e *resolveError) Unwrap() error { return e.err }

// notOfRecords marks err as the failure of a request that carried no
// record (nil stays nil).
func notOfRecords(err error) error {
	if err == nil {
		return nil
	}
	return &resolveError{err: err}
}

// refusedCreation reports a creation of a list refused for good: perhaps
// for its records.
func refusedCreation(err error) bool {
	var re *resolveError
	return errors.As(err, &re) && re.ofRecords && pinterest.IsRefused(err)
}

// refusedResolution reports a request that carried no record refused for
// good: not about the records (a list name or ad account Pinterest does
// not take, an audience it will not make).
func refusedResolution(err error) bool {
	var re *resolveError
	return errors.As(err, &re) && !re.ofRecords && pinterest.Classify(err) == pinterest.ClassRefused
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// record writes li's ids into its registry entry, as a member that still
// owns the list: the entry's other fields (generation, retired lists, a
// rebuild mark) stand.
func (r *resolver) record(ctx context.Context, li *list, k control.ListKey, ids listIDs) error {
	if r.reg == nil {
		return nil
	}
	_, err := r.reg.Update(ctx, k, func(cur control.ListEntry, _ bool) (control.ListEntry, error) {
		if err := r.guard.check(ctx, li); err != nil {
			return cur, err
		}
		cur.CustomerListID, cur.AudienceID, cur.Name = ids.listID, ids.audienceID, ids.name
		return cur, nil
	})
	if err != nil {
		return fmt.Errorf("list registry: %w", err)
	}
	return nil
}

// checkAccess checks, once per ad account, that the token may manage its
// audiences.
func (r *resolver) checkAccess(ctx context.Context, acct string) error {
	r.mu.Lock()
	ok := r.checked[acct]
	r.mu.Unlock()
	if ok {
		return nil
	}
	if err := r.pin.CheckWriteAccess(ctx, acct); err != nil {
		return err
	}
	r.mu.Lock()
	r.checked[acct] = true
	r.mu.Unlock()
	return nil
}

// fresh returns a listing of acct's customer lists taken after the last
// assignment, listing them again if the one held is older: a list an
// earlier owner created but did not record is then in it.
func (r *resolver) fresh(ctx context.Context, acct string) (*nameIndex, error) {
	r.mu.Lock()
	idx := r.names[acct]
	r.mu.Unlock()
	if idx != nil && !idx.taken.Before(r.assignedAt()) {
		return idx, nil
	}
	taken := r.now()
	ls, err := r.pin.CustomerLists(ctx, acct)
	if err != nil {
		return nil, err
	}
	idx = &nameIndex{taken: taken, lists: make(map[string]string, len(ls))}
	for _, l := range ls {
		if _, dup := idx.lists[l.Name]; !dup {
			idx.lists[l.Name] = l.ID
		}
	}
	r.mu.Lock()
	r.names[acct] = idx
	r.mu.Unlock()
	return idx, nil
}

// listByName returns the id of the list named name in idx ("" if none).
func (r *resolver) listByName(idx *nameIndex, name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return idx.lists[name]
}

// dropList makes li resolve its list again, leaving out the customer list
// it held (gone at Pinterest): its next add creates a list under the same
// name, which its audience is repointed to. Only for a member without a
// registry, which cannot park the list for a rebuild.
func (r *resolver) dropList(li *list) {
	ids := li.ids()
	r.mu.Lock()
	if idx := r.names[li.adAccount()]; idx != nil && idx.lists[ids.name] == ids.listID {
		delete(idx.lists, ids.name)
	}
	r.mu.Unlock()
	li.setIDs(listIDs{name: ids.name, audienceID: ids.audienceID})
}

// learnList adds a list this member created to the index of its account.
func (r *resolver) learnList(acct, name, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if idx := r.names[acct]; idx != nil {
		idx.lists[name] = id
	}
}

// ensureAudience returns the CUSTOMER_LIST audience following the list,
// creating it when there is none. look says whether one may exist already
// (a list found rather than created now).
func (r *resolver) ensureAudience(ctx context.Context, acct string, ids listIDs, look bool) (pinterest.Audience, error) {
	if look {
		auds, err := r.audiences(ctx, acct)
		if err != nil {
			return pinterest.Audience{}, err
		}
		if au, ok := auds[ids.listID]; ok {
			return au, nil
		}
	}
	return r.pin.CreateAudience(ctx, acct, ids.name, ids.listID)
}

// audiences returns acct's audiences by customer list, from a listing
// taken after the last assignment.
func (r *resolver) audiences(ctx context.Context, acct string) (map[string]pinterest.Audience, error) {
	idx, err := r.fresh(ctx, acct)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	have := idx.audiences
	r.mu.Unlock()
	if have != nil {
		return have, nil
	}
	auds, err := r.pin.Audiences(ctx, acct)
	if err != nil {
		return nil, err
	}
	m := make(map[string]pinterest.Audience, len(auds))
	for _, au := range auds {
		if au.Rule.CustomerListID != "" {
			m[au.Rule.CustomerListID] = au
		}
	}
	r.mu.Lock()
	idx.audiences = m
	r.mu.Unlock()
	return m, nil
}

// followList makes the CUSTOMER_LIST audience audienceID follow list
// listID (a rebuilt list), or creates an audience named name following it
// when there is none (audienceID empty, or deleted meanwhile).
func (r *resolver) followList(ctx context.Context, acct, name, audienceID, listID string) (pinterest.Audience, error) {
	if audienceID != "" {
		au, err := r.pin.RepointAudience(ctx, acct, audienceID, listID)
		if pinterest.Classify(err) != pinterest.ClassNotFound {
			return au, err
		}
	}
	return r.pin.CreateAudience(ctx, acct, name, listID)
}
