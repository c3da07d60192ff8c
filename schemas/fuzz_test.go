package schemas

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode checks on arbitrary input that the decoder never panics, that
// it rejects whatever encoding/json rejects, that what it accepts is a
// well-formed Event, that it agrees exactly with the naive reference
// decoder (reference_test.go), and that, for unkeyed records, it accepts
// exactly what validates against one of the JSON Schemas.
func FuzzDecode(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		f.Add("", fx.value)
	}
	f.Add("u123", []byte(`{"type":"identify","userId":"other","traits":{"email":"a@example.com"}}`))
	f.Add("p1", []byte(`{"type":"forget","profile":"p1"}`))
	f.Add("p2", []byte(`{"type":"forget","profile":"p1"}`))
	f.Add("", []byte(`{"type":"identify","userId":"u","context":{"consent":{"categoryPreferences":{"Advertising":"false"}}}}`))
	f.Add("", []byte(`{"type":"identify","userId":"u\ud800x","traits":{"email":"\ud83d\ude00@x.io"}}`))
	f.Add("", []byte{})
	f.Add("", []byte("{\"type\":\"identify\",\"userId\":\"\xff\"}"))

	f.Add("", []byte(`{"type":"track","event":"Audience Entered","userId":"u","properties":{"audience_key":"vip","vip":true},"context":{"personas":{"audience_settings":{"ad_account_id":"act-x1"}}}}`))
	f.Add("", []byte(`{"type":"membership","profile":"p","audience":"`+strings.Repeat("é", 151)+`","member":true}`))

	schemas := compileSchemas(f)
	cfg := DecoderConfig{ConsentCategory: "Advertising"}
	dec, err := NewDecoder(cfg)
	if err != nil {
		f.Fatal(err)
	}
	// Where the records' ad-account overrides decide, they are checked.
	ocfg := DecoderConfig{AdAccountOverrides: true}
	odec, err := NewDecoder(ocfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		var ev Event
		err := dec.Decode([]byte(key), value, &ev)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || !slices.Contains(Reasons(), de.Reason) {
				t.Fatalf("error %v is not a DecodeError with a documented reason", err)
			}
		}
		if !json.Valid(value) || !utf8.Valid(value) {
			if err == nil {
				t.Fatalf("accepted a record that is not valid UTF-8 JSON")
			}
			return
		}
		if err != nil && err.(*DecodeError).Reason == ReasonTooDeep {
			if jsonDepth(value) <= maxDepth {
				t.Fatalf("too_deep at depth %d", jsonDepth(value))
			}
			return
		}
		if err == nil {
			checkInvariants(t, &ev)
		}
		want, reason := refDecode(cfg, []byte(key), value)
		switch {
		case err == nil && reason != "":
			t.Fatalf("decoder accepted, reference rejects: %s", reason)
		case err != nil && err.(*DecodeError).Reason != reason:
			t.Fatalf("decoder rejects (%v), reference: %q", err, reason)
		case err == nil && !sameEvent(&ev, &want):
			t.Fatalf("events differ:\n got %+v\nwant %+v", ev, want)
		}
		var oev Event
		oerr := odec.Decode([]byte(key), value, &oev)
		owant, oreason := refDecode(ocfg, []byte(key), value)
		switch {
		case oerr == nil && oreason != "":
			t.Fatalf("with overrides: decoder accepted, reference rejects: %s", oreason)
		case oerr != nil && oerr.(*DecodeError).Reason != oreason:
			t.Fatalf("with overrides: decoder rejects (%v), reference: %q", oerr, oreason)
		case oerr == nil && !sameEvent(&oev, &owant):
			t.Fatalf("with overrides: events differ:\n got %+v\nwant %+v", oev, owant)
		}
		if key == "" {
			matched := matchingShapes(schemas, value)
			if (err == nil) != (len(matched) == 1) {
				t.Fatalf("decoder error %v, schemas matched %v", err, matched)
			}
		}
	})
}

func checkInvariants(t *testing.T, ev *Event) {
	t.Helper()
	if ev.Profile == "" {
		t.Fatal("accepted with an empty profile")
	}
	switch ev.Kind {
	case KindMembership:
		if ev.Audience == "" {
			t.Fatal("membership without audience")
		}
	case KindIdentify, KindForget:
		if ev.Audience != "" || ev.Member {
			t.Fatalf("%v carries a membership", ev.Kind)
		}
	default:
		t.Fatalf("kind %v", ev.Kind)
	}
	if ev.Replace && ev.Kind != KindIdentify {
		t.Fatal("Replace on a non-identify")
	}
	if ev.Rejected != len(ev.RejectReasons) {
		t.Fatalf("Rejected %d, %d reasons", ev.Rejected, len(ev.RejectReasons))
	}
	for i, id := range ev.Identifiers {
		if !id.Type.Valid() {
			t.Fatalf("identifier of type %v", id.Type)
		}
		if slices.Contains(ev.Identifiers[:i], id) {
			t.Fatal("duplicate identifier")
		}
		if slices.Contains(ev.Drop, id) {
			t.Fatal("identifier both added and dropped")
		}
	}
	for _, id := range ev.Drop {
		if id.Type != 2 && id.Type != 3 {
			t.Fatalf("dropped %v: only device ids are dropped", id.Type)
		}
	}
}
