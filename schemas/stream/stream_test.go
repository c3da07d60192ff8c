package stream_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// rich is a small stream in which every kind of record occurs.
var rich = stream.Config{
	Profiles: 400, Audiences: 14, Events: 20_000, Seed: 42,
	MalformedFraction: 0.005, NativeFraction: 0.05, ForgetFraction: 0.01,
	ConsentCategory: "Advertising", ConsentFraction: 0.01,
	EmailsPerProfile: 7, DevicesPerProfile: 3, DeviceFraction: 0.6,
}

func collect(t testing.TB, cfg stream.Config) ([]stream.Record, stream.Stats) {
	t.Helper()
	recs, st, err := stream.Collect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return recs, st
}

func newDecoder(t testing.TB, cfg schemas.DecoderConfig) *schemas.Decoder {
	t.Helper()
	dec, err := schemas.NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dec
}

func TestSameSeedSameBytes(t *testing.T) {
	a, sa := collect(t, rich)
	b, sb := collect(t, rich)
	if sa != sb || len(a) != len(b) {
		t.Fatalf("two runs differ: %+v vs %+v", sa, sb)
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) ||
			a[i].Malformed != b[i].Malformed || !a[i].Timestamp.Equal(b[i].Timestamp) {
			t.Fatalf("record %d differs:\n%s\n%s", i, a[i].Value, b[i].Value)
		}
	}
	other := rich
	other.Seed++
	c, _ := collect(t, other)
	same := 0
	for i := range min(len(a), len(c)) {
		if bytes.Equal(a[i].Value, c[i].Value) {
			same++
		}
	}
	if same > len(a)/100 {
		t.Errorf("another seed gave %d identical records out of %d", same, len(a))
	}
}

func TestRunEmitsExactlyEvents(t *testing.T) {
	for _, n := range []int{1, 7, 1000, 30_000} {
		cfg := rich
		cfg.Events = n
		recs, st := collect(t, cfg)
		if len(recs) != n || st.Records != n {
			t.Errorf("Events %d: got %d records, stats say %d", n, len(recs), st.Records)
		}
		bad := 0
		for _, r := range recs {
			if r.Malformed {
				bad++
			}
		}
		if bad != st.Malformed {
			t.Errorf("Events %d: %d records marked malformed, stats say %d", n, bad, st.Malformed)
		}
	}
}

func TestStreamHasEveryKindOfChange(t *testing.T) {
	_, st := collect(t, rich)
	for name, v := range map[string]int{
		"Malformed": st.Malformed, "Native": st.Native, "Backfill": st.Backfill,
		"Entries": st.Entries, "Exits": st.Exits, "Duplicates": st.Duplicates,
		"EmailsAdded": st.EmailsAdded, "DevicesAdded": st.DevicesAdded,
		"TrackingOff": st.TrackingOff, "TrackingOn": st.TrackingOn,
		"Identifies": st.Identifies, "Forgets": st.Forgets, "ConsentFlip": st.ConsentFlip,
	} {
		if v == 0 {
			t.Errorf("stats: no %s in %+v", name, st)
		}
	}
}

func TestNoNativeRecordsUnlessAsked(t *testing.T) {
	cfg := rich
	cfg.NativeFraction = stream.None
	recs, st := collect(t, cfg)
	if st.Native != 0 || st.Forgets != 0 {
		t.Errorf("stats: %d native records, %d forgets with NativeFraction None", st.Native, st.Forgets)
	}
	for _, r := range recs {
		if !r.Malformed && !bytes.Contains(r.Value, []byte(`"messageId"`)) {
			t.Fatalf("a record that is not Segment's: %s", r.Value)
		}
	}
}

func TestRecordsAreJSONObjectsShapedLikeEngage(t *testing.T) {
	recs, _ := collect(t, rich)
	for _, r := range recs {
		var m map[string]any
		err := json.Unmarshal(r.Value, &m)
		if r.Malformed {
			continue
		}
		if err != nil {
			t.Fatalf("record is not JSON: %v\n%s", err, r.Value)
		}
		typ := m["type"]
		if _, native := m["profile"]; native {
			typ = "native " + typ.(string)
		}
		switch typ {
		case "track":
			props := m["properties"].(map[string]any)
			key := props["audience_key"].(string)
			if _, ok := props[key].(bool); !ok {
				t.Fatalf("track without a boolean properties[%s]: %s", key, r.Value)
			}
			p := m["context"].(map[string]any)["personas"].(map[string]any)
			if p["computation_key"] != key || p["computation_class"] == "" {
				t.Fatalf("track with personas %v: %s", p, r.Value)
			}
			fallthrough
		case "identify":
			if m["userId"] != string(r.Key) {
				t.Fatalf("userId %v, key %s: %s", m["userId"], r.Key, r.Value)
			}
		case "native identify", "native membership", "native forget":
			if m["profile"] != string(r.Key) {
				t.Fatalf("profile %v, key %s", m["profile"], r.Key)
			}
		default:
			t.Fatalf("unexpected type %v: %s", m["type"], r.Value)
		}
	}
}

