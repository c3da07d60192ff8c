package lists

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// The tests speak of changes to audiences' lists, as the profile stage
// emits them; testWindows turns them into the list stage's calls.

type (
	op        = changes.Op
	pendKey   = commit.Key
	partTrack = commit.Partition
)

const (
	opAdd    = changes.Add
	opRemove = changes.Remove
)

// change is one change to the list of audience aud and type typ.
type change struct {
	aud     uint32
	typ     ident.Type
	hash    ident.Hash
	op      op
	vouched bool
}

// audA is the audience most window tests use.
const audA uint32 = 1

// listOf is the list id the tests give audience aud's list of type typ.
func listOf(aud uint32, typ ident.Type) listID { return listID(aud*(ident.NumTypes+1) + uint32(typ)) }

// t0 is the arrival time of the first change in the window tests.
var t0 = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

const interval = 10 * time.Second

// hashN is a distinct record for each n.
func hashN(n int) ident.Hash {
	var h ident.Hash
	binary.BigEndian.PutUint64(h[:], uint64(n)+1)
	return h
}

func chg(aud uint32, o op, n int) change {
	return change{aud: aud, typ: ident.Email, hash: hashN(n), op: o}
}

// vouched is chg for a change the profile state vouches for.
func vouched(aud uint32, o op, n int) change {
	c := chg(aud, o, n)
	c.vouched = true
	return c
}

// changesTo returns n changes with op o to records first..first+n-1.
func changesTo(aud uint32, o op, first, n int) []change {
	out := make([]change, n)
	for i := range out {
		out[i] = chg(aud, o, first+i)
	}
	return out
}

// testWindows is windows whose pending counts go to a tracker at once.
type testWindows struct {
	*windows
	tr *commit.Tracker
	// list is the window of an audience's list (default listOf).
	list func(aud uint32, typ ident.Type) listID
}

// newTestWindows returns windows with the given per-request maximum and one
// tracked partition.
func newTestWindows(max int) (*testWindows, *commit.Tracker, *commit.Partition) {
	tr := commit.NewTracker()
	pt := tr.Assign("events", 0, -1)
	return &testWindows{windows: newWindows(max, 0), tr: tr, list: listOf}, tr, pt
}

// add puts cs into their windows, consecutive changes to one list in one
// call, and applies the pending counts.
func (ws *testWindows) add(cs []change, pk commit.Key, now time.Time) {
	var d commit.Deltas
	for i := 0; i < len(cs); {
		j := i
		var run []changes.Change
		for ; j < len(cs) && cs[j].aud == cs[i].aud && cs[j].typ == cs[i].typ; j++ {
			run = append(run, changes.Change{Hash: cs[j].hash, Op: cs[j].op, Vouched: cs[j].vouched})
		}
		ws.windows.add(ws.list(cs[i].aud, cs[i].typ), run, pk, now, &d)
		i = j
	}
	ws.tr.Apply(&d)
}

// finish ends a flight and applies the pending counts.
func (ws *testWindows) finish(f *flight, ok func(int) bool, failed bool, now time.Time, backoff func(int) time.Duration) int {
	var d commit.Deltas
	n := ws.windows.finish(f, ok, failed, now, backoff, &d)
	ws.tr.Apply(&d)
	return n
}

// open is the open epoch of pt.
func (ws *testWindows) open(pt *commit.Partition) commit.Key { return ws.tr.Open(pt) }

// openPending and sealedPending are pt's pending counts.
func (ws *testWindows) openPending(pt *commit.Partition) int {
	n, _ := ws.tr.Pending(pt)
	return n
}

func (ws *testWindows) sealedPending(pt *commit.Partition) []int {
	_, s := ws.tr.Pending(pt)
	return s
}

func win(ws *testWindows, aud uint32) *window {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	l := listOf(aud, ident.Email)
	if int(l) >= len(ws.byID) {
		return nil
	}
	return ws.byID[l]
}

func keysOf(ws []*window) []uint32 {
	out := make([]uint32, len(ws))
	for i, w := range ws {
		out[i] = uint32(w.key) / (ident.NumTypes + 1)
	}
	return out
}

func allOK(int) bool  { return true }
func noneOK(int) bool { return false }

func noBackoff(int) time.Duration { return 0 }

