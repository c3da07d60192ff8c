package window

import (
	"context"
	"testing"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
)

// BenchmarkWindowAdd measures putting 1,000 changes to 12 lists into the
// windows, as a worker does with 12 records of the changes topic, per
// change; the pending counts are applied once, as a worker does.
func BenchmarkWindowAdd(b *testing.B) {
	tr := commit.NewTracker()
	pt := tr.Assign("t", 0, -1)
	const lists = 12
	per := make([][]changes.Change, lists)
	for l := range per {
		per[l] = make([]changes.Change, 1000/lists)
	}
	now := time.Unix(0, 0)
	var n uint64
	var d commit.Deltas
	b.ReportAllocs()
	for b.Loop() {
		ws := New(5000, 0)
		pk := tr.Open(pt)
		for l := range per {
			for i := range per[l] {
				n++
				per[l][i] = changes.Change{Hash: benchHash(n, 0), Op: changes.Op(1 + n%2)}
			}
			ws.Add(ListID(l), per[l], pk, now, &d)
		}
		tr.Apply(&d)
		d.Reset()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lists*len(per[0])), "ns/change")
}

// BenchmarkWindowTake measures taking a full window of 5,000 adds into a
// flight and finishing it.
func BenchmarkWindowTake(b *testing.B) {
	tr := commit.NewTracker()
	pt := tr.Assign("t", 0, -1)
	cs := make([]changes.Change, 5000)
	for i := range cs {
		cs[i] = changes.Change{Hash: benchHash(uint64(i), 9), Op: changes.Add}
	}
	now := time.Unix(0, 0)
	ok := func(int) bool { return true }
	backoff := func(int) time.Duration { return 0 }
	var d commit.Deltas
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		ws := New(5000, 0)
		ws.Add(1, cs, tr.Open(pt), now, &d)
		w := ws.byID[1]
		b.StartTimer()
		f, _ := ws.Take(w, "full", context.Background())
		ws.Finish(f, ok, false, now, backoff, &d)
		tr.Apply(&d)
		d.Reset()
	}
}
