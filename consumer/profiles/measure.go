package profiles

import (
	"encoding/binary"
	"runtime"
	"strconv"
	"time"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// MeasureState builds the profile state a partition worker keeps for n
// profiles, each with two identifiers (an email and a device id) and three
// audiences, and returns the heap it holds per profile (after a GC, live
// heap after minus before; 0 when n is too small to measure). It is for
// `pinsync bench` and benchmarks; it allocates and takes about a second per
// million profiles.
func MeasureState(n int) float64 {
	if n <= 0 {
		return 0
	}
	ids := make([]schemas.Identifier, 2)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newProfiles(5, nil)
	ev := schemas.Event{Kind: schemas.KindMembership, Member: true}
	var key []byte
	for i := range n {
		key = strconv.AppendInt(append(key[:0], "usr_"...), int64(i), 10)
		ev.Profile = string(key)
		ids[0] = schemas.Identifier{Type: ident.Email, Hash: benchHash(uint64(i), 1)}
		ids[1] = schemas.Identifier{Type: ident.IDFA, Hash: benchHash(uint64(i), 2)}
		ev.Identifiers = ids
		for a := uint32(1); a <= 3; a++ {
			s.apply(&ev, a, func(change) {})
			ev.Identifiers = nil
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	runtime.KeepAlive(s)
	// With few profiles the heap's other movements can outweigh the state:
	// a negative figure means too few to measure.
	return max(per, 0)
}

// MeasureRestore encodes n profiles as the changelog holds them (two
// identifiers, three audiences each) and returns how many profiles per
// second the restore path decodes and installs into a partition's state.
// Kafka's share of a restore is not included.
func MeasureRestore(n int) float64 {
	if n <= 0 {
		return 0
	}
	auds, _ := newAudiences(nil, nil, "1", nil, false) // no pattern to refuse
	c := codec{auds}
	p := &profile{
		ids:  []schemas.Identifier{{Type: ident.Email}, {Type: ident.IDFA}},
		auds: []uint32{auds.intern("audience_a", "", "").id, auds.intern("audience_b", "", "").id, auds.intern("audience_c", "", "").id | outBit},
	}
	state := newProfiles(5, nil)
	keys := make([]string, n)
	vals := make([][]byte, n)
	for i := range n {
		p.ids[0].Hash = benchHash(uint64(i), 1)
		p.ids[1].Hash = benchHash(uint64(i), 2)
		keys[i] = changelogKey("events", state.keyOf("usr_"+strconv.Itoa(i)))
		vals[i] = c.encode(p)
	}
	start := time.Now()
	restored := 0
	for i := range keys {
		if ok, _ := restoreRecord(state, c, keys[i][len("events")+1:], vals[i]); ok {
			restored++
		}
	}
	d := time.Since(start)
	if restored != n {
		return 0
	}
	return float64(n) / d.Seconds()
}

// benchHash is a distinct, hash-like identifier for measurements.
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