func TestEmailsNeedNormalising(t *testing.T) {
	recs, _ := collect(t, rich)
	var raw, messy int
	for _, r := range recs {
		var m struct {
			Traits  struct{ Email *string }
			Context struct{ Traits struct{ Email *string } }
		}
		if r.Malformed || json.Unmarshal(r.Value, &m) != nil {
			continue
		}
		for _, e := range []*string{m.Traits.Email, m.Context.Traits.Email} {
			if e == nil {
				continue
			}
			raw++
			n, err := ident.Normalise(ident.Email, *e)
			if err != nil {
				t.Fatalf("email %q is not valid: %v", *e, err)
			}
			if n != *e {
				messy++
			}
		}
	}
	if messy == 0 || messy > raw/4 {
		t.Errorf("%d of %d emails need normalising; want some, not most", messy, raw)
	}
}

func TestDecoderRejectsExactlyTheMalformedRecords(t *testing.T) {
	recs, st := collect(t, rich)
	dec := newDecoder(t, schemas.DecoderConfig{ConsentCategory: rich.ConsentCategory})
	var ev schemas.Event
	reasons := make(map[string]int)
	for i, r := range recs {
		err := dec.Decode(r.Key, r.Value, &ev)
		if r.Malformed && err == nil {
			t.Errorf("record %d is malformed but decoded as %v: %s", i, ev.Kind, r.Value)
		}
		if !r.Malformed && err != nil {
			t.Errorf("record %d rejected: %v: %s", i, err, r.Value)
		}
		var de *schemas.DecodeError
		if err != nil && !errors.As(err, &de) {
			t.Errorf("record %d: error %T is not a *schemas.DecodeError", i, err)
		}
		if de != nil {
			reasons[de.Reason]++
		}
	}
	for _, reason := range []string{schemas.ReasonInvalidJSON, schemas.ReasonNotAnObject,
		schemas.ReasonMissingAudience, schemas.ReasonInvalidField, schemas.ReasonMissingField} {
		if reasons[reason] == 0 {
			t.Errorf("no malformed record rejected as %s (rejections: %v)", reason, reasons)
		}
	}
	_, rejected := stream.BuildOracle(recs, dec, 0)
	if rejected != st.Malformed {
		t.Errorf("BuildOracle: %d rejected, generator made %d malformed", rejected, st.Malformed)
	}
}

func TestProfilesNeverShareIdentifiers(t *testing.T) {
	cfg := rich
	cfg.Profiles, cfg.Events = 3000, 60_000
	recs, _ := collect(t, cfg)
	dec := newDecoder(t, schemas.DecoderConfig{})
	owner := make(map[ident.Hash]string)
	var ev schemas.Event
	for _, r := range recs {
		if dec.Decode(r.Key, r.Value, &ev) != nil {
			continue
		}
		for _, id := range slices.Concat(ev.Identifiers, ev.Drop) {
			if p, ok := owner[id.Hash]; ok && p != ev.Profile {
				t.Fatalf("%s identifier %s of %s also belongs to %s", id.Type, id.Hash, ev.Profile, p)
			}
			owner[id.Hash] = ev.Profile
		}
	}
	if len(owner) < cfg.Profiles {
		t.Errorf("only %d identifiers for %d profiles", len(owner), cfg.Profiles)
	}
}

func TestOracleOfAStream(t *testing.T) {
	recs, st := collect(t, rich)
	dec := newDecoder(t, schemas.DecoderConfig{ConsentCategory: rich.ConsentCategory})
	o, rejected := stream.BuildOracle(recs, dec, 0)
	if rejected != st.Malformed {
		t.Fatalf("%d rejected, %d malformed", rejected, st.Malformed)
	}
	if got, max := o.Profiles(), rich.Profiles-st.Forgets; got == 0 || got > max {
		t.Errorf("Profiles() = %d, want 1..%d", got, max)
	}
	exp := o.Expected()
	types := make(map[ident.Type]bool)
	for k, s := range exp {
		types[k.Type] = true
		if len(s) == 0 {
			t.Errorf("Expected() has an empty list %s", k)
		}
		if o.Members(k.Audience) == 0 {
			t.Errorf("list %s of an audience without members", k)
		}
	}
	for _, typ := range ident.Types {
		if !types[typ] {
			t.Errorf("no %s list in Expected()", typ)
		}
	}
	if r := stream.Diff(exp, exp); !r.OK() {
		t.Errorf("Diff of Expected() with itself: %s", r)
	}
	// The same records without the malformed ones give the same lists.
	clean := slices.DeleteFunc(slices.Clone(recs), func(r stream.Record) bool { return r.Malformed })
	o2, rejected := stream.BuildOracle(clean, dec, 0)
	if rejected != 0 || !maps.EqualFunc(o2.Expected(), exp, maps.Equal) {
		t.Errorf("without malformed records: %d rejected, lists differ: %s", rejected, stream.Diff(exp, o2.Expected()))
	}
}

