package changes

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

func randomChanges(rng *rand.Rand, n int) []Change {
	cs := make([]Change, n)
	base := rng.Int64N(1 << 41)
	for i := range cs {
		for j := range cs[i].Hash {
			cs[i].Hash[j] = byte(rng.Uint32())
		}
		cs[i].Op = Op(rng.IntN(2) + 1)
		cs[i].Vouched = rng.IntN(2) == 0
		cs[i].Legacy = rng.IntN(8) == 0
		cs[i].TS = base + rng.Int64N(20_000) - 10_000
	}
	return cs
}

func TestValueRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 17, MaxChanges} {
		for _, h := range []Header{{}, {AdAccount: "549755885175"}, {AdAccount: "1", Name: "VIP customers ✨"}} {
			cs := randomChanges(rng, n)
			v, err := Parse(AppendValue(nil, h, cs))
			if err != nil {
				t.Fatal(err)
			}
			if v.Header != h || v.Len() != n {
				t.Fatalf("header %+v, %d changes; want %+v, %d", v.Header, v.Len(), h, n)
			}
			var got []Change
			if err := v.Each(func(c Change) { got = append(got, c) }); err != nil {
				t.Fatal(err)
			}
			for i := range cs {
				if got[i] != cs[i] {
					t.Fatalf("change %d: got %+v, want %+v", i, got[i], cs[i])
				}
			}
		}
	}
}

// TestChangesOfEarlierVersionsAreLegacy: a change written before the
// identifier rules (its flags without bit 3, as version 1 of the format
// always was) reads as Legacy; one written now does not.
func TestChangesOfEarlierVersionsAreLegacy(t *testing.T) {
	var h ident.Hash
	h[0] = 0xab
	now := AppendValue(nil, Header{AdAccount: "1"}, []Change{{Hash: h, Op: Add}})
	before := bytes.Clone(now)
	flags := len(before) - 1 - len(h) - 1 // flags, digest, one-byte time difference
	before[flags] = byte(Add)             // as version 1 wrote an add
	for _, c := range []struct {
		name   string
		value  []byte
		legacy bool
	}{{"written now", now, false}, {"written before the rules", before, true}} {
		v, err := Parse(c.value)
		if err != nil {
			t.Fatal(err)
		}
		var got Change
		if err := v.Each(func(ch Change) { got = ch }); err != nil {
			t.Fatal(err)
		}
		if got.Legacy != c.legacy || got.Op != Add || got.Hash != h {
			t.Errorf("%s: read %+v, want legacy %v", c.name, got, c.legacy)
		}
	}
}

func TestMalformedValuesAreRefused(t *testing.T) {
	good := AppendValue(nil, Header{AdAccount: "1", Name: "n"}, randomChanges(rand.New(rand.NewPCG(3, 4)), 3))
	cases := map[string][]byte{
		"empty":       nil,
		"version 0":   append([]byte{0}, good[1:]...),
		"truncated":   good[:len(good)-5],
		"header only": good[:4],
		"bad op":      func() []byte { b := bytes.Clone(good); b[len(b)-3*34-3+0] = 0; return b }(),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			v, err := Parse(b)
			if err == nil {
				err = v.Each(func(Change) {})
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

// TestNewerVersionsAreNotMalformed: a value of a version after this
// pinsync's is told apart from a malformed one: its reader stops there
// rather than skip it.
func TestNewerVersionsAreNotMalformed(t *testing.T) {
	good := AppendValue(nil, Header{AdAccount: "1", Name: "n"}, randomChanges(rand.New(rand.NewPCG(3, 4)), 3))
	_, err := Parse(append([]byte{Version + 1}, good[1:]...))
	if !errors.Is(err, ErrUnknownVersion) || errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrUnknownVersion only", err)
	}
}

func TestKeysRoundTrip(t *testing.T) {
	for _, l := range []List{{"vip", ident.Email}, {"a:b/c", ident.MAID}, {"x", ident.IDFA}} {
		got, err := ParseKey(l.AppendKey(nil))
		if err != nil || got != l {
			t.Fatalf("ParseKey(%q) = %+v, %v", l.String(), got, err)
		}
	}
	for _, k := range []string{"", "EMAIL", "EMAIL:", "PHONE:vip"} {
		if _, err := ParseKey([]byte(k)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseKey(%q): %v, want ErrMalformed", k, err)
		}
	}
}

// TestPartitionIsMurmur2OfTheKey: every replica places a list where the
// Java client's and franz-go's default partitioner would put its key.
func TestPartitionIsMurmur2OfTheKey(t *testing.T) {
	for _, n := range []int{1, 6, 12, 64} {
		p := NewPartitioner(n)
		for i := range 500 {
			k := List{Audience: "audience_" + string(rune('a'+i%26)) + string(rune('0'+i/26)), Type: ident.Types[i%3]}.AppendKey(nil)
			if got, want := p.Partition(k), stream.Partition(k, n); got != want {
				t.Fatalf("key %q of %d partitions: %d, want %d", k, n, got, want)
			}
		}
	}
}

func BenchmarkAppendValue(b *testing.B) {
	cs := randomChanges(rand.New(rand.NewPCG(5, 6)), 200)
	var buf []byte
	b.SetBytes(int64(len(cs)))
	for b.Loop() {
		buf = AppendValue(buf[:0], Header{AdAccount: "549755885175"}, cs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cs)), "ns/change")
}

func BenchmarkEach(b *testing.B) {
	cs := randomChanges(rand.New(rand.NewPCG(5, 6)), 200)
	val := AppendValue(nil, Header{AdAccount: "549755885175"}, cs)
	n := 0
	for b.Loop() {
		v, _ := Parse(val)
		_ = v.Each(func(Change) { n++ })
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cs)), "ns/change")
}

// FuzzParse: no input makes Parse or Each panic or read past the value,
// and whatever parses re-encodes to the same changes.
func FuzzParse(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 3} {
		f.Add(AppendValue(nil, Header{AdAccount: "1", Name: "n"}, randomChanges(rng, n)))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		var cs []Change
		if err := v.Each(func(c Change) { cs = append(cs, c) }); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Each error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := Parse(AppendValue(nil, v.Header, cs))
		if err != nil {
			t.Fatalf("re-encoded value does not parse: %v", err)
		}
		i := 0
		if err := again.Each(func(c Change) {
			if c != cs[i] {
				t.Fatalf("change %d: %+v after re-encoding, %+v before", i, c, cs[i])
			}
			i++
		}); err != nil || i != len(cs) {
			t.Fatalf("re-encoded: %d of %d changes, %v", i, len(cs), err)
		}
	})
}

// FuzzParseKey: keys that parse print back to themselves.
func FuzzParseKey(f *testing.F) {
	f.Add([]byte("EMAIL:vip"))
	f.Add([]byte("MAID:a:b"))
	f.Add([]byte(":"))
	f.Fuzz(func(t *testing.T, k []byte) {
		l, err := ParseKey(k)
		if err != nil {
			return
		}
		if got := l.AppendKey(nil); string(got) != string(k) {
			t.Fatalf("key %q parsed to %+v, which prints %q", k, l, got)
		}
	})
}
