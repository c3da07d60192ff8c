package profiles

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// id hashes a plaintext identifier of type t for a test.
func id(t *testing.T, typ ident.Type, v string) schemas.Identifier {
	t.Helper()
	h, err := ident.OfString(typ, v)
	if err != nil {
		t.Fatalf("hash %s %q: %v", typ, v, err)
	}
	return schemas.Identifier{Type: typ, Hash: h}
}

// Audience ids of the profile tests (the engine interns keys; here they are
// fixed).
const (
	audA uint32 = 1
	audB uint32 = 2
	audC uint32 = 3
)

// step is one event of a profile test, applied with aud as its interned
// audience (memberships only).
type step struct {
	ev  schemas.Event
	aud uint32
}

func identify(ids ...schemas.Identifier) step {
	return step{ev: schemas.Event{Kind: schemas.KindIdentify, Profile: "p", Identifiers: ids}}
}

func replace(ids ...schemas.Identifier) step {
	return step{ev: schemas.Event{Kind: schemas.KindIdentify, Profile: "p", Replace: true, Identifiers: ids}}
}

func drop(ids ...schemas.Identifier) step {
	return step{ev: schemas.Event{Kind: schemas.KindIdentify, Profile: "p", Drop: ids}}
}

func enter(aud uint32, ids ...schemas.Identifier) step {
	return step{ev: schemas.Event{Kind: schemas.KindMembership, Profile: "p", Audience: fmt.Sprint(aud), Member: true, Identifiers: ids}, aud: aud}
}

func exit(aud uint32, ids ...schemas.Identifier) step {
	return step{ev: schemas.Event{Kind: schemas.KindMembership, Profile: "p", Audience: fmt.Sprint(aud), Identifiers: ids}, aud: aud}
}

func forget() step {
	return step{ev: schemas.Event{Kind: schemas.KindForget, Profile: "p"}}
}

func noConsent(s step) step {
	s.ev.NoConsent = true
	return s
}

func add(aud uint32, x schemas.Identifier) change {
	return change{aud: aud, typ: x.Type, hash: x.Hash, op: opAdd}
}

func remove(aud uint32, x schemas.Identifier) change {
	return change{aud: aud, typ: x.Type, hash: x.Hash, op: opRemove}
}

func changeString(c change) string {
	return fmt.Sprintf("%s aud=%d %s %s", c.op, c.aud, c.typ, c.hash.String()[:8])
}

func sortedChanges(cs []change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = changeString(c)
	}
	slices.Sort(out)
	return out
}

