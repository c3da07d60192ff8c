package stream

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// DefaultMaxIdentifiersPerType is the Oracle's bound on the identifiers of
// one type a profile keeps, as pinsync's sync.max_identifiers_per_type.
const DefaultMaxIdentifiersPerType = 5

// ListKey names one customer list: an audience and an identifier type.
type ListKey struct {
	Audience string
	Type     ident.Type
}

func (k ListKey) String() string { return k.Audience + "/" + k.Type.String() }

// Set is a set of identifier hashes: the contents of one list.
type Set = map[ident.Hash]struct{}

// Oracle computes, with plain maps and no cleverness, what every list must
// hold after a stream of decoded events. It is the reference the sync
// engine is checked against, so it follows the documented semantics of
// schemas.Event literally:
//
//   - identifiers of an identify or a membership are added to the profile;
//     a profile keeps at most MaxPerType identifiers of each type, and when
//     a new one comes, the least recently seen is dropped (seeing an
//     identifier again makes it the most recent);
//   - a Replace identify makes the event's identifiers the whole set;
//   - Drop removes identifiers from the profile;
//   - a membership puts the profile into or out of its audience;
//   - NoConsent takes the profile out of every audience;
//   - a forget drops the profile.
//
// A list holds the identifiers of the right type of every profile that is
// in its audience. Events must be applied in per-profile order. An Oracle
// is not safe for concurrent use.
type Oracle struct {
	maxPerType int
	profiles   map[string]*oracleProfile
}

type oracleProfile struct {
	ids       [ident.NumTypes + 1][]ident.Hash // oldest first
	audiences map[string]struct{}
}

// NewOracle returns an empty Oracle keeping at most maxPerType identifiers
// of each type per profile (DefaultMaxIdentifiersPerType when <= 0).
func NewOracle(maxPerType int) *Oracle {
	if maxPerType <= 0 {
		maxPerType = DefaultMaxIdentifiersPerType
	}
	return &Oracle{maxPerType: maxPerType, profiles: make(map[string]*oracleProfile)}
}

// Apply applies one decoded event. It copies what it keeps, so ev may be
// reused by the decoder afterwards.
func (o *Oracle) Apply(ev *schemas.Event) {
	if ev.Kind == schemas.KindForget {
		delete(o.profiles, ev.Profile)
		return
	}
	p := o.profiles[ev.Profile]
	if p == nil {
		p = &oracleProfile{audiences: make(map[string]struct{})}
		o.profiles[ev.Profile] = p
	}
	if ev.Kind == schemas.KindIdentify && ev.Replace {
		for t := range p.ids {
			p.ids[t] = p.ids[t][:0]
		}
	}
	for _, id := range ev.Identifiers {
		p.add(id, o.maxPerType)
	}
	for _, id := range ev.Drop {
		p.remove(id)
	}
	if ev.Kind == schemas.KindMembership {
		if ev.Member {
			p.audiences[ev.Audience] = struct{}{}
		} else {
			delete(p.audiences, ev.Audience)
		}
	}
	if ev.NoConsent {
		clear(p.audiences)
	}
}

func (p *oracleProfile) add(id schemas.Identifier, max int) {
	if !id.Type.Valid() {
		return
	}
	s := p.ids[id.Type]
	if i := slices.Index(s, id.Hash); i >= 0 {
		s = slices.Delete(s, i, i+1)
	}
	s = append(s, id.Hash)
	if len(s) > max {
		s = slices.Delete(s, 0, len(s)-max)
	}
	p.ids[id.Type] = s
}

func (p *oracleProfile) remove(id schemas.Identifier) {
	if !id.Type.Valid() {
		return
	}
	if i := slices.Index(p.ids[id.Type], id.Hash); i >= 0 {
		p.ids[id.Type] = slices.Delete(p.ids[id.Type], i, i+1)
	}
}

// ApplyRecord decodes one record with dec and applies it. It returns the
// decoder's error, and applies nothing, when the record is rejected.
func (o *Oracle) ApplyRecord(dec *schemas.Decoder, ev *schemas.Event, key, value []byte) error {
	if err := dec.Decode(key, value, ev); err != nil {
		return err
	}
	o.Apply(ev)
	return nil
}

// BuildOracle decodes records, in order, with dec and feeds an Oracle
// bounded to maxPerType. It returns the Oracle and how many records the
// decoder rejected.
func BuildOracle(records []Record, dec *schemas.Decoder, maxPerType int) (*Oracle, int) {
	o := NewOracle(maxPerType)
	var ev schemas.Event
	rejected := 0
	for _, r := range records {
		if o.ApplyRecord(dec, &ev, r.Key, r.Value) != nil {
			rejected++
		}
	}
	return o, rejected
}

