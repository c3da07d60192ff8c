package format

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pinsync/pinsync/schemas"
)

// Every decoder of the package has a fuzz test. Each checks, on arbitrary
// input, that decoding never panics, that a rejection is a DecodeError of
// a documented reason (never a registry error: the registry is up), and
// that an accepted record is a well-formed Event; and, on input the test
// wraps or encodes itself, that the format decodes to exactly what the
// plain JSON decoder makes of the same event.

// checkDecoded fails t unless err is nil or a documented DecodeError, and
// an accepted ev is well-formed.
func checkDecoded(t *testing.T, err error, ev *schemas.Event) {
	t.Helper()
	if err != nil {
		var de *schemas.DecodeError
		if !errors.As(err, &de) || !slices.Contains(schemas.Reasons(), de.Reason) {
			t.Fatalf("error %v (%T) is not a DecodeError with a documented reason", err, err)
		}
		return
	}
	switch {
	case ev.Profile == "":
		t.Fatal("accepted with an empty profile")
	case ev.Kind == schemas.KindMembership && ev.Audience == "":
		t.Fatal("membership without audience")
	case ev.Kind != schemas.KindMembership && (ev.Audience != "" || ev.Member):
		t.Fatalf("%v carries a membership", ev.Kind)
	case ev.Kind < schemas.KindIdentify || ev.Kind > schemas.KindForget:
		t.Fatalf("kind %v", ev.Kind)
	case ev.Rejected != len(ev.RejectReasons):
		t.Fatalf("Rejected %d, %d reasons", ev.Rejected, len(ev.RejectReasons))
	}
	for _, id := range append(slices.Clone(ev.Identifiers), ev.Drop...) {
		if !id.Type.Valid() {
			t.Fatalf("identifier of type %v", id.Type)
		}
	}
}

// deep reports whether v may nest near the decoder's depth limit, where a
// wrapper's own level makes the difference.
func deep(v []byte) bool { return bytes.Count(v, []byte("["))+bytes.Count(v, []byte("{")) > 100 }

func fuzzDecode(t *testing.T, d *Decoder, rec Record) outcome {
	t.Helper()
	var ev schemas.Event
	err := d.Decode(t.Context(), rec, &ev)
	checkDecoded(t, err, &ev)
	return outcomeOf(t, err, &ev)
}

func plainOutcome(t *testing.T, key, value []byte) outcome {
	t.Helper()
	var ev schemas.Event
	return outcomeOf(t, eventDecoder(t).Decode(key, value, &ev), &ev)
}

// unwrapped is what decoding the JSON value v that an envelope carries in
// its member field must give: null is no event, a string is the text of
// the record, anything else is the record.
func unwrapped(t *testing.T, key, v []byte, field string) outcome {
	t.Helper()
	v = bytes.TrimSpace(v)
	var s string
	switch {
	case string(v) == "null":
		return outcome{reason: schemas.ReasonInvalidEnvelope, field: field}
	case json.Unmarshal(v, &s) == nil:
		return plainOutcome(t, key, []byte(s))
	}
	return plainOutcome(t, key, v)
}

func agree(t *testing.T, got, want outcome) {
	t.Helper()
	if !got.equal(want) {
		t.Fatalf("wrapped and plain decodings differ:\n got %+v\nwant %+v", got, want)
	}
}

var fuzzEvents = []string{
	`{"type":"membership","profile":"p1","audience":"vip","member":true,"identifiers":{"email":["a@example.com"]}}`,
	`{"type":"track","event":"Audience Entered","userId":"u","properties":{"audience_key":"vip","vip":true},"context":{"traits":{"email":"a@example.com"}}}`,
	`{"type":"identify","userId":"u","traits":{"email":"x"}}`,
	`{"type":"forget","profile":"p1"}`,
	`[1,2]`, `null`, `"{\"type\":\"forget\",\"profile\":\"p\"}"`, `{"type":`,
}

