package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// BenchmarkWindowAdd measures putting a batch of 1,000 changes (12 lists)
// into the windows, per change.
func BenchmarkWindowAdd(b *testing.B) {
	tr := newTracker()
	pt := tr.assign(partKey{"t", 0}, -1)
	cs := make([]change, 1000)
	now := time.Unix(0, 0)
	var n uint64
	b.ReportAllocs()
	for b.Loop() {
		ws := newWindows(tr, 5000)
		for i := range cs {
			n++
			cs[i] = change{aud: uint32(n % 4), typ: ident.Type(1 + n%3), hash: benchHash(n, 0), op: op(1 + n%2)}
		}
		ws.add(cs, pendKey{pt, pt.open}, now)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cs)), "ns/change")
}

// BenchmarkWindowTake measures taking a full window of 5,000 adds into a
// flight and finishing it.
func BenchmarkWindowTake(b *testing.B) {
	tr := newTracker()
	pt := tr.assign(partKey{"t", 0}, -1)
	cs := make([]change, 5000)
	for i := range cs {
		cs[i] = change{aud: 1, typ: ident.Email, hash: benchHash(uint64(i), 9), op: opAdd}
	}
	now := time.Unix(0, 0)
	ok := func(int) bool { return true }
	backoff := func(int) time.Duration { return 0 }
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		ws := newWindows(tr, 5000)
		ws.add(cs, pendKey{pt, pt.open}, now)
		w := ws.m[windowKey{1, ident.Email}]
		b.StartTimer()
		f, _ := ws.take(w, "full", context.Background())
		ws.finish(f, ok, false, now, backoff)
	}
}

// BenchmarkProfileApply measures folding a membership event (two
// identifiers) into the state of 100,000 profiles.
func BenchmarkProfileApply(b *testing.B) {
	s := newProfiles(5, nil)
	const profiles = 100_000
	keys := make([]string, profiles)
	for i := range keys {
		keys[i] = "usr_" + string(rune('a'+i%26)) + string(benchHash(uint64(i), 3).AppendHex(nil)[:8])
	}
	ids := []schemas.Identifier{{Type: ident.Email}, {Type: ident.IDFA}}
	ev := schemas.Event{Kind: schemas.KindMembership}
	emit := func(change) {}
	var i uint64
	b.ReportAllocs()
	for b.Loop() {
		i++
		p := i % profiles
		ev.Profile = keys[p]
		ids[0].Hash = benchHash(p, 1)
		ids[1].Hash = benchHash(p, 2)
		ev.Identifiers = ids
		ev.Member = i%3 != 0
		s.apply(&ev, uint32(1+i%3), emit)
	}
}
