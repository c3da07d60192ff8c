package profiles

import (
	"testing"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

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