func FuzzConnect(f *testing.F) {
	for _, e := range fuzzEvents {
		f.Add("", []byte(e), false, []byte(`{"schema":null,"payload":`+e+`}`))
		f.Add("p1", []byte(e), true, []byte(`{"payload":`+string(quoted([]byte(e)))+`}`))
	}
	d := newDecoder(f, Config{Kind: ConnectJSON}, nil)
	f.Fuzz(func(t *testing.T, key string, payload []byte, asString bool, raw []byte) {
		fuzzDecode(t, d, Record{Key: []byte(key), Value: raw})
		if !json.Valid(payload) || !utf8.Valid(payload) || deep(payload) {
			return
		}
		inner := payload
		if asString {
			inner = quoted(payload)
		}
		got := fuzzDecode(t, d, Record{Key: []byte(key), Value: []byte(`{"schema":{"type":"string"},"payload":` + string(inner) + "}")})
		agree(t, got, unwrapped(t, []byte(key), inner, "payload"))
	})
}

func FuzzCloudEvents(f *testing.F) {
	for _, e := range fuzzEvents {
		f.Add("", []byte(e), uint8(0), []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":`+e+`}`), "application/cloudevents+json")
		f.Add("p1", []byte(e), uint8(1), []byte(e), "application/json")
		f.Add("p1", []byte(e), uint8(2), []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"`+base64.StdEncoding.EncodeToString([]byte(e))+`"}`), "")
	}
	d := newDecoder(f, Config{Kind: CloudEvents}, nil)
	f.Fuzz(func(t *testing.T, key string, data []byte, mode uint8, raw []byte, contentType string) {
		k := []byte(key)
		fuzzDecode(t, d, Record{Key: k, Value: raw, Headers: headers("content-type", contentType)})
		fuzzDecode(t, d, Record{Key: k, Value: raw, Headers: headers("ce_specversion", "1.0", "ce_id", "1", "ce_source", "/s", "ce_type", "t", "content-type", contentType)})

		want := plainOutcome(t, k, data)
		switch mode % 3 {
		case 0: // binary mode: the value is the data, as it is
			agree(t, fuzzDecode(t, d, Record{Key: k, Value: data, Headers: headers(
				"ce_specversion", "1.0", "ce_id", "1", "ce_source", "/s", "ce_type", "t", "content-type", "application/json")}), want)
		case 1: // structured, data_base64: any bytes
			v, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data_base64": data})
			agree(t, fuzzDecode(t, d, Record{Key: k, Value: v}), want)
		case 2: // structured, data: a JSON value
			if !json.Valid(data) || !utf8.Valid(data) || deep(data) {
				return
			}
			v := []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json","data":` + string(data) + "}")
			agree(t, fuzzDecode(t, d, Record{Key: k, Value: v, Headers: headers("content-type", "application/cloudevents+json")}), unwrapped(t, k, data, "data"))
		}
	})
}

// fuzzNative builds a native record from fuzzed fields, and its JSON.
// flags says which optional members are present.
func fuzzNative(typ, profile, audience string, flags uint8, email, idfa, maid string, ts int64) (native, []byte, bool) {
	n := native{typ: typ, profile: profile}
	m := map[string]any{"type": typ, "profile": profile}
	if flags&1 != 0 {
		n.audience, m["audience"] = &audience, audience
	}
	if flags&2 != 0 {
		v := flags&4 != 0
		n.member, m["member"] = &v, v
	}
	if flags&8 != 0 {
		n.audienceName, m["audience_name"] = &audience, audience
	}
	if flags&16 != 0 {
		ids := [3][]string{{email}, {idfa}, {maid}}
		n.ids = &ids
		m["identifiers"] = map[string]any{"email": ids[0], "idfa": ids[1], "maid": ids[2]}
	}
	if flags&32 != 0 {
		at := time.UnixMilli(ts).UTC()
		n.timestamp, m["timestamp"] = &at, at.Format("2006-01-02T15:04:05.000Z07:00")
	}
	value, _ := json.Marshal(m)
	encoded := []string{typ, profile}
	if flags&(1|8) != 0 {
		encoded = append(encoded, audience)
	}
	if flags&16 != 0 {
		encoded = append(encoded, email, idfa, maid)
	}
	valid := true
	for _, s := range encoded {
		valid = valid && utf8.ValidString(s)
	}
	return n, value, valid
}

