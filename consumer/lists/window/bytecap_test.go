package window

import (
	"runtime"
	"testing"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/schemas/ident"
)

// countedBytes recomputes what windows should count: every table's array
// (with room for its flight's records to come back) and a flight's worth
// of room per buffered record.
func countedBytes(ws *Set) int64 {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var n int64
	ws.eachLocked(func(w *Window) {
		back := 0
		if w.flight != nil {
			back = len(w.flight.meta)
		}
		n += max(int64(len(w.entries.slots))*slotBytes, w.entries.tableBytesWith(back))
	})
	return n + int64(ws.buffered)*flightRecordBytes
}

// TestByteCapHoldsAndFreesWithUploads: changes go into windows until the
// next one might take them past the byte cap; then add refuses it, and the
// bytes counted, which are the tables and a flight's room per record,
// never pass the cap. A flight takes no more than its records' room; once
// it finishes, room is free again.
func TestByteCapHoldsAndFreesWithUploads(t *testing.T) {
	const limit = 256 << 10
	ws := New(500, limit)
	tr := commit.NewTracker()
	pt := tr.Assign("changes", 0, -1)
	var d commit.Deltas
	accepted := 0
	for n := 0; ; n++ {
		c := []changes.Change{{Hash: hashN(n), Op: changes.Add}}
		if !ws.Add(listOf(uint32(n%3), ident.Email), c, tr.Open(pt), t0, &d) {
			break
		}
		accepted++
		if got, want := ws.Bytes(), countedBytes(ws); got != want || got > limit {
			t.Fatalf("after %d records: counted %d bytes, recomputed %d, cap %d", accepted, got, want, limit)
		}
		if n > 1_000_000 {
			t.Fatal("the cap never refused a change")
		}
	}
	tr.Apply(&d)
	if accepted < 100 {
		t.Fatalf("only %d records fit under %d bytes", accepted, limit)
	}
	before := ws.Bytes()
	w := ws.lookup(listOf(0, ident.Email))
	f, _ := ws.Take(w, FlushInterval, t.Context())
	held := int64(cap(f.adds)+cap(f.removes))*int64(len(ident.Hash{})) + int64(cap(f.meta))*(flightRecordBytes-int64(len(ident.Hash{})))
	if held > int64(f.Records())*flightRecordBytes {
		t.Errorf("a flight of %d records holds %d bytes, more than the %d counted for it", f.Records(), held, int64(f.Records())*flightRecordBytes)
	}
	if got := ws.Bytes(); got > before || got != countedBytes(ws) {
		t.Errorf("taking a flight: counted %d bytes (recomputed %d), %d before", got, countedBytes(ws), before)
	}
	ws.Finish(f, func(int) bool { return true }, false, t0, noBackoff, &d)
	tr.Apply(&d)
	if got := ws.Bytes(); got >= before || got != countedBytes(ws) {
		t.Errorf("after the flight: counted %d bytes (recomputed %d), %d before", got, countedBytes(ws), before)
	}
	if !ws.Add(listOf(0, ident.Email), []changes.Change{{Hash: hashN(-5), Op: changes.Add}}, tr.Open(pt), t0, &d) {
		t.Error("no room after a flight freed some")
	}
}

// TestByteCapIsAnUpperBoundOfTheHeap: windows filled to a 16 MiB cap take
// no more heap than they count.
func TestByteCapIsAnUpperBoundOfTheHeap(t *testing.T) {
	const limit = 16 << 20
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	start := ms.HeapAlloc
	ws := New(5000, limit)
	tr := commit.NewTracker()
	pt := tr.Assign("changes", 0, -1)
	var d commit.Deltas
	cs := make([]changes.Change, 100)
	for n := 0; ; n++ {
		for i := range cs {
			cs[i] = changes.Change{Hash: hashN(n*len(cs) + i), Op: changes.Add}
		}
		if !ws.Add(listOf(uint32(n%40), ident.Email), cs, tr.Open(pt), t0, &d) {
			break
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grown := int64(ms.HeapAlloc) - int64(start)
	if counted := ws.Bytes(); grown > counted {
		t.Errorf("the windows grew the heap by %d bytes but count %d", grown, counted)
	}
	t.Logf("%d records: %d bytes counted, heap grew %d", ws.Buffered(), ws.Bytes(), grown)
	runtime.KeepAlive(ws)
}
