package window

import (
	"encoding/binary"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/schemas/ident"
)

// The tests speak of changes to audiences' lists, as the profile stage
// emits them; testWindows turns them into a Set's calls.

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
func listOf(aud uint32, typ ident.Type) ListID { return ListID(aud*(ident.NumTypes+1) + uint32(typ)) }

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

// testWindows is a Set whose pending counts go to a tracker at once.
type testWindows struct {
	*Set
	tr *commit.Tracker
	// list is the window of an audience's list (default listOf).
	list func(aud uint32, typ ident.Type) ListID
}

// newTestWindows returns a Set with the given per-request maximum and one
// tracked partition.
func newTestWindows(max int) (*testWindows, *commit.Tracker, *commit.Partition) {
	tr := commit.NewTracker()
	pt := tr.Assign("events", 0, -1)
	return &testWindows{Set: New(max, 0), tr: tr, list: listOf}, tr, pt
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
		ws.Set.Add(ws.list(cs[i].aud, cs[i].typ), run, pk, now, &d)
		i = j
	}
	ws.tr.Apply(&d)
}

// finish ends a flight and applies the pending counts.
func (ws *testWindows) finish(f *Flight, ok func(int) bool, failed bool, now time.Time, backoff func(int) time.Duration) int {
	var d commit.Deltas
	n := ws.Set.Finish(f, ok, failed, now, backoff, &d)
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

func win(ws *testWindows, aud uint32) *Window {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	l := listOf(aud, ident.Email)
	if int(l) >= len(ws.byID) {
		return nil
	}
	return ws.byID[l]
}

func keysOf(ws []*Window) []uint32 {
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