// DropType forgets every identifier of type t of every profile, as an
// upgrade that can no longer vouch for them does (pinsync drops the IDFAs a
// version that hashed them in lower case left in its state).
func (o *Oracle) DropType(t ident.Type) {
	if !t.Valid() {
		return
	}
	for _, p := range o.profiles {
		p.ids[t] = p.ids[t][:0]
	}
}

// Profiles returns how many profiles the Oracle knows (forgotten ones are
// not counted).
func (o *Oracle) Profiles() int { return len(o.profiles) }

// Members returns how many profiles are in audience aud.
func (o *Oracle) Members(aud string) int {
	n := 0
	for _, p := range o.profiles {
		if _, ok := p.audiences[aud]; ok {
			n++
		}
	}
	return n
}

// Audiences returns, sorted, every audience with at least one member.
func (o *Oracle) Audiences() []string {
	seen := make(map[string]struct{})
	for _, p := range o.profiles {
		for a := range p.audiences {
			seen[a] = struct{}{}
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Expected returns what every list must hold: for each audience and type,
// the hashes of that type held by the audience's members. Lists that must
// be empty are absent.
func (o *Oracle) Expected() map[ListKey]Set {
	out := make(map[ListKey]Set)
	for _, p := range o.profiles {
		for a := range p.audiences {
			for _, t := range ident.Types {
				if len(p.ids[t]) == 0 {
					continue
				}
				k := ListKey{a, t}
				s := out[k]
				if s == nil {
					s = make(Set)
					out[k] = s
				}
				for _, h := range p.ids[t] {
					s[h] = struct{}{}
				}
			}
		}
	}
	return out
}

// ParseSet turns hex digests (as Pinterest and the sandbox list them) into a
// Set.
func ParseSet(hexes []string) (Set, error) {
	s := make(Set, len(hexes))
	for i, x := range hexes {
		h, ok := ident.ParseHex(x)
		if !ok {
			return nil, fmt.Errorf("record %d: not a 64-hex digest", i)
		}
		s[h] = struct{}{}
	}
	return s, nil
}

// ListDiff is how one list differs from what it must hold.
type ListDiff struct {
	Key              ListKey
	Expected, Actual int          // sizes
	Missing, Extra   []ident.Hash // sorted
}

// DiffReport compares every list; a list absent from a side counts as empty.
type DiffReport struct {
	Lists          []ListDiff // every list of either side, sorted by key
	Missing, Extra int        // totals
}

// OK reports whether every list holds exactly what it must.
func (r DiffReport) OK() bool { return r.Missing == 0 && r.Extra == 0 }

// String summarises the report: one line per list that differs (hashes
// only, never plaintext), then a verdict.
func (r DiffReport) String() string {
	var b strings.Builder
	for _, l := range r.Lists {
		if len(l.Missing) == 0 && len(l.Extra) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s: expected %d, actual %d, missing %d, extra %d\n",
			l.Key, l.Expected, l.Actual, len(l.Missing), len(l.Extra))
	}
	exp := 0
	for _, l := range r.Lists {
		exp += l.Expected
	}
	if r.OK() {
		fmt.Fprintf(&b, "OK: %d lists, %d records, all as expected", len(r.Lists), exp)
	} else {
		fmt.Fprintf(&b, "MISMATCH: %d lists, %d expected records, %d missing, %d extra", len(r.Lists), exp, r.Missing, r.Extra)
	}
	return b.String()
}

// Diff compares actual list contents with expected ones.
func Diff(expected, actual map[ListKey]Set) DiffReport {
	keys := make([]ListKey, 0, len(expected)+len(actual))
	for k := range expected {
		keys = append(keys, k)
	}
	for k := range actual {
		if _, ok := expected[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b ListKey) int {
		return cmp.Or(cmp.Compare(a.Audience, b.Audience), cmp.Compare(a.Type, b.Type))
	})
	var r DiffReport
	for _, k := range keys {
		e, a := expected[k], actual[k]
		d := ListDiff{Key: k, Expected: len(e), Actual: len(a), Missing: minus(e, a), Extra: minus(a, e)}
		r.Missing += len(d.Missing)
		r.Extra += len(d.Extra)
		r.Lists = append(r.Lists, d)
	}
	return r
}

// minus returns the sorted elements of a not in b.
func minus(a, b Set) []ident.Hash {
	var out []ident.Hash
	for h := range a {
		if _, ok := b[h]; !ok {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(x, y ident.Hash) int { return strings.Compare(string(x[:]), string(y[:])) })
	return out
}
