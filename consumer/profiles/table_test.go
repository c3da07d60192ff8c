package profiles

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// checkTable fails t unless tb holds exactly the entries of want, through
// len, each and get, and its index is consistent.
func checkTable(t *testing.T, tb *table, want map[string]string) {
	t.Helper()
	if tb.len() != len(want) {
		t.Fatalf("len = %d, want %d", tb.len(), len(want))
	}
	seen := make(map[string]bool, len(want))
	tb.each(func(kb, vb []byte) {
		k, v := string(kb), string(vb)
		if seen[k] {
			t.Fatalf("each: key %q twice", k)
		}
		seen[k] = true
		if w, ok := want[k]; !ok || w != v {
			t.Fatalf("each: %q = %q, want %q (present %v)", k, v, w, ok)
		}
	})
	if len(seen) != len(want) {
		t.Fatalf("each: %d entries, want %d", len(seen), len(want))
	}
	for k, w := range want {
		if v, ok := tb.get(k); !ok || string(v) != w {
			t.Fatalf("get(%q) = %q, %v; want %q", k, v, ok, w)
		}
	}
	used := 0
	for _, s := range tb.slots {
		if s == 0 {
			continue
		}
		used++
		if j := int(uint32(s)) - 1; j < 0 || j >= len(tb.recs) {
			t.Fatalf("slot points at record %d of %d", j, len(tb.recs))
		}
	}
	if used != len(tb.recs) {
		t.Fatalf("%d slots used for %d records", used, len(tb.recs))
	}
	if len(tb.slots) > 0 && len(tb.recs)*4 > len(tb.slots)*3 {
		t.Fatalf("load %d/%d above 3/4", len(tb.recs), len(tb.slots))
	}
}

// TestTableModel runs random set, get and del on overlapping keys (among
// them the empty key and keys long enough for a 2-byte length) against a
// Go map.
func TestTableModel(t *testing.T) {
	for _, nkeys := range []int{1, 7, 60, 500} {
		t.Run(strconv.Itoa(nkeys), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(nkeys), 42))
			keys := []string{"", strings.Repeat("k", 127), strings.Repeat("k", 128), strings.Repeat("x", 300)}
			for i := 0; len(keys) < nkeys+4; i++ {
				keys = append(keys, "usr_"+strconv.Itoa(i))
			}
			keys = keys[:nkeys]
			var tb table
			want := map[string]string{}
			for batch := range 400 {
				for range 1 + r.IntN(2*nkeys) {
					k := keys[r.IntN(len(keys))]
					switch n := r.IntN(10); {
					case n < 5:
						v := make([]byte, r.IntN(200))
						for i := range v {
							v[i] = byte(r.Uint32())
						}
						tb.set(k, v)
						want[k] = string(v)
						if len(v) > 0 { // the table must hold a copy
							v[0]++
							if got, _ := tb.get(k); string(got) != want[k] {
								t.Fatalf("set kept a reference to its value")
							}
						}
					case n < 8:
						_, had := want[k]
						if got := tb.del(k); got != had {
							t.Fatalf("del(%q) = %v, want %v", k, got, had)
						}
						delete(want, k)
					default:
						v, ok := tb.get(k)
						if w, had := want[k]; ok != had || string(v) != w {
							t.Fatalf("get(%q) = %q, %v; want %q, %v", k, v, ok, w, had)
						}
					}
				}
				checkTable(t, &tb, want)
				if batch%100 == 99 {
					tb.reset()
					clear(want)
					if tb.recs != nil || tb.slots != nil {
						t.Fatalf("reset kept memory")
					}
					checkTable(t, &tb, want)
				}
			}
		})
	}
}

// TestTableGrowth fills a table across several doublings, checks every
// entry, then deletes half and checks again.
func TestTableGrowth(t *testing.T) {
	var tb table
	want := map[string]string{}
	const n = 5000
	for i := range n {
		k := "usr_" + strconv.Itoa(i)
		tb.set(k, []byte("v"+strconv.Itoa(i*7)))
		want[k] = "v" + strconv.Itoa(i*7)
		if i&(i+1) == 0 {
			checkTable(t, &tb, want)
		}
	}
	checkTable(t, &tb, want)
	if len(tb.slots) < 8*tableMinSlots*64 {
		t.Fatalf("%d slots for %d entries: no doublings", len(tb.slots), n)
	}
	for i := 0; i < n; i += 2 {
		k := "usr_" + strconv.Itoa(i)
		if !tb.del(k) {
			t.Fatalf("del(%q) = false", k)
		}
		delete(want, k)
	}
	checkTable(t, &tb, want)
	if tb.del("usr_0") {
		t.Fatalf("del of a deleted key = true")
	}
	if _, ok := tb.get("missing"); ok {
		t.Fatalf("get of a missing key = true")
	}
}

// TestTableZero checks the zero table answers before its first set.
func TestTableZero(t *testing.T) {
	var tb table
	if _, ok := tb.get("a"); ok || tb.del("a") || tb.len() != 0 {
		t.Fatalf("zero table is not empty")
	}
	tb.each(func([]byte, []byte) { t.Fatalf("each on the zero table") })
	tb.reset()
	tb.set("a", nil)
	if v, ok := tb.get("a"); !ok || len(v) != 0 {
		t.Fatalf("get(a) = %q, %v", v, ok)
	}
}

// TestTableSetAllocates checks set makes a single allocation, none when
// the value keeps its length, and get none.
func TestTableSetAllocates(t *testing.T) {
	var tb table
	for i := range 100 {
		tb.set("usr_"+strconv.Itoa(i), []byte("x"))
	}
	v, w := make([]byte, 80), make([]byte, 81)
	if n := testing.AllocsPerRun(100, func() { tb.set("usr_7", v); tb.set("usr_7", w) }); n != 2 {
		t.Errorf("two sets of an existing key with a new length: %v allocations, want 2", n)
	}
	if n := testing.AllocsPerRun(100, func() { tb.set("usr_7", w) }); n != 0 {
		t.Errorf("set of an existing key with the same length: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { tb.get("usr_7") }); n != 0 {
		t.Errorf("get: %v allocations, want 0", n)
	}
}