// TestApply checks, event by event, which list changes a profile's state
// turns an event into. The given steps are applied first; only the changes
// of the last event are compared (as a set: their order does not matter,
// each list change must appear exactly once).
func TestApply(t *testing.T) {
	e1 := id(t, ident.Email, "one@example.com")
	e2 := id(t, ident.Email, "two@example.com")
	e3 := id(t, ident.Email, "three@example.com")
	d1 := id(t, ident.IDFA, "6d92078a-8246-4ba4-ae5b-76104861e7dc")
	d2 := id(t, ident.MAID, "e1a2b3c4-d5e6-4f70-8a9b-0c1d2e3f4a5b")

	cases := []struct {
		name        string
		maxPerType  int // default 5
		given       []step
		ev          step
		want        []change
		wantChanged bool
	}{
		{
			name:  "EnterAddsEveryIdentifierOfTheProfile",
			given: []step{identify(e1, e2, d1)},
			ev:    enter(audA),
			want:  []change{add(audA, e1), add(audA, e2), add(audA, d1)}, wantChanged: true,
		},
		{
			name: "EnterOfANewProfileAddsTheIdentifiersItCarries",
			ev:   enter(audA, e1, d2),
			want: []change{add(audA, e1), add(audA, d2)}, wantChanged: true,
		},
		{
			name:  "EnterWithANewIdentifierAddsItOnceToEachAudience",
			given: []step{enter(audA, e1)},
			ev:    enter(audB, e2),
			want:  []change{add(audA, e2), add(audB, e1), add(audB, e2)}, wantChanged: true,
		},
		{
			name:  "ExitRemovesEveryIdentifier",
			given: []step{identify(e1, d1, d2), enter(audA), enter(audB)},
			ev:    exit(audA),
			want:  []change{remove(audA, e1), remove(audA, d1), remove(audA, d2)}, wantChanged: true,
		},
		{
			name:  "ReenterAfterExitAddsEveryIdentifierAgain",
			given: []step{identify(e1, d1), enter(audA), exit(audA)},
			ev:    enter(audA),
			want:  []change{add(audA, e1), add(audA, d1)}, wantChanged: true,
		},
		{
			name:  "NewIdentifierOfAMemberIsAddedToEachOfItsAudiences",
			given: []step{enter(audA, e1), enter(audB), enter(audC), exit(audC)},
			ev:    identify(e2),
			want:  []change{add(audA, e2), add(audB, e2)}, wantChanged: true,
		},
		{
			name:  "NativeIdentifyReplacesTheSet",
			given: []step{identify(e1, e2, d1), enter(audA), enter(audB)},
			ev:    replace(e2, e3),
			want: []change{
				remove(audA, e1), remove(audB, e1), remove(audA, d1), remove(audB, d1),
				add(audA, e3), add(audB, e3),
			}, wantChanged: true,
		},
		{
			name:       "NativeIdentifyKeepsTheLastValuesOfEachTypeWithinTheBound",
			maxPerType: 2,
			given:      []step{identify(e1), enter(audA)},
			ev:         replace(e1, e2, e3, e2),
			// The set in order is e1, e3, e2 (e2 seen last): e1 is the least
			// recently seen beyond the bound of two.
			want: []change{remove(audA, e1), add(audA, e2), add(audA, e3)}, wantChanged: true,
		},
		{
			name:       "BoundDropsTheLeastRecentlySeenIdentifierOfTheType",
			maxPerType: 2,
			// e1 is seen again after e2, so e2 is the least recently seen.
			given: []step{identify(e1), identify(e2), identify(e1), identify(d1), enter(audA), enter(audB)},
			ev:    identify(e3),
			want:  []change{add(audA, e3), add(audB, e3), remove(audA, e2), remove(audB, e2)}, wantChanged: true,
		},
		{
			name:       "BoundIsPerType",
			maxPerType: 1,
			given:      []step{identify(e1, d1, d2), enter(audA)},
			ev:         identify(e2),
			want:       []change{add(audA, e2), remove(audA, e1)}, wantChanged: true,
		},
		{
			name:  "AdTrackingOffRemovesTheDeviceFromEachAudience",
			given: []step{identify(e1, d1), enter(audA), enter(audB)},
			ev:    drop(d1),
			want:  []change{remove(audA, d1), remove(audB, d1)}, wantChanged: true,
		},
		{
			name:  "AdTrackingOffOfAnUnknownDeviceEmitsNothing",
			given: []step{identify(e1), enter(audA)},
			ev:    drop(d1),
		},
		{
			name:  "ForgetRemovesEveryIdentifierFromEveryAudience",
			given: []step{identify(e1, d1), enter(audA), enter(audB), enter(audC), exit(audC)},
			ev:    forget(),
			want: []change{
				remove(audA, e1), remove(audA, d1), remove(audB, e1), remove(audB, d1),
			}, wantChanged: true,
		},
		{
			name: "ForgetOfAnUnknownProfileEmitsNothing",
			ev:   forget(),
		},
		{
			name:  "RepeatedEnterEmitsNothing",
			given: []step{identify(e1), enter(audA)},
			ev:    enter(audA),
		},
		{
			name:  "RepeatedEnterWithKnownIdentifiersEmitsNothing",
			given: []step{enter(audA, e1, d1)},
			ev:    enter(audA, d1),
		},
		{
			name:  "RepeatedExitEmitsNothing",
			given: []step{identify(e1), enter(audA), exit(audA)},
			ev:    exit(audA),
		},
		{
			name:  "IdentifyThatChangesNothingEmitsNothing",
			given: []step{identify(e1, e2), enter(audA)},
			ev:    identify(e2),
		},
		{
			name:  "IdentifySeeingAnOlderIdentifierAgainReordersButEmitsNothing",
			given: []step{identify(e1, e2), enter(audA)},
			ev:    identify(e1),
			// The state changed (e1 is now the newest), the lists did not.
			wantChanged: true,
		},
		{
			name:  "NativeIdentifyOfTheSameSetEmitsNothing",
			given: []step{identify(e1, d1), enter(audA)},
			ev:    replace(e1, d1),
		},
		{
			name: "ExitNeverSeenEnterRemovesTheIdentifiersTheEventCarries",
			ev:   exit(audA, e1, d1),
			want: []change{remove(audA, e1), remove(audA, d1)}, wantChanged: true,
		},
		{
			name: "ExitNeverSeenEnterRemovesDroppedDevicesToo",
			ev: func() step {
				s := exit(audA, e1)
				s.ev.Drop = []schemas.Identifier{d1}
				return s
			}(),
			want: []change{remove(audA, e1), remove(audA, d1)}, wantChanged: true,
		},
		{
			name:  "ExitNeverSeenEnterOnlyTouchesItsAudience",
			given: []step{identify(e1), enter(audB)},
			ev:    exit(audA, e1),
			want:  []change{remove(audA, e1)}, wantChanged: true,
		},
		{
			name:  "NoConsentRemovesFromEveryAudience",
			given: []step{identify(e1, d1), enter(audA), enter(audB)},
			ev:    noConsent(identify()),
			want: []change{
				remove(audA, e1), remove(audA, d1), remove(audB, e1), remove(audB, d1),
			}, wantChanged: true,
		},
		{
			name:  "EnterWithoutConsentAddsNothingAndRemovesEverything",
			given: []step{identify(e1), enter(audA)},
			ev:    noConsent(enter(audB, e2)),
			want:  []change{remove(audA, e1)}, wantChanged: true,
		},
		{
			name:  "ExitWithoutConsentRemovesEachRecordOnce",
			given: []step{identify(e1), enter(audA), enter(audB)},
			ev:    noConsent(exit(audA)),
			want:  []change{remove(audA, e1), remove(audB, e1)}, wantChanged: true,
		},
		{
			name:  "NewIdentifierAfterNoConsentGoesToNoAudience",
			given: []step{identify(e1), enter(audA), noConsent(identify())},
			ev:    identify(e2),
			// No list change: the profile is in no audience any more.
			wantChanged: true,
		},
		{
			name:  "EnterAfterForgetStartsFromNothing",
			given: []step{identify(e1), enter(audA), forget()},
			ev:    enter(audA, e2),
			want:  []change{add(audA, e2)}, wantChanged: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.maxPerType
			if max == 0 {
				max = 5
			}
			s := newProfiles(max, nil)
			for _, g := range tc.given {
				s.apply(&g.ev, g.aud, func(change) {})
			}
			var got []change
			changed := s.apply(&tc.ev.ev, tc.ev.aud, func(c change) { got = append(got, c) })
			if g, w := sortedChanges(got), sortedChanges(tc.want); !slices.Equal(g, w) {
				t.Errorf("changes:\n got  %s\n want %s", strings.Join(g, "\n      "), strings.Join(w, "\n      "))
			}
			if changed != tc.wantChanged {
				t.Errorf("apply reported changed=%v, want %v", changed, tc.wantChanged)
			}
		})
	}
}