// fixedBackoff waits d whatever the number of failures.
func fixedBackoff(d time.Duration) func(int) time.Duration {
	return func(int) time.Duration { return d }
}

// commitAt returns the offset a commit of p would take now (-1: none) and
// pops the completed epochs, as the committer does.
func commitAt(tr *commit.Tracker, p *commit.Partition) int64 {
	last := tr.Completed(p)
	if last == nil {
		return -1
	}
	return last.Next
}

// pinFunc is a Pinterest whose list writes go to a function; every list
// and audience exists already.
type pinFunc func(ctx context.Context, op pinterest.Operation, records []ident.Hash) error

func (f pinFunc) CheckWriteAccess(context.Context, string) error { return nil }
func (f pinFunc) CustomerLists(context.Context, string) ([]pinterest.CustomerList, error) {
	return nil, nil
}
func (f pinFunc) CreateCustomerList(context.Context, string, string, ident.Type, []ident.Hash) (pinterest.CustomerList, error) {
	return pinterest.CustomerList{}, errors.New("unexpected create")
}
func (f pinFunc) UpdateCustomerList(ctx context.Context, _, _ string, op pinterest.Operation, records []ident.Hash) error {
	return f(ctx, op, records)
}
func (f pinFunc) Audiences(context.Context, string) ([]pinterest.Audience, error) {
	return nil, nil
}
func (f pinFunc) CreateAudience(_ context.Context, _, name, listID string) (pinterest.Audience, error) {
	return pinterest.Audience{ID: "aud-" + name, Rule: pinterest.AudienceRule{CustomerListID: listID}}, nil
}
func (f pinFunc) RepointAudience(_ context.Context, _, audienceID, listID string) (pinterest.Audience, error) {
	return pinterest.Audience{ID: audienceID, Rule: pinterest.AudienceRule{CustomerListID: listID}}, nil
}
func (f pinFunc) Audience(context.Context, string, string) (pinterest.Audience, error) {
	return pinterest.Audience{}, errors.New("unexpected read")
}

// call is one list write the fake Pinterest saw.
type call struct {
	at      time.Time
	op      pinterest.Operation
	records int
}

// newSchedStage builds a stage (no Kafka) whose uploads go to pin, with one
// tracked partition and one resolved list; it returns the stage, windows
// that apply pending counts to its tracker (an audience number there is a
// list of the stage), the partition and the list.
func newSchedStage(t interface {
	Helper()
	Fatal(...any)
}, ctx context.Context, maxRecords int, pin Pinterest) (*Stage, *testWindows, *commit.Partition, uint32) {
	t.Helper()
	s, err := New(Config{
		Topic: "changes", Partitions: 1, Group: "g.lists", DLQTopic: "g.dlq", DLQPartitions: 1,
		FlushInterval: interval, CommitInterval: time.Second, RevokeTimeout: time.Second,
		MaxRecords: maxRecords, MaxBuffered: 1_000_000, MaxFlights: 4, ListNameTemplate: DefaultListNameTemplate, ParkedRetry: time.Second,
	}, Deps{Pinterest: pin})
	if err != nil {
		t.Fatal(err)
	}
	s.uploadCtx = ctx
	pt := s.tr.Assign("changes", 0, -1)
	tw := &testWindows{windows: s.ws, tr: s.tr, list: func(aud uint32, _ ident.Type) listID { return listID(aud) }}
	return s, tw, pt, s.resolvedList("aud")
}

// resolvedList interns the EMAIL list of audience aud, as found at
// Pinterest, and returns its id.
func (s *Stage) resolvedList(aud string) uint32 {
	li := s.lists.intern(changes.List{Audience: aud, Type: ident.Email}, changes.Header{AdAccount: "549755885175"}, 0)
	li.setIDs(listIDs{name: "pinsync " + aud + " EMAIL", listID: "list-" + aud, audienceID: "aud-" + aud})
	return uint32(li.id)
}

// benchHash is a distinct, hash-like record for tests and benchmarks.
func benchHash(i, salt uint64) ident.Hash {
	var h ident.Hash
	x := i*0x9e3779b97f4a7c15 + salt
	for j := 0; j < len(h); j += 8 {
		x ^= x >> 31
		x *= 0xbf58476d1ce4e5b9
		binary.LittleEndian.PutUint64(h[j:], x)
	}
	return h
}
