package window

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/pinsync/pinsync/schemas/ident"
)

// m returns the entries of s as a map, for tests to index and print.
func (s *entrySet) m() map[ident.Hash]entry {
	out := make(map[ident.Hash]entry, s.len())
	s.each(func(h ident.Hash, e entry) bool {
		out[h] = e
		return true
	})
	return out
}

// checkEntrySet fails t unless s holds exactly the entries of want, through
// len, each and get, and its slots are consistent: a power-of-two number,
// load at most 3/4, every entry reachable from its home slot without
// crossing an empty slot, and, after deletions, no large array for few
// entries.
func checkEntrySet(t *testing.T, s *entrySet, want map[ident.Hash]entry) {
	t.Helper()
	if s.len() != len(want) {
		t.Fatalf("len = %d, want %d", s.len(), len(want))
	}
	seen := make(map[ident.Hash]bool, len(want))
	s.each(func(h ident.Hash, e entry) bool {
		if seen[h] {
			t.Fatalf("each: %x twice", h[:8])
		}
		seen[h] = true
		if w, ok := want[h]; !ok || w != e {
			t.Fatalf("each: %x = %v, want %v (present %v)", h[:8], e, w, ok)
		}
		return true
	})
	if len(seen) != len(want) {
		t.Fatalf("each: %d entries, want %d", len(seen), len(want))
	}
	for h, w := range want {
		if e, ok := s.get(h); !ok || e != w {
			t.Fatalf("get(%x) = %v, %v; want %v", h[:8], e, ok, w)
		}
	}
	size := len(s.slots)
	if size&(size-1) != 0 {
		t.Fatalf("%d slots: not a power of two", size)
	}
	if size > 0 && s.n*4 > size*3 {
		t.Fatalf("load %d/%d above 3/4", s.n, size)
	}
	if s.n == 0 && size > entryMinSlots {
		t.Fatalf("empty set keeps %d slots", size)
	}
	if size > entryShrinkSlots && s.n*8 < size {
		t.Fatalf("%d entries keep %d slots", s.n, size)
	}
	used := 0
	mask := uint64(size - 1)
	for i := range s.slots {
		sl := &s.slots[i]
		if sl.e.op == 0 {
			if *sl != (entrySlot{}) {
				t.Fatalf("empty slot %d not cleared: %v", i, *sl)
			}
			continue
		}
		used++
		for j := entryHome(&sl.hash, mask); j != uint64(i); j = (j + 1) & mask {
			if s.slots[j].e.op == 0 {
				t.Fatalf("slot %d unreachable from its home: empty slot %d between", i, j)
			}
		}
	}
	if used != s.n {
		t.Fatalf("%d slots used for %d entries", used, s.n)
	}
}

// modelKeys returns n distinct records: half fully random, half in four
// clusters whose words fold to the same value (see entryHome), so that each
// cluster shares one home slot at every size; one cluster's home is the
// last slot (up to 1<<16 slots), so that probe runs wrap around.
func modelKeys(r *rand.Rand, n int) []ident.Hash {
	le := binary.LittleEndian
	folds := []uint64{r.Uint64(), r.Uint64(), r.Uint64(), 0}
	for {
		var h ident.Hash
		x := r.Uint64()
		le.PutUint64(h[:8], x)
		if entryHome(&h, 1<<16-1) == 1<<16-1 {
			folds[3] = x
			break
		}
	}
	keys := make([]ident.Hash, 0, n)
	seen := make(map[ident.Hash]bool, n)
	for len(keys) < n {
		var h ident.Hash
		for j := 0; j < len(h); j += 8 {
			le.PutUint64(h[j:], r.Uint64())
		}
		if len(keys)%2 == 1 {
			x := folds[r.IntN(len(folds))] ^ le.Uint64(h[8:16]) ^ le.Uint64(h[16:24]) ^ le.Uint64(h[24:])
			le.PutUint64(h[:8], x)
		}
		if !seen[h] {
			seen[h] = true
			keys = append(keys, h)
		}
	}
	return keys
}

