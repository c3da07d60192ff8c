package stream_test

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestPopulationIsAShareOfWholeProfiles: the population holds every
// identifier a chosen profile sends, under its own type (an iOS device's id
// as an idfa, an Android one's as a maid), and none of the other
// profiles'; about share of the profiles are chosen.
func TestPopulationIsAShareOfWholeProfiles(t *testing.T) {
	cfg := rich
	cfg.Profiles, cfg.Events = 3000, 60_000
	gen, err := stream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	users := gen.Population(stream.DefaultPopulationShare)
	popType := make(map[ident.Hash]ident.Type, len(users))
	for _, u := range users {
		typ, err := ident.ParseType(u.Type)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ident.OfString(typ, u.ID)
		if err != nil {
			t.Fatalf("population user %s %q: %v", u.Type, u.ID, err)
		}
		popType[h] = typ
	}
	recs, _ := collect(t, cfg)
	dec := newDecoder(t, schemas.DecoderConfig{ConsentCategory: cfg.ConsentCategory})
	in := map[string]bool{} // profile: its identifiers are users
	var ev schemas.Event
	for _, r := range recs {
		if dec.Decode(r.Key, r.Value, &ev) != nil {
			continue
		}
		for _, id := range slices.Concat(ev.Identifiers, ev.Drop) {
			typ, user := popType[id.Hash]
			if user && typ != id.Type {
				t.Fatalf("%s's %s identifier is a %s user", ev.Profile, id.Type, typ)
			}
			if was, seen := in[ev.Profile]; seen && was != user {
				t.Fatalf("profile %s is partly in the population", ev.Profile)
			}
			in[ev.Profile] = user
		}
	}
	users2 := 0
	for _, u := range in {
		if u {
			users2++
		}
	}
	if share := float64(users2) / float64(len(in)); math.Abs(share-stream.DefaultPopulationShare) > 0.05 {
		t.Errorf("%d of %d profiles are Pinterest users (%.2f), want about %.2f", users2, len(in), share, stream.DefaultPopulationShare)
	}
	// Some identifiers are held as a CDP would: re-cased, with spaces.
	odd := 0
	for _, u := range users {
		if strings.TrimSpace(u.ID) != u.ID || u.Type == "email" && strings.ToLower(u.ID) != u.ID ||
			u.Type == "idfa" && strings.ToUpper(u.ID) != u.ID || u.Type == "maid" && strings.ToLower(u.ID) != u.ID {
			odd++
		}
	}
	if odd == 0 || odd > len(users)/2 {
		t.Errorf("%d of %d users held in another case or with spaces", odd, len(users))
	}
	if len(gen.Population(0)) != 0 || len(gen.Population(1)) <= len(users) {
		t.Error("Population(0) is not empty, or Population(1) not larger than the default share")
	}
}

func TestWritePopulationOneUserALine(t *testing.T) {
	var b bytes.Buffer
	if err := stream.WritePopulation(&b, []stream.User{{Type: "email", ID: " A@Example.com"}, {Type: "idfa", ID: "X"}}); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.HasSuffix(got, "\nemail\t A@Example.com\nidfa\tX\n") || !strings.HasPrefix(got, "# 2 ") {
		t.Errorf("wrote %q", got)
	}
}

// TestPreHashedStreamFillsTheSameLists: a platform that sends identifiers
// hashed as Pinterest matches them fills exactly the lists pinsync fills
// from the plaintext (the generator hashes by Pinterest's rules with code
// of its own, pinsync's decoder with its own); one that hashes IDFAs from
// their lower case fills IDFA lists of the same sizes that share no record
// with them.
func TestPreHashedStreamFillsTheSameLists(t *testing.T) {
	cfg := rich
	cfg.ConsentCategory = ""
	lists := func(pre stream.PreHash) map[stream.ListKey]stream.Set {
		c := cfg
		c.PreHashed = pre
		recs, _ := collect(t, c)
		o, _ := stream.BuildOracle(recs, newDecoder(t, schemas.DecoderConfig{}), 0)
		return o.Expected()
	}
	plain, pinterest, lower := lists(stream.PreHashNone), lists(stream.PreHashPinterest), lists(stream.PreHashIDFALowercase)
	if d := stream.Diff(plain, pinterest); !d.OK() {
		t.Fatalf("lists of the pre-hashed stream differ from the plaintext one's: %s", d)
	}
	idfa := 0
	for k, want := range plain {
		got := lower[k]
		if k.Type != ident.IDFA {
			if d := stream.Diff(map[stream.ListKey]stream.Set{k: want}, map[stream.ListKey]stream.Set{k: got}); !d.OK() {
				t.Errorf("%s differs: %s", k, d)
			}
			continue
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d records, want %d", k, len(got), len(want))
		}
		for h := range got {
			if _, same := want[h]; same {
				t.Fatalf("%s: a lower-case IDFA hash equals the one Pinterest matches", k)
			}
		}
		idfa += len(got)
	}
	if idfa == 0 {
		t.Fatal("the stream fills no IDFA list")
	}
}