// fuzzRegistry fuzzes a registry format: raw bytes after the prefix, and
// fuzzed native records encoded with enc.
func fuzzRegistry(f *testing.F, kind Kind, st sr.Schema, prefix func(id int) []byte, enc func(native) []byte) {
	f.Add("", []byte{0}, "membership", "p1", "vip", uint8(0xff), "a@example.com", "6d92078a-8246-4ba4-ae5b-76104861e7dc", "38400000-8cf0-11bd-b23e-10b96e40000d", int64(1772366400123))
	f.Add("p1", []byte{2, 4, 0}, "identify", "p1", "", uint8(16), "", "", "x", int64(0))
	f.Add("", []byte("\x02\x04p1"), "forget", "", "", uint8(0), "", "", "", int64(-1))
	f.Add("", []byte{}, "membership", "p\xff", "vip", uint8(3), "", "", "", int64(0))
	fake, reg := fakeRegistry(f)
	id := register(f, fake, "native-value", st)
	mappedID := register(f, fake, "changes-value", sr.Schema{Schema: audienceChange, Type: sr.TypeAvro})
	d := newDecoder(f, Config{Kind: kind}, reg)
	mapped := newDecoder(f, Config{Kind: Avro, Mapping: audienceChangeMapping}, reg)
	f.Fuzz(func(t *testing.T, key string, raw []byte, typ, profile, audience string, flags uint8, email, idfa, maid string, ts int64) {
		k := []byte(key)
		fuzzDecode(t, d, Record{Key: k, Value: append(prefix(id), raw...)})
		fuzzDecode(t, mapped, Record{Key: k, Value: append(wirePrefix(mappedID), raw...)})

		n, value, valid := fuzzNative(typ, profile, audience, flags, email, idfa, maid, ts)
		got := fuzzDecode(t, d, Record{Key: k, Value: append(prefix(id), enc(n)...)})
		if !valid {
			if got.reason != schemas.ReasonInvalidPayload {
				t.Fatalf("a string that is not UTF-8: %+v, want invalid_payload", got)
			}
			return
		}
		agree(t, got, plainOutcome(t, k, value))
	})
}

func FuzzAvro(f *testing.F) {
	fuzzRegistry(f, Avro, sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro}, wirePrefix, avroNative)
}

func FuzzProtobuf(f *testing.F) {
	fuzzRegistry(f, Protobuf, sr.Schema{Schema: schemas.NativeEventProto, Type: sr.TypeProtobuf},
		func(id int) []byte { return append(wirePrefix(id), 0) }, protoNative)
}

func FuzzJSONSchema(f *testing.F) {
	for _, e := range fuzzEvents {
		f.Add("", []byte(e))
	}
	f.Add("u", []byte("{\"type\":\"identify\",\"userId\":\"\xff\"}"))
	fake, reg := fakeRegistry(f)
	id := register(f, fake, "engage-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	d := newDecoder(f, Config{Kind: JSONSchema}, reg)
	mapped := newDecoder(f, Config{Kind: JSONSchema, Mapping: Mapping{Type: "type", Profile: "userId", Email: "traits.email"}}, reg)
	f.Fuzz(func(t *testing.T, key string, payload []byte) {
		k := []byte(key)
		rec := Record{Key: k, Value: append(wirePrefix(id), payload...)}
		agree(t, fuzzDecode(t, d, rec), plainOutcome(t, k, payload))
		fuzzDecode(t, mapped, rec)
	})
}