// TestEntrySetModel runs random upsert, get, del and each over a pool of
// records against a Go map, through growth to a few thousand entries and
// deletion back to none.
func TestEntrySetModel(t *testing.T) {
	for _, nkeys := range []int{1, 7, 60, 500, 5000} {
		t.Run(strconv.Itoa(nkeys), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(nkeys), 7))
			keys := modelKeys(r, nkeys)
			var s entrySet
			want := make(map[ident.Hash]entry)
			pt := &partTrack{}
			grew, shrank := false, false
			// Phases: mostly inserting, mixed, mostly deleting, then
			// deleting everything left.
			for phase, insertPct := range []int{90, 50, 10, 0} {
				steps := 4 * nkeys
				if insertPct == 0 {
					steps = 0
					for h := range want {
						before := len(s.slots)
						if !s.del(h) {
							t.Fatalf("del(%x) of a present record = false", h[:8])
						}
						delete(want, h)
						shrank = shrank || len(s.slots) < before
						if len(want)%97 == 0 {
							checkEntrySet(t, &s, want)
						}
					}
				}
				for step := range steps {
					h := keys[r.IntN(len(keys))]
					before := len(s.slots)
					switch k := r.IntN(100); {
					case k < insertPct:
						e := entry{op: op(1 + r.IntN(2)), before: listState(r.IntN(3)), pk: pendKey{P: pt, Epoch: uint32(step)}, ts: int64(phase)}
						p, existed := s.upsert(h)
						if _, ok := want[h]; ok != existed {
							t.Fatalf("upsert(%x) existed = %v, want %v", h[:8], existed, ok)
						}
						if existed && *p != want[h] {
							t.Fatalf("upsert(%x) = %v, want %v", h[:8], *p, want[h])
						}
						if !existed && *p != (entry{}) {
							t.Fatalf("upsert(%x) claimed a slot holding %v", h[:8], *p)
						}
						*p = e
						want[h] = e
					case k < insertPct+(100-insertPct)/2:
						_, ok := want[h]
						if got := s.del(h); got != ok {
							t.Fatalf("del(%x) = %v, want %v", h[:8], got, ok)
						}
						delete(want, h)
					default:
						e, ok := s.get(h)
						if w, wok := want[h]; ok != wok || e != w {
							t.Fatalf("get(%x) = %v, %v; want %v, %v", h[:8], e, ok, w, wok)
						}
					}
					grew = grew || len(s.slots) > before && before > 0
					shrank = shrank || len(s.slots) < before
					if step%(1+nkeys/8) == 0 {
						checkEntrySet(t, &s, want)
					}
				}
				checkEntrySet(t, &s, want)
			}
			if nkeys >= 60 && !grew {
				t.Fatal("the set never grew")
			}
			if nkeys >= 5000 && !shrank {
				t.Fatal("the set never shrank")
			}
		})
	}
}

// TestEntrySetZero: the zero set is empty and usable, and a set emptied by
// deletion or reset releases a large array; after a reset it starts again
// at the size it had.
func TestEntrySetZero(t *testing.T) {
	var s entrySet
	h := hashN(1)
	if _, ok := s.get(h); ok || s.del(h) || s.len() != 0 {
		t.Fatal("the zero set is not empty")
	}
	s.each(func(ident.Hash, entry) bool {
		t.Fatal("each on the zero set calls f")
		return false
	})
	s.reset()
	p, existed := s.upsert(h)
	if existed {
		t.Fatal("upsert into the zero set found an entry")
	}
	*p = entry{op: opAdd}
	checkEntrySet(t, &s, map[ident.Hash]entry{h: {op: opAdd}})
	if !s.del(h) || s.len() != 0 {
		t.Fatal("del of the only entry failed")
	}
	want := make(map[ident.Hash]entry)
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range modelKeys(r, 3000) {
		p, _ := s.upsert(k)
		*p = entry{op: opRemove}
		want[k] = *p
	}
	checkEntrySet(t, &s, want)
	size := len(s.slots)
	s.reset()
	if s.slots != nil {
		t.Fatalf("reset keeps %d slots", len(s.slots))
	}
	checkEntrySet(t, &s, nil)
	// Filled again, the set starts at the size it had.
	p, _ = s.upsert(h)
	*p = entry{op: opAdd}
	if len(s.slots) != size {
		t.Fatalf("refilled after reset: %d slots, want %d", len(s.slots), size)
	}
	// Emptied by deletion, it starts small again.
	s.del(h)
	if p, _ = s.upsert(h); len(s.slots) != entryMinSlots {
		t.Fatalf("refilled after deletions: %d slots, want %d", len(s.slots), entryMinSlots)
	}
	*p = entry{op: opAdd}
	checkEntrySet(t, &s, map[ident.Hash]entry{h: {op: opAdd}})
}

// TestEntrySetStructuredKeys: identifiers that pass through as 64-hex
// values need not be SHA-256 digests; keys differing only in a counter, at
// either end, must not pile up in one probe run.
func TestEntrySetStructuredKeys(t *testing.T) {
	const n = 4096
	for name, key := range map[string]func(i int) ident.Hash{
		"CounterFirst": hashN,
		"CounterLast": func(i int) ident.Hash {
			var h ident.Hash
			binary.BigEndian.PutUint64(h[24:], uint64(i))
			return h
		},
	} {
		t.Run(name, func(t *testing.T) {
			var s entrySet
			for i := range n {
				p, _ := s.upsert(key(i))
				*p = entry{op: opAdd}
			}
			mask := uint64(len(s.slots) - 1)
			total, longest := 0, 0
			for i := range s.slots {
				if s.slots[i].e.op != 0 {
					d := int((uint64(i) - entryHome(&s.slots[i].hash, mask)) & mask)
					total += d
					longest = max(longest, d)
				}
			}
			if mean := float64(total) / n; mean > 4 || longest > 64 {
				t.Fatalf("%d keys in %d slots: mean distance from home %.1f, longest %d", n, len(s.slots), mean, longest)
			}
		})
	}
}

