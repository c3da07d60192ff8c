package stream_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

func email(t *testing.T, s string) schemas.Identifier {
	t.Helper()
	h, err := ident.OfString(ident.Email, s)
	if err != nil {
		t.Fatal(err)
	}
	return schemas.Identifier{Type: ident.Email, Hash: h}
}

func idfa(t *testing.T, s string) schemas.Identifier {
	t.Helper()
	h, err := ident.OfString(ident.IDFA, s)
	if err != nil {
		t.Fatal(err)
	}
	return schemas.Identifier{Type: ident.IDFA, Hash: h}
}

func TestOracleSemantics(t *testing.T) {
	a := email(t, "a@example.com")
	b := email(t, "b@example.com")
	c := email(t, "c@example.com")
	d := idfa(t, "6D92078A-8246-4BA4-AE5B-76104861E7DC")
	ids := func(x ...schemas.Identifier) []schemas.Identifier { return x }
	enter := func(p, aud string, x ...schemas.Identifier) schemas.Event {
		return schemas.Event{Kind: schemas.KindMembership, Profile: p, Audience: aud, Member: true, Identifiers: x}
	}
	exit := func(p, aud string, x ...schemas.Identifier) schemas.Event {
		return schemas.Event{Kind: schemas.KindMembership, Profile: p, Audience: aud, Member: false, Identifiers: x}
	}
	identify := func(p string, x ...schemas.Identifier) schemas.Event {
		return schemas.Event{Kind: schemas.KindIdentify, Profile: p, Identifiers: x}
	}
	type want map[stream.ListKey][]schemas.Identifier
	tests := []struct {
		name       string
		maxPerType int
		events     []schemas.Event
		want       want
	}{
		{"enter adds the profile's identifiers to the audience's lists", 0,
			[]schemas.Event{identify("p", a), enter("p", "x", d)},
			want{{"x", ident.Email}: ids(a), {"x", ident.IDFA}: ids(d)}},
		{"exit removes every identifier", 0,
			[]schemas.Event{enter("p", "x", a, d), exit("p", "x", a)},
			want{}},
		{"exit of a non-member leaves its identifiers out", 0,
			[]schemas.Event{enter("q", "x", b), exit("p", "x", a)},
			want{{"x", ident.Email}: ids(b)}},
		{"re-enter brings back identifiers seen meanwhile", 0,
			[]schemas.Event{enter("p", "x", a), exit("p", "x", a), identify("p", b), enter("p", "x")},
			want{{"x", ident.Email}: ids(a, b)}},
		{"an identify adds to the lists of current audiences", 0,
			[]schemas.Event{enter("p", "x", a), enter("p", "y", a), identify("p", b)},
			want{{"x", ident.Email}: ids(a, b), {"y", ident.Email}: ids(a, b)}},
		{"the bound drops the oldest identifier", 2,
			[]schemas.Event{enter("p", "x", a), identify("p", b), identify("p", c)},
			want{{"x", ident.Email}: ids(b, c)}},
		{"seeing an identifier again makes it the newest", 2,
			[]schemas.Event{enter("p", "x", a), identify("p", b), identify("p", a), identify("p", c)},
			want{{"x", ident.Email}: ids(a, c)}},
		{"the bound is per type", 1,
			[]schemas.Event{enter("p", "x", a, d), identify("p", b)},
			want{{"x", ident.Email}: ids(b), {"x", ident.IDFA}: ids(d)}},
		{"a native identify replaces the whole set", 0,
			[]schemas.Event{enter("p", "x", a, d), {Kind: schemas.KindIdentify, Profile: "p", Replace: true, Identifiers: ids(c)}},
			want{{"x", ident.Email}: ids(c)}},
		{"a segment identify does not replace", 0,
			[]schemas.Event{enter("p", "x", a, d), identify("p", c)},
			want{{"x", ident.Email}: ids(a, c), {"x", ident.IDFA}: ids(d)}},
		{"drop removes an identifier from every list", 0,
			[]schemas.Event{enter("p", "x", a, d), enter("p", "y"), {Kind: schemas.KindIdentify, Profile: "p", Drop: ids(d)}},
			want{{"x", ident.Email}: ids(a), {"y", ident.Email}: ids(a)}},
		{"drop wins over an add in the same event", 0,
			[]schemas.Event{{Kind: schemas.KindMembership, Profile: "p", Audience: "x", Member: true, Identifiers: ids(a, d), Drop: ids(d)}},
			want{{"x", ident.Email}: ids(a)}},
		{"forget takes the profile out of every audience", 0,
			[]schemas.Event{enter("p", "x", a), enter("p", "y"), enter("q", "x", b), {Kind: schemas.KindForget, Profile: "p"}},
			want{{"x", ident.Email}: ids(b)}},
		{"a forgotten profile starts afresh", 0,
			[]schemas.Event{enter("p", "x", a), {Kind: schemas.KindForget, Profile: "p"}, enter("p", "y", b)},
			want{{"y", ident.Email}: ids(b)}},
		{"no consent takes the profile out of every audience", 0,
			[]schemas.Event{enter("p", "x", a), enter("p", "y"), {Kind: schemas.KindIdentify, Profile: "p", NoConsent: true}},
			want{}},
		{"no consent wins over an entry in the same event", 0,
			[]schemas.Event{{Kind: schemas.KindMembership, Profile: "p", Audience: "x", Member: true, Identifiers: ids(a), NoConsent: true}},
			want{}},
		{"profiles are independent", 0,
			[]schemas.Event{enter("p", "x", a), enter("q", "x", b), exit("q", "x")},
			want{{"x", ident.Email}: ids(a)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := stream.NewOracle(tt.maxPerType)
			for i := range tt.events {
				o.Apply(&tt.events[i])
			}
			want := make(map[stream.ListKey]stream.Set)
			for k, v := range tt.want {
				s := make(stream.Set)
				for _, id := range v {
					s[id.Hash] = struct{}{}
				}
				want[k] = s
			}
			if got := o.Expected(); !maps.EqualFunc(got, want, maps.Equal) {
				t.Errorf("Expected() differs:\n%s", stream.Diff(want, got))
			}
		})
	}
}

