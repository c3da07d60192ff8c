package sink

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
)

// The sink's tests run against the Pinterest sandbox over HTTP, through
// the real client: what a list holds is read from the sandbox.

// fixture is a sink whose member's side (dead letters, window modes, the
// guard) is recorded, writing to a sandbox.
type fixture struct {
	t    *testing.T
	sb   *sandbox.Server
	sink *Sink
	reg  *memRegistry

	mu    sync.Mutex
	dead  []Refused
	modes map[window.ListID]window.Mode
	// refuse, when set, is what the guard answers after allow more calls.
	refuse error
	allow  int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	sb, err := sandbox.New(sandbox.Config{WritesPerMinute: -1, ReadsPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	pin, err := pinterest.New(pinterest.Config{
		BaseURL: srv.URL, AppID: sandbox.DefaultAppID, AppSecret: sandbox.DefaultAppSecret,
		TokenStore: &memTokens{tok: &oauth2.Token{RefreshToken: sandbox.DefaultRefreshToken}}, WritesPerMinute: -1, ReadsPerMinute: -1,
		MaxBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, sb: sb, reg: &memRegistry{entries: map[control.ListKey]control.ListEntry{}}, modes: map[window.ListID]window.Mode{}}
	f.sink, err = New(Config{Partitions: 4, MaxRecords: 100, ListNameTemplate: DefaultListNameTemplate, AudiencePollInterval: -1, ParkedRetry: time.Minute},
		Deps{
			Pinterest: pin, Registry: f.reg,
			// The profile state of these tests has no member.
			Members: func(context.Context) (MemberReader, error) { return noMembers{}, nil },
			Owned:   func() map[int32]bool { return map[int32]bool{0: true, 1: true, 2: true, 3: true} },
			SetMode: func(l window.ListID, m window.Mode) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.modes[l] = m
			},
			Backoff: func(int) time.Duration { return time.Millisecond },
			DeadLetter: func(_ context.Context, r Refused) error {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.dead = append(f.dead, r)
				return nil
			},
			Guard: func(context.Context, int32) error {
				f.mu.Lock()
				defer f.mu.Unlock()
				if f.refuse != nil && f.allow > 0 {
					f.allow--
					return nil
				}
				return f.refuse
			},
		})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// list interns the EMAIL list of audience aud.
func (f *fixture) list(aud string) window.ListID {
	return f.sink.Intern(changes.List{Audience: aud, Type: ident.Email}, changes.Header{AdAccount: sandbox.DefaultAdAccountID}, 0)
}

// held returns the records the sandbox's list named name holds.
func (f *fixture) held(name string) []string {
	for _, l := range f.sb.State().CustomerLists {
		if l.Name == name {
			return l.Records
		}
	}
	return nil
}

// hashes returns records first..first+n-1, and their hex forms sorted.
func hashes(first, n int) ([]ident.Hash, []string) {
	hs := make([]ident.Hash, n)
	hex := make([]string, n)
	for i := range hs {
		hs[i] = sha256.Sum256([]byte{byte(first + i), byte((first + i) >> 8)})
		hex[i] = hs[i].String()
	}
	slices.Sort(hex)
	return hs, hex
}

// TestUploadCreatesTheListOnceThenUpdatesIt: the first upload to a list
// creates it with its adds (the removes, disjoint, have nothing to
// remove); the next adds and removes records of the same list.
func TestUploadCreatesTheListOnceThenUpdatesIt(t *testing.T) {
	f := newFixture(t)
	l := f.list("vip")
	first, _ := hashes(0, 10)
	if r := f.sink.Upload(t.Context(), l, first, nil); r.Err != nil || !r.AddsOK || !r.RemovesOK {
		t.Fatalf("first upload: %+v", r)
	}
	more, _ := hashes(10, 5)
	if r := f.sink.Upload(t.Context(), l, more, first[:5]); r.Err != nil || !r.AddsOK || !r.RemovesOK {
		t.Fatalf("second upload: %+v", r)
	}
	_, want := hashes(5, 10)
	if got := f.held("pinsync vip EMAIL"); !slices.Equal(got, want) {
		t.Fatalf("the list holds %d records, want records 5..14 (%d)", len(got), len(want))
	}
	st := f.sb.State()
	if len(st.CustomerLists) != 1 || len(st.Audiences) != 1 || st.Audiences[0].CustomerListID != st.CustomerLists[0].ID {
		t.Fatalf("lists %d, audiences %+v: want one list and its CUSTOMER_LIST audience", len(st.CustomerLists), st.Audiences)
	}
	if e, ok := f.reg.entries[control.ListKey{AdAccount: sandbox.DefaultAdAccountID, Audience: "vip", Type: ident.Email}]; !ok || e.CustomerListID != st.CustomerLists[0].ID {
		t.Fatalf("registry entry %+v, want the list's ids", e)
	}
}

// TestRefusedRecordsAreBisectedAndDeadLettered: records Pinterest refuses
// for good, in a creation or in an update, are found by bisecting their
// request and dead-lettered alone; every other record reaches the list.
func TestRefusedRecordsAreBisectedAndDeadLettered(t *testing.T) {
	f := newFixture(t)
	l := f.list("vip")
	adds, _ := hashes(0, 20)
	bad := []ident.Hash{adds[3], adds[14]}
	if err := f.sb.SetFaults(sandbox.Faults{RefuseRecords: []string{bad[0].String(), bad[1].String()}}); err != nil {
		t.Fatal(err)
	}
	if r := f.sink.Upload(t.Context(), l, adds, nil); r.Err != nil || !r.AddsOK {
		t.Fatalf("upload: %+v", r)
	}
	var want []string
	for _, h := range adds {
		if !slices.Contains(bad, h) {
			want = append(want, h.String())
		}
	}
	slices.Sort(want)
	if got := f.held("pinsync vip EMAIL"); !slices.Equal(got, want) {
		t.Fatalf("the list holds %d records, want the %d Pinterest takes", len(got), len(want))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.dead) != 2 {
		t.Fatalf("dead letters %+v, want the two refused records", f.dead)
	}
	for _, d := range f.dead {
		if !slices.Contains(bad, d.Hash) || d.Op != string(pinterest.Add) || d.List.Audience != "vip" || d.Code == "" {
			t.Fatalf("dead letter %+v", d)
		}
	}
}

// TestAListDeletedAtPinterestIsParked: a write answered 404 marks the
// list for a rebuild in the registry and drops its window's changes before
// Upload returns.
func TestAListDeletedAtPinterestIsParked(t *testing.T) {
	f := newFixture(t)
	l := f.list("vip")
	adds, _ := hashes(0, 3)
	if r := f.sink.Upload(t.Context(), l, adds, nil); r.Err != nil {
		t.Fatal(r.Err)
	}
	f.sb.DeleteCustomerList(f.sb.State().CustomerLists[0].ID)
	more, _ := hashes(3, 3)
	r := f.sink.Upload(t.Context(), l, more, nil)
	if !r.Parked || pinterest.Classify(r.Err) != pinterest.ClassNotFound {
		t.Fatalf("upload to a deleted list: %+v, want parked with the 404", r)
	}
	e := f.reg.entries[control.ListKey{AdAccount: sandbox.DefaultAdAccountID, Audience: "vip", Type: ident.Email}]
	f.mu.Lock()
	mode := f.modes[l]
	f.mu.Unlock()
	if e.Rebuild != control.RebuildNotFound || mode != window.ModeDrop {
		t.Fatalf("registry mark %q, window mode %d: want %q and ModeDrop", e.Rebuild, mode, control.RebuildNotFound)
	}
	if ls := f.sink.Lists(nil); len(ls) != 1 || ls[0].Parked != control.RebuildNotFound {
		t.Fatalf("status %+v, want the list parked", ls)
	}
}

// TestNoWriteLeavesWithoutTheGuard: a write the guard refuses is not sent,
// and the upload's error says why.
func TestNoWriteLeavesWithoutTheGuard(t *testing.T) {
	f := newFixture(t)
	notOwner := errors.New("not the owner")
	f.refuse = notOwner
	adds, _ := hashes(0, 3)
	r := f.sink.Upload(t.Context(), f.list("vip"), adds, nil)
	if !errors.Is(r.Err, notOwner) || r.AddsOK {
		t.Fatalf("upload under a refusing guard: %+v", r)
	}
	if st := f.sb.State(); len(st.CustomerLists) != 0 {
		t.Fatalf("%d lists created although the guard refused", len(st.CustomerLists))
	}
}

// TestNoRegistryWriteLeavesWithoutTheGuard: a member that no longer owns
// a list (a replica paused past its session) writes nothing to the
// registry either: neither a list's ids nor a rebuild mark.
func TestNoRegistryWriteLeavesWithoutTheGuard(t *testing.T) {
	f := newFixture(t)
	l := f.list("vip")
	adds, _ := hashes(0, 3)
	if r := f.sink.Upload(t.Context(), l, adds, nil); r.Err != nil {
		t.Fatal(r.Err)
	}
	key := control.ListKey{AdAccount: sandbox.DefaultAdAccountID, Audience: "vip", Type: ident.Email}
	before := f.reg.entries[key]
	f.sb.DeleteCustomerList(f.sb.State().CustomerLists[0].ID)
	notOwner := errors.New("not the owner")
	f.mu.Lock()
	f.refuse, f.allow = notOwner, 1 // the write goes (and meets the 404), the mark does not
	f.mu.Unlock()
	more, _ := hashes(3, 3)
	if r := f.sink.Upload(t.Context(), l, more, nil); r.Parked || pinterest.Classify(r.Err) != pinterest.ClassNotFound {
		t.Fatalf("upload whose mark the guard refused: %+v, want the 404 and no parking", r)
	}
	if after := f.reg.entries[key]; after.Rebuild != "" || after.CustomerListID != before.CustomerListID {
		t.Fatalf("registry entry %+v, want it untouched (%+v)", after, before)
	}
	// A new list's ids are not recorded either.
	m := f.list("members")
	if r := f.sink.Upload(t.Context(), m, adds, nil); r.Err == nil {
		t.Fatalf("upload of a new list under a refusing guard: %+v", r)
	}
	if _, ok := f.reg.entries[control.ListKey{AdAccount: sandbox.DefaultAdAccountID, Audience: "members", Type: ident.Email}]; ok {
		t.Fatal("a new list was recorded although the guard refused")
	}
}

// memRegistry is a list registry in memory.
type memRegistry struct {
	mu      sync.Mutex
	entries map[control.ListKey]control.ListEntry
}

func (r *memRegistry) Lookup(_ context.Context, k control.ListKey) (control.ListEntry, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[k]
	return e, ok, nil
}

func (r *memRegistry) Current(ctx context.Context, k control.ListKey) (control.ListEntry, bool, error) {
	return r.Lookup(ctx, k)
}

func (r *memRegistry) Record(_ context.Context, k control.ListKey, e control.ListEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries[k] = e
	return nil
}

func (r *memRegistry) Update(_ context.Context, k control.ListKey, change func(control.ListEntry, bool) (control.ListEntry, error)) (control.ListEntry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.entries[k]
	next, err := change(cur, ok)
	if err != nil {
		return cur, err
	}
	r.entries[k] = next
	return next, nil
}

func (r *memRegistry) Rebuilds() map[control.ListKey]control.ListEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[control.ListKey]control.ListEntry{}
	for k, e := range r.entries {
		if e.Rebuild != "" {
			out[k] = e
		}
	}
	return out
}

// memTokens is a token store in memory.
type memTokens struct {
	mu  sync.Mutex
	tok *oauth2.Token
}

func (s *memTokens) Load(context.Context) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok, nil
}

func (s *memTokens) Save(_ context.Context, tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tok = tok
	return nil
}

// noMembers is a profile state of one partition with no member.
type noMembers struct{}

func (noMembers) Partitions() []int32 { return []int32{0} }
func (noMembers) Read(context.Context, int32, int, int, []changes.List) (map[changes.List][]ident.Hash, bool, error) {
	return nil, true, nil
}
func (noMembers) Close() {}
