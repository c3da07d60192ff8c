package consumer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"text/template"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// Pinterest is what the engine needs from the Pinterest API client.
// *pinterest.Client implements it.
type Pinterest interface {
	CheckWriteAccess(ctx context.Context, adAccountID string) error
	FindCustomerList(ctx context.Context, adAccountID, name string) (pinterest.CustomerList, bool, error)
	CreateCustomerList(ctx context.Context, adAccountID, name string, t ident.Type, records []ident.Hash) (pinterest.CustomerList, error)
	UpdateCustomerList(ctx context.Context, adAccountID, listID string, op pinterest.Operation, records []ident.Hash) error
	Audiences(ctx context.Context, adAccountID string) ([]pinterest.Audience, error)
	CreateAudience(ctx context.Context, adAccountID, name, customerListID string) (pinterest.Audience, error)
	Audience(ctx context.Context, adAccountID, audienceID string) (pinterest.Audience, error)
}

// listInfo is what pinsync knows of the Pinterest list behind one window.
type listInfo struct {
	name       string
	listID     string
	audienceID string
	// Pinterest's view, refreshed by the audience poll.
	size   int64
	status string
}

// lists finds or creates the Pinterest list and CUSTOMER_LIST audience of
// each window, once. Flushes of one window never run concurrently, so one
// window's list is never resolved twice at once.
type lists struct {
	pin  Pinterest
	tmpl *template.Template

	mu      sync.Mutex
	m       map[windowKey]*listInfo
	checked map[string]bool // ad accounts whose write access was checked
	// claims coordinates creation with the other replicas through the
	// control topic (control.go); nil when it is disabled. Set before the
	// engine starts.
	claims *claims
}

func newLists(pin Pinterest, tmpl string) (*lists, error) {
	t, err := template.New("list").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, err
	}
	return &lists{pin: pin, tmpl: t, m: make(map[windowKey]*listInfo), checked: make(map[string]bool)}, nil
}

// name renders the list name of an audience and type.
func (l *lists) name(a *audience, t ident.Type) (string, error) {
	var b strings.Builder
	display := a.name
	if display == "" {
		display = a.key
	}
	err := l.tmpl.Execute(&b, struct{ Audience, Name, ListType string }{a.key, display, t.String()})
	return b.String(), err
}

func (l *lists) info(k windowKey) *listInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	li := l.m[k]
	if li == nil {
		li = &listInfo{}
		l.m[k] = li
	}
	return li
}

// snapshot returns a copy of every list known.
func (l *lists) snapshot() map[windowKey]listInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[windowKey]listInfo, len(l.m))
	for k, v := range l.m {
		out[k] = *v
	}
	return out
}

// ensure returns the list id for window k, finding the list by name or
// creating it with adds. created reports that adds went into the new list.
// An empty id with no error means there is no list and nothing to add: a
// removal from a list that does not exist has nothing to do.
func (l *lists) ensure(ctx context.Context, a *audience, k windowKey, adds []ident.Hash) (id string, created bool, err error) {
	li := l.info(k)
	l.mu.Lock()
	id, aud := li.listID, li.audienceID
	checked := l.checked[a.adAccount]
	l.mu.Unlock()
	if id != "" && aud != "" {
		return id, false, nil
	}
	if !checked {
		if err := l.pin.CheckWriteAccess(ctx, a.adAccount); err != nil {
			return "", false, err
		}
		l.mu.Lock()
		l.checked[a.adAccount] = true
		l.mu.Unlock()
	}
	name, err := l.name(a, k.typ)
	if err != nil {
		return "", false, fmt.Errorf("list name for audience %q: %w", a.key, err)
	}
	if l.claims != nil {
		return l.ensureClaimed(ctx, a, k, li, name, adds)
	}
	if id == "" {
		cl, found, err := l.pin.FindCustomerList(ctx, a.adAccount, name)
		if err != nil {
			return "", false, err
		}
		if found {
			id = cl.ID
		} else if len(adds) == 0 {
			return "", false, nil
		}
	}
	// The list exists (and holds adds when created) even when the audience
	// step fails: a retry finds it in the cache and only completes the
	// audience.
	return l.make(ctx, a, k, li, name, id, adds)
}

// make creates the list with adds unless id names it already, records it
// for window k, and finds or creates its CUSTOMER_LIST audience. created
// reports that adds went into a new list.
func (l *lists) make(ctx context.Context, a *audience, k windowKey, li *listInfo, name, id string, adds []ident.Hash) (string, bool, error) {
	created := false
	if id == "" {
		cl, err := l.pin.CreateCustomerList(ctx, a.adAccount, name, k.typ, adds)
		if err != nil {
			return "", false, err
		}
		id, created = cl.ID, true
	}
	l.mu.Lock()
	li.name, li.listID = name, id
	l.mu.Unlock()
	return id, created, l.ensureAudience(ctx, a, li, name, id)
}

func (l *lists) ensureAudience(ctx context.Context, a *audience, li *listInfo, name, listID string) error {
	auds, err := l.pin.Audiences(ctx, a.adAccount)
	if err != nil {
		return err
	}
	for _, au := range auds {
		if au.Rule.CustomerListID == listID {
			l.setAudience(li, au)
			return nil
		}
	}
	au, err := l.pin.CreateAudience(ctx, a.adAccount, name, listID)
	if err != nil {
		return err
	}
	l.setAudience(li, au)
	return nil
}

func (l *lists) setAudience(li *listInfo, au pinterest.Audience) {
	l.mu.Lock()
	defer l.mu.Unlock()
	li.audienceID = au.ID
	if au.Size != nil {
		li.size = *au.Size
	}
	li.status = au.Status
}

// poll refreshes each known audience's size and status from Pinterest:
// the size Pinterest reports counts matched users, not uploaded records.
func (e *Engine) pollAudiences(ctx context.Context) {
	for k, li := range e.lists.snapshot() {
		if li.audienceID == "" || ctx.Err() != nil {
			continue
		}
		a := e.auds.get(k.aud)
		if a == nil {
			continue
		}
		au, err := e.pin.Audience(ctx, a.adAccount, li.audienceID)
		if err != nil {
			e.log.Warn("audience poll failed", "audience", a.key, "list_type", k.typ.String(), "err", err)
			continue
		}
		e.lists.setAudience(e.lists.info(k), au)
		var size float64
		if au.Size != nil {
			size = float64(*au.Size)
		}
		ready := 0.0
		if au.Status == "READY" {
			ready = 1
		}
		e.m.pinSize.WithLabelValues(a.key, k.typ.String()).Set(size)
		e.m.pinReady.WithLabelValues(a.key, k.typ.String()).Set(ready)
	}
}

// pollLoop polls audiences every AudiencePollInterval (never when negative).
func (e *Engine) pollLoop(ctx context.Context) {
	if e.cfg.AudiencePollInterval < 0 {
		return
	}
	every(ctx, e.cfg.AudiencePollInterval, func() { e.pollAudiences(ctx) })
}