// TestMemberCountsFollowMembership: the local member count of an audience
// goes up on entry and down on exit, no-consent, forget and clear, once each.
func TestMemberCountsFollowMembership(t *testing.T) {
	e1 := id(t, ident.Email, "one@example.com")
	count := map[uint32]int{}
	s := newProfiles(5, func(aud uint32, typ ident.Type, d int) {
		if typ == 0 {
			count[aud] += d
		}
	})
	apply := func(st step, wantA, wantB int) {
		t.Helper()
		s.apply(&st.ev, st.aud, func(change) {})
		if count[audA] != wantA || count[audB] != wantB {
			t.Fatalf("after %v %q: members A=%d B=%d, want %d %d", st.ev.Kind, st.ev.Audience, count[audA], count[audB], wantA, wantB)
		}
	}
	apply(enter(audA, e1), 1, 0)
	apply(enter(audA), 1, 0)
	apply(enter(audB), 1, 1)
	apply(exit(audA), 0, 1)
	apply(exit(audA), 0, 1)
	apply(noConsent(identify()), 0, 0)
	apply(enter(audA), 1, 0)
	apply(forget(), 0, 0)
	apply(forget(), 0, 0)
	apply(enter(audB, e1), 0, 1)
	s.clear()
	if count[audB] != 0 || s.t.len() != 0 {
		t.Fatalf("after clear: members B=%d, profiles %d", count[audB], s.t.len())
	}
}