func TestAudienceKeys(t *testing.T) {
	g, err := stream.New(stream.Config{Audiences: 2000, AudiencePrefix: "t1_"})
	if err != nil {
		t.Fatal(err)
	}
	keys := g.Audiences()
	if keys[0] != "t1_first_time_shoppers" || keys[1] != "t1_cart_abandoners" {
		t.Errorf("first audiences %v", keys[:2])
	}
	seen := make(map[string]bool)
	for _, k := range keys {
		if seen[k] || !strings.HasPrefix(k, "t1_") {
			t.Fatalf("audience key %q repeated or without prefix", k)
		}
		seen[k] = true
	}
}

func TestPrefixesAreEscaped(t *testing.T) {
	cfg := stream.Config{Profiles: 20, Events: 300, AudiencePrefix: "q\"\\\n\t\x01é/", ProfilePrefix: "p\"", MalformedFraction: stream.None}
	recs, _ := collect(t, cfg)
	for _, r := range recs {
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatalf("%v: %s", err, r.Value)
		}
		if !strings.Contains(fmt.Sprint(m), cfg.AudiencePrefix) && m["type"] != "identify" && m["type"] != "forget" {
			t.Fatalf("audience prefix lost: %s", r.Value)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (stream.Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	for _, tt := range []struct {
		field string
		cfg   stream.Config
	}{
		{"Profiles", stream.Config{Profiles: -1}},
		{"Audiences", stream.Config{Audiences: -3}},
		{"Events", stream.Config{Events: -1}},
		{"MalformedFraction", stream.Config{MalformedFraction: 0.9}},
		{"NativeFraction", stream.Config{NativeFraction: 1.5}},
		{"DeviceFraction", stream.Config{DeviceFraction: -0.5}},
		{"EmailsPerProfile", stream.Config{EmailsPerProfile: 100}},
		{"AudiencePrefix", stream.Config{AudiencePrefix: "\xff"}},
		{"ExitedEvent", stream.Config{EnteredEvent: "X", ExitedEvent: "X"}},
	} {
		err := tt.cfg.Validate()
		var ce *stream.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field {
			t.Errorf("%+v: Validate() = %v, want a ConfigError on %s", tt.cfg, err, tt.field)
		}
		if _, err := stream.New(tt.cfg); err == nil {
			t.Errorf("New accepted an invalid %s", tt.field)
		}
	}
}

func TestEmitErrorStopsTheRun(t *testing.T) {
	g, err := stream.New(rich)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	n := 0
	st, err := g.Run(func(stream.Record) error {
		if n++; n == 100 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || st.Records != 100 {
		t.Errorf("Run = %d records, %v; want 100, boom", st.Records, err)
	}
}

// BenchmarkGenerate measures generation alone (no decoding), in records/s.
func BenchmarkGenerate(b *testing.B) {
	g, err := stream.New(stream.Config{Events: 1_000_000})
	if err != nil {
		b.Fatal(err)
	}
	var bytes int64
	records := 0
	for b.Loop() {
		st, err := g.Run(func(r stream.Record) error {
			bytes += int64(len(r.Value))
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		records += st.Records
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(bytes)/float64(records), "B/event")
}

// BenchmarkOracle measures decoding plus the Oracle, in records/s.
func BenchmarkOracle(b *testing.B) {
	recs, _ := collect(b, stream.Config{Events: 200_000})
	dec := newDecoder(b, schemas.DecoderConfig{})
	records := 0
	for b.Loop() {
		stream.BuildOracle(recs, dec, 0)
		records += len(recs)
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "events/s")
}

// Generate a stream, decode it with the real decoder and ask the Oracle what
// the Pinterest lists must hold.
func Example() {
	recs, st, err := stream.Collect(stream.Config{Profiles: 1000, Audiences: 3, Events: 10_000, Seed: 1})
	if err != nil {
		panic(err)
	}
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		panic(err)
	}
	o, rejected := stream.BuildOracle(recs, dec, stream.DefaultMaxIdentifiersPerType)
	fmt.Println("records:", st.Records, "rejected:", rejected, "malformed:", st.Malformed)
	exp := o.Expected()
	for _, aud := range o.Audiences() {
		fmt.Printf("%s: %d members, %d emails\n", aud, o.Members(aud), len(exp[stream.ListKey{Audience: aud, Type: ident.Email}]))
	}
	// Output:
	// records: 10000 rejected: 11 malformed: 11
	// cart_abandoners: 317 members, 570 emails
	// first_time_shoppers: 300 members, 555 emails
	// high_value_customers: 304 members, 564 emails
}