func TestOracleCopiesReusedEvents(t *testing.T) {
	a, b := email(t, "a@example.com"), email(t, "b@example.com")
	o := stream.NewOracle(0)
	ev := schemas.Event{Kind: schemas.KindMembership, Profile: "p", Audience: "x", Member: true, Identifiers: []schemas.Identifier{a}}
	o.Apply(&ev)
	ev.Identifiers[0] = b // as the decoder does with the next record
	ev.Profile, ev.Audience = "q", "y"
	got := o.Expected()[stream.ListKey{Audience: "x", Type: ident.Email}]
	if _, ok := got[a.Hash]; !ok || len(got) != 1 {
		t.Fatalf("list x/EMAIL = %d hashes, want just a's", len(got))
	}
}

func TestOracleCounts(t *testing.T) {
	a := email(t, "a@example.com")
	o := stream.NewOracle(0)
	for _, ev := range []schemas.Event{
		{Kind: schemas.KindMembership, Profile: "p", Audience: "x", Member: true, Identifiers: []schemas.Identifier{a}},
		{Kind: schemas.KindMembership, Profile: "q", Audience: "x", Member: true},
		{Kind: schemas.KindMembership, Profile: "q", Audience: "y", Member: true},
		{Kind: schemas.KindIdentify, Profile: "r"},
		{Kind: schemas.KindForget, Profile: "s"},
	} {
		o.Apply(&ev)
	}
	if got := o.Profiles(); got != 3 {
		t.Errorf("Profiles() = %d, want 3", got)
	}
	if got := o.Members("x"); got != 2 {
		t.Errorf("Members(x) = %d, want 2", got)
	}
	if got := o.Members("z"); got != 0 {
		t.Errorf("Members(z) = %d, want 0", got)
	}
	if got := strings.Join(o.Audiences(), ","); got != "x,y" {
		t.Errorf("Audiences() = %s, want x,y", got)
	}
}

func TestDiff(t *testing.T) {
	a, b, c := email(t, "a@example.com").Hash, email(t, "b@example.com").Hash, email(t, "c@example.com").Hash
	x := stream.ListKey{Audience: "x", Type: ident.Email}
	y := stream.ListKey{Audience: "y", Type: ident.Email}
	expected := map[stream.ListKey]stream.Set{x: {a: {}, b: {}}, y: {}}
	actual, err := stream.ParseSet([]string{b.String(), strings.ToUpper(c.String())})
	if err != nil {
		t.Fatal(err)
	}
	r := stream.Diff(expected, map[stream.ListKey]stream.Set{x: actual})
	if r.OK() || r.Missing != 1 || r.Extra != 1 {
		t.Fatalf("Diff = missing %d extra %d OK %v, want 1, 1, false", r.Missing, r.Extra, r.OK())
	}
	if len(r.Lists) != 2 || r.Lists[0].Key != x || r.Lists[0].Missing[0] != a || r.Lists[0].Extra[0] != c {
		t.Fatalf("Diff lists = %+v", r.Lists)
	}
	if s := r.String(); !strings.Contains(s, "x/EMAIL: expected 2, actual 2, missing 1, extra 1") || !strings.Contains(s, "MISMATCH") {
		t.Errorf("String() = %q", s)
	}
	if r := stream.Diff(expected, map[stream.ListKey]stream.Set{x: {a: {}, b: {}}}); !r.OK() {
		t.Errorf("an absent list must equal an empty one: %s", r)
	}
	if _, err := stream.ParseSet([]string{"not-hex"}); err == nil {
		t.Error("ParseSet accepted a non-digest")
	}
}
