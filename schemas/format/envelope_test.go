package format

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// engageStream is the default mix of Segment and native records, with
// malformed ones, and its plain decoding.
func engageStream(t *testing.T) ([]stream.Record, []outcome) {
	t.Helper()
	recs := collect(t, stream.Config{Profiles: 400, Audiences: 6, Events: 4000, Seed: 7, MalformedFraction: 0.01,
		ConsentCategory: "Advertising"})
	return recs, plain(t, recs)
}

// quoted is v as a JSON string, as encoding/json writes it.
func quoted(v []byte) []byte {
	b, _ := json.Marshal(string(v))
	return b
}

func TestJSONWrappersDecodeAsThePlainStream(t *testing.T) {
	recs, want := engageStream(t)
	for _, tc := range []struct {
		name   string
		kind   Kind
		quotes bool // some values travel as JSON strings
		encode func(i int, r stream.Record) Record
	}{
		{"connect, payload an object", ConnectJSON, true, func(_ int, r stream.Record) Record {
			if !json.Valid(r.Value) {
				return Record{Key: r.Key, Value: []byte(`{"schema":{"type":"string","optional":false},"payload":` + string(quoted(r.Value)) + `}`)}
			}
			return Record{Key: r.Key, Value: []byte(`{"schema":null,"payload":` + string(r.Value) + `}`)}
		}},
		{"connect, payload a string", ConnectJSON, true, func(_ int, r stream.Record) Record {
			return Record{Key: r.Key, Value: []byte(`{"payload":` + string(quoted(r.Value)) + `,"schema":{"type":"string","optional":false}}`)}
		}},
		{"cloudevents binary", CloudEvents, false, func(i int, r stream.Record) Record {
			return Record{Key: r.Key, Value: r.Value, Headers: headers("ce_specversion", "1.0", "ce_id", strconv.Itoa(i),
				"ce_source", "/engage/spa_1", "ce_type", "com.segment.engage.audience", "content-type", "application/json; charset=utf-8")}
		}},
		{"cloudevents structured", CloudEvents, true, func(i int, r stream.Record) Record {
			ev := map[string]any{"specversion": "1.0", "id": strconv.Itoa(i), "source": "/engage/spa_1",
				"type": "com.segment.engage.audience", "datacontenttype": "application/json"}
			switch {
			case i%3 == 0 || !json.Valid(r.Value):
				ev["data_base64"] = base64.StdEncoding.EncodeToString(r.Value)
			case i%3 == 1:
				ev["data"] = json.RawMessage(r.Value)
			default:
				ev["data"] = string(r.Value)
			}
			v, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			return Record{Key: r.Key, Value: v, Headers: headers("content-type", "application/cloudevents+json; charset=UTF-8")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := make([]Record, len(recs))
			for i, r := range recs {
				in[i] = tc.encode(i, r)
			}
			w := want
			if tc.quotes {
				w = wantOfQuoted(t, recs, want)
			}
			decodeAll(t, newDecoder(t, Config{Kind: tc.kind}, nil), in, w)
		})
	}
}

// wantOfQuoted: a record that is not valid UTF-8 cannot be a JSON string;
// quoted, it holds U+FFFD instead, and decodes as that text does.
func wantOfQuoted(t *testing.T, recs []stream.Record, want []outcome) []outcome {
	out := append([]outcome(nil), want...)
	d := eventDecoder(t)
	var ev schemas.Event
	for i, r := range recs {
		var s string
		if json.Unmarshal(quoted(r.Value), &s) == nil && s != string(r.Value) {
			out[i] = outcomeOf(t, d.Decode(r.Key, []byte(s), &ev), &ev)
		}
	}
	return out
}

func TestMalformedEnvelopesAreRejectedWithTheirReason(t *testing.T) {
	const event = `{"type":"forget","profile":"p1"}`
	ce := func(kv ...string) []string {
		base := map[string]string{"ce_specversion": "1.0", "ce_id": "1", "ce_source": "/s", "ce_type": "t"}
		for i := 0; i+1 < len(kv); i += 2 {
			base[kv[i]] = kv[i+1]
		}
		var out []string
		for k, v := range base {
			if v != "-" {
				out = append(out, k, v)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name          string
		kind          Kind
		rec           Record
		reason, field string
	}{
		{"connect tombstone", ConnectJSON, Record{}, schemas.ReasonEmptyRecord, ""},
		{"connect not json", ConnectJSON, Record{Value: []byte(`{"payload":`)}, schemas.ReasonInvalidJSON, ""},
		{"connect not an object", ConnectJSON, Record{Value: []byte(`[1]`)}, schemas.ReasonNotAnObject, ""},
		{"connect without payload", ConnectJSON, Record{Value: []byte(event)}, schemas.ReasonInvalidEnvelope, "payload"},
		{"connect null payload", ConnectJSON, Record{Value: []byte(`{"schema":null,"payload":null}`)}, schemas.ReasonInvalidEnvelope, "payload"},
		{"connect payload of a bad event", ConnectJSON, Record{Value: []byte(`{"payload":{"type":"identify"}}`)}, schemas.ReasonMissingProfile, "userId"},
		{"connect payload string not json", ConnectJSON, Record{Value: []byte(`{"payload":"{\"type\""}`)}, schemas.ReasonInvalidJSON, ""},
		{"binary wrong version", CloudEvents, Record{Value: []byte(event), Headers: headers(ce("ce_specversion", "0.3")...)}, schemas.ReasonInvalidEnvelope, "ce_specversion"},
		{"binary without id", CloudEvents, Record{Value: []byte(event), Headers: headers(ce("ce_id", "-")...)}, schemas.ReasonInvalidEnvelope, "ce_id"},
		{"binary empty source", CloudEvents, Record{Value: []byte(event), Headers: headers(ce("ce_source", "")...)}, schemas.ReasonInvalidEnvelope, "ce_source"},
		{"binary data not json", CloudEvents, Record{Value: []byte(event), Headers: headers(ce("content-type", "application/avro")...)}, schemas.ReasonInvalidEnvelope, "content-type"},
		{"binary tombstone", CloudEvents, Record{Headers: headers(ce()...)}, schemas.ReasonEmptyRecord, ""},
		{"neither mode", CloudEvents, Record{Value: []byte(event), Headers: headers("content-type", "application/json")}, schemas.ReasonInvalidEnvelope, "ce_specversion"},
		{"structured batch", CloudEvents, Record{Value: []byte(`[]`), Headers: headers("content-type", "application/cloudevents-batch+json")}, schemas.ReasonInvalidEnvelope, "content-type"},
		{"structured not json", CloudEvents, Record{Value: []byte(`{"specversion":"1.0",`)}, schemas.ReasonInvalidJSON, ""},
		{"structured wrong version", CloudEvents, Record{Value: []byte(`{"specversion":1.0,"id":"1","source":"/s","type":"t","data":` + event + `}`)}, schemas.ReasonInvalidEnvelope, "specversion"},
		{"structured without type", CloudEvents, Record{Value: []byte(`{"specversion":"1.0","id":"1","source":"/s","data":` + event + `}`)}, schemas.ReasonInvalidEnvelope, "type"},
		{"structured data not json", CloudEvents, Record{Value: []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"x"}`)}, schemas.ReasonInvalidEnvelope, "datacontenttype"},
		{"structured without data", CloudEvents, Record{Value: []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t"}`)}, schemas.ReasonInvalidEnvelope, "data"},
		{"structured data twice", CloudEvents, Record{Value: []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{},"data_base64":"e30="}`)}, schemas.ReasonInvalidEnvelope, "data_base64"},
		{"structured bad base64", CloudEvents, Record{Value: []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"e30"}`)}, schemas.ReasonInvalidEnvelope, "data_base64"},
		{"structured data of a bad event", CloudEvents, Record{Value: []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"type":"page","userId":"u"}}`)}, schemas.ReasonUnsupportedType, "type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ev schemas.Event
			got := outcomeOf(t, newDecoder(t, Config{Kind: tc.kind}, nil).Decode(t.Context(), tc.rec, &ev), &ev)
			if got.reason != tc.reason || got.field != tc.field {
				t.Fatalf("got %+v, want reason %q field %q", got, tc.reason, tc.field)
			}
		})
	}
}