// TestApplyAgreesWithTheOracle folds a generated stream (Segment and native
// records, ad tracking changes, forgets and consent flips) into profiles,
// applies the list changes to plain sets, and compares them with the
// oracle built from the same events.
func TestApplyAgreesWithTheOracle(t *testing.T) {
	for _, max := range []int{1, 2, 5} {
		t.Run(fmt.Sprint("max", max), func(t *testing.T) {
			recs, _, err := stream.Collect(stream.Config{
				Profiles: 400, Audiences: 6, Events: 8000, Seed: uint64(40 + max),
				NativeFraction: 0.2, ForgetFraction: 0.02, ConsentCategory: "advertising", ConsentFraction: 0.03,
				EmailsPerProfile: 4, DevicesPerProfile: 3, MalformedFraction: stream.None,
			})
			if err != nil {
				t.Fatal(err)
			}
			dec, err := schemas.NewDecoder(schemas.DecoderConfig{ConsentCategory: "advertising"})
			if err != nil {
				t.Fatal(err)
			}
			oracle := stream.NewOracle(max)
			ids := map[string]uint32{}
			keys := []string{""}
			tally := map[stream.ListKey]int{}
			s := newProfiles(max, func(aud uint32, typ ident.Type, d int) {
				if typ != 0 {
					tally[stream.ListKey{Audience: keys[aud], Type: typ}] += d
				}
			})
			lists := map[stream.ListKey]stream.Set{}
			var ev schemas.Event
			for _, r := range recs {
				if err := dec.Decode(r.Key, r.Value, &ev); err != nil {
					t.Fatalf("decode: %v", err)
				}
				oracle.Apply(&ev)
				var aud uint32
				if ev.Kind == schemas.KindMembership {
					aud = ids[ev.Audience]
					if aud == 0 {
						aud = uint32(len(keys))
						ids[ev.Audience] = aud
						keys = append(keys, ev.Audience)
					}
				}
				s.apply(&ev, aud, func(c change) {
					k := stream.ListKey{Audience: keys[c.aud], Type: c.typ}
					if c.op == opAdd {
						if lists[k] == nil {
							lists[k] = stream.Set{}
						}
						lists[k][c.hash] = struct{}{}
					} else {
						delete(lists[k], c.hash)
					}
				})
			}
			for k, set := range lists {
				if len(set) == 0 {
					delete(lists, k)
				}
			}
			want := oracle.Expected()
			if len(want) < 6 {
				t.Fatalf("the stream filled only %d lists", len(want))
			}
			if d := stream.Diff(want, lists); !d.OK() {
				t.Fatalf("lists built from the changes differ from the oracle: %s", d)
			}
			// The records counted for each list are what it holds.
			for k, n := range tally {
				if n != len(want[k]) {
					t.Errorf("%s: %d records counted, the list holds %d", k, n, len(want[k]))
				}
			}
			s.clear()
			for k, n := range tally {
				if n != 0 {
					t.Errorf("%s: %d records counted after the state was cleared", k, n)
				}
			}
		})
	}
}

// TestDirtyListsEachChangedProfileOnce: the profiles changed since the last
// takeDirty are listed once each with their state, a removed one as nil, a
// profile an event did not change not at all; after takeDirty nothing is
// dirty.
func TestDirtyListsEachChangedProfileOnce(t *testing.T) {
	e1, e2 := id(t, ident.Email, "a@example.com"), id(t, ident.Email, "b@example.com")
	on := func(profile string, st step) step { st.ev.Profile = profile; return st }
	s := newProfiles(5, nil)
	s.track = true
	for _, st := range []step{
		on("p", identify(e1)), on("p", enter(1)), on("p", enter(1)), // changed twice, then unchanged
		on("q", identify(e2)), on("q", forget()), // removed
		on("r", identify(e2)), on("r", forget()), on("r", enter(2, e1)), // removed, then back
	} {
		s.apply(&st.ev, st.aud, func(change) {})
	}
	got := map[string]string{}
	s.takeDirty(func(id string, p *profile) {
		if _, twice := got[id]; twice {
			t.Fatalf("%s listed twice", id)
		}
		got[id] = "removed"
		if p != nil {
			got[id] = fmt.Sprintf("%d ids %d audiences", len(p.ids), len(p.auds))
		}
	})
	want := map[string]string{s.keyOf("p"): "1 ids 1 audiences", s.keyOf("q"): "removed", s.keyOf("r"): "1 ids 1 audiences"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dirty: %v, want %v", got, want)
	}
	s.takeDirty(func(id string, _ *profile) { t.Fatalf("%s still dirty", id) })
	st := on("p", exit(1))
	s.apply(&st.ev, st.aud, func(change) {})
	n := 0
	s.takeDirty(func(id string, p *profile) {
		if n++; id != s.keyOf("p") || p == nil || len(p.auds) != 1 || p.auds[0]&outBit == 0 {
			t.Fatalf("dirty after exit: %s %+v", id, p)
		}
	})
	if n != 1 {
		t.Fatalf("%d dirty after one change, want 1", n)
	}
}
