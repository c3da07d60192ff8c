package profiles

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/glob"
	"github.com/pinsync/pinsync/schemas/ident"
)

// audience is what pinsync knows of one audience key.
type audience struct {
	id        uint32
	key       string
	name      string // display name, when an event carried one
	override  string // the ad-account override the deciding event carried
	adAccount string
	// provisional: known only from the state restored (a profile's
	// audiences), not yet from an event or the audience's own changelog
	// record, so its name and override are not known yet: the first of
	// those decides them.
	provisional bool
	selected    bool // allowed by the audience filter
	members     atomic.Int64
	// records counts, by identifier type, the identifiers of the members
	// held here: the records of the audience's lists they account for.
	records [ident.NumTypes + 1]atomic.Int64
}

// audiences interns audience keys as small integers shared by every
// partition of the process, and resolves each audience's ad account and
// whether it is synced. Safe for concurrent use.
type audiences struct {
	mu    sync.RWMutex
	byKey map[string]*audience
	byID  []*audience
	// ids is byID as last published, for get: the hot path reads it
	// without the lock (entries never change, the slice only grows).
	ids      atomic.Pointer[[]*audience]
	allow    []*glob.Glob
	deny     []*glob.Glob
	account  string
	accounts map[string]string
	settings bool
}

func newAudiences(allow, deny []string, account string, accounts map[string]string, allowSettings bool) (*audiences, error) {
	as := &audiences{
		byKey: make(map[string]*audience), byID: []*audience{nil},
		account: account, accounts: accounts, settings: allowSettings,
	}
	ids := as.byID
	as.ids.Store(&ids)
	for _, set := range []struct {
		dst      *[]*glob.Glob
		patterns []string
	}{{&as.allow, allow}, {&as.deny, deny}} {
		for _, p := range set.patterns {
			g, err := glob.Compile(p)
			if err != nil {
				return nil, fmt.Errorf("profiles: audience filter: %w", err)
			}
			*set.dst = append(*set.dst, g)
		}
	}
	return as, nil
}

// intern returns the audience for key, registering it on first sight with
// the name and ad-account override an event carried: that event decides
// the audience's ad account for the process's life (unless it was restored
// with its own record, see restoreMeta).
func (as *audiences) intern(key, name, override string) *audience {
	as.mu.RLock()
	a := as.byKey[key]
	hit := a != nil && !a.provisional && (name == "" || a.name != "")
	as.mu.RUnlock()
	if hit {
		return a
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if a = as.byKey[key]; a != nil {
		if a.provisional {
			a.provisional = false
			a.override = override
			a.adAccount = as.resolve(key, override)
		}
		if a.name == "" {
			a.name = name
		}
		return a
	}
	return as.addLocked(key, name, override, false)
}

// internRestored returns the audience for key as a restored profile names
// it: a new one is provisional until an event or its record says more.
func (as *audiences) internRestored(key string) *audience {
	as.mu.RLock()
	a := as.byKey[key]
	as.mu.RUnlock()
	if a != nil {
		return a
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if a = as.byKey[key]; a != nil {
		return a
	}
	return as.addLocked(key, "", "", true)
}

// restoreMeta installs what the changelog keeps of audience key: its name
// and the override that decided its ad account, unless an event of this
// process has decided them already.
func (as *audiences) restoreMeta(key, name, override string) *audience {
	as.mu.Lock()
	defer as.mu.Unlock()
	a := as.byKey[key]
	if a == nil {
		return as.addLocked(key, name, override, false)
	}
	if a.provisional {
		a.provisional = false
		a.name, a.override = name, override
		a.adAccount = as.resolve(key, override)
	}
	return a
}

// meta returns what the changelog keeps of audience id: its name and the
// override that decided its ad account; ok is false while it is
// provisional (there is nothing to keep yet).
func (as *audiences) meta(id uint32) (key, name, override string, ok bool) {
	as.mu.RLock()
	defer as.mu.RUnlock()
	if int(id) >= len(as.byID) || as.byID[id] == nil || as.byID[id].provisional {
		return "", "", "", false
	}
	a := as.byID[id]
	return a.key, a.name, a.override, true
}

func (as *audiences) addLocked(key, name, override string, provisional bool) *audience {
	a := &audience{id: uint32(len(as.byID)), key: key, name: name, override: override,
		adAccount: as.resolve(key, override), selected: as.match(key), provisional: provisional}
	as.byKey[key] = a
	as.byID = append(as.byID, a)
	ids := as.byID
	as.ids.Store(&ids)
	return a
}

// resolve is the ad account of audience key: its mapping, else the
// event's override when overrides are allowed, else the default.
func (as *audiences) resolve(key, override string) string {
	if acc, ok := as.accounts[key]; ok {
		return acc
	}
	if as.settings && override != "" {
		return override
	}
	return as.account
}

// get returns the audience with id. It takes no lock: every change of
// state counts through it.
func (as *audiences) get(id uint32) *audience {
	ids := *as.ids.Load()
	if int(id) >= len(ids) {
		return nil
	}
	return ids[id]
}

// all returns every audience known.
func (as *audiences) all() []*audience {
	as.mu.RLock()
	defer as.mu.RUnlock()
	return append([]*audience(nil), as.byID[1:]...)
}

func (as *audiences) match(key string) bool {
	for _, d := range as.deny {
		if d.Match(key) {
			return false
		}
	}
	if len(as.allow) == 0 {
		return true
	}
	for _, a := range as.allow {
		if a.Match(key) {
			return true
		}
	}
	return false
}

// key returns the key of audience id ("" when unknown).
func (as *audiences) key(id uint32) string {
	if a := as.get(id); a != nil {
		return a.key
	}
	return ""
}

// header returns what a changes record says of audience id's lists.
func (as *audiences) header(id uint32) changes.Header {
	as.mu.RLock()
	defer as.mu.RUnlock()
	if int(id) >= len(as.byID) || as.byID[id] == nil {
		return changes.Header{}
	}
	a := as.byID[id]
	return changes.Header{AdAccount: a.adAccount, Name: a.name}
}