// TestEntrySetEachFrom: a walk from any slot visits every entry once and
// stops where f says, returning the slot to go on from.
func TestEntrySetEachFrom(t *testing.T) {
	var s entrySet
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range modelKeys(r, 40) {
		p, _ := s.upsert(k)
		*p = entry{op: opAdd}
	}
	for _, start := range []int{0, 5, len(s.slots) - 1, 3 * len(s.slots)} {
		n := 0
		if next := s.eachFrom(start, func(ident.Hash, entry) bool { n++; return true }); next != start || n != 40 {
			t.Fatalf("walk from %d: %d entries, returned %d", start, n, next)
		}
		var first, third ident.Hash
		n = 0
		next := s.eachFrom(start, func(h ident.Hash, _ entry) bool {
			n++
			if n == 1 {
				first = h
			}
			third = h
			return n < 3
		})
		// The walk from next goes on with the entry after the third.
		s.eachFrom(next, func(h ident.Hash, _ entry) bool {
			if h == third || h == first {
				t.Fatalf("walk from %d: the walk from %d revisits at once", start, next)
			}
			return false
		})
	}
}

// TestTakeLeavesNoRecordBehind: a window receiving more than a flight takes
// hands every record to a flight within a couple of sweeps of its slots,
// rather than taking the same slots first every time.
func TestTakeLeavesNoRecordBehind(t *testing.T) {
	const max, backlog = 8, 64
	ws, _, pt := newTestWindows(max)
	pk := ws.open(pt)
	var seq uint64
	fresh := func(n int) []change {
		cs := make([]change, n)
		for i := range cs {
			seq++
			cs[i] = change{aud: 1, typ: ident.Email, hash: benchHash(seq, 5), op: opAdd}
		}
		return cs
	}
	first := fresh(backlog)
	ws.add(first, pk, t0)
	left := make(map[ident.Hash]bool, backlog)
	for _, c := range first {
		left[c.hash] = true
	}
	w := win(ws, 1)
	for round := 0; len(left) > 0; round++ {
		if round > 3*backlog/max {
			t.Fatalf("after %d flights of %d, %d of the first %d records still wait", round, max, len(left), backlog)
		}
		f, _ := ws.Take(w, "full", context.Background())
		if len(f.adds) != max {
			t.Fatalf("flight of %d adds, want %d", len(f.adds), max)
		}
		for _, h := range f.adds {
			delete(left, h)
		}
		ws.finish(f, allOK, false, t0, noBackoff)
		ws.add(fresh(max), pk, t0)
	}
}

// BenchmarkEntrySet compares the set with the Go map it replaced, per
// record. Steady: a window holding 4,096 records, each step inserting one,
// updating one and deleting one. Cycle: a window filling with 4,096
// records from empty and then flushed whole, which releases the set's
// array while a cleared map keeps its memory.
func BenchmarkEntrySet(b *testing.B) {
	const n = 4096
	keys := make([]ident.Hash, 2*n)
	for i := range keys {
		keys[i] = benchHash(uint64(i), 11)
	}
	e := entry{op: opAdd}
	b.Run("steady/set", func(b *testing.B) {
		var s entrySet
		for _, h := range keys[:n] {
			p, _ := s.upsert(h)
			*p = e
		}
		k := n
		for b.Loop() {
			p, _ := s.upsert(keys[k%(2*n)])
			*p = e
			p, _ = s.upsert(keys[(k-n/2)%(2*n)])
			p.ts++
			s.del(keys[(k+n)%(2*n)])
			k++
		}
	})
	b.Run("steady/map", func(b *testing.B) {
		m := make(map[ident.Hash]entry)
		for _, h := range keys[:n] {
			m[h] = e
		}
		k := n
		for b.Loop() {
			h := keys[k%(2*n)]
			if _, ok := m[h]; !ok {
				m[h] = e
			}
			h = keys[(k-n/2)%(2*n)]
			if old, ok := m[h]; ok {
				old.ts++
				m[h] = old
			}
			delete(m, keys[(k+n)%(2*n)])
			k++
		}
	})
	b.Run("cycle/set", func(b *testing.B) {
		var s entrySet
		for b.Loop() {
			for _, h := range keys[:n] {
				p, _ := s.upsert(h)
				*p = e
			}
			s.reset()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
	b.Run("cycle/map", func(b *testing.B) {
		m := make(map[ident.Hash]entry)
		for b.Loop() {
			for _, h := range keys[:n] {
				if _, ok := m[h]; !ok {
					m[h] = e
				}
			}
			clear(m)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
}

// get returns the entry of h (for tests: the engine only upserts).
func (s *entrySet) get(h ident.Hash) (entry, bool) {
	if s.n == 0 {
		return entry{}, false
	}
	i, ok := s.probe(&h)
	if !ok {
		return entry{}, false
	}
	return s.slots[i].e, true
}
