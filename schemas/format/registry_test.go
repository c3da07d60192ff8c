package format

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// nativeStream is a generated stream of native records only, with its
// plain decoding.
func nativeStream(t *testing.T) ([]stream.Record, []outcome) {
	t.Helper()
	recs := collect(t, stream.Config{Profiles: 400, Audiences: 6, Events: 4000, Seed: 23, NativeFraction: 1, MalformedFraction: 0.01})
	return recs, plain(t, recs)
}

func TestRegistryFormatsDecodeAsThePlainStream(t *testing.T) {
	recs, want := nativeStream(t)
	fake, reg := fakeRegistry(t)
	avroID := register(t, fake, "native-avro-value", sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro})
	protoID := register(t, fake, "native-proto-value", sr.Schema{Schema: schemas.NativeEventProto, Type: sr.TypeProtobuf})
	jsonID := register(t, fake, "native-json-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})

	for _, tc := range []struct {
		name   string
		cfg    Config
		encode func(r stream.Record) (Record, bool)
	}{
		{"avro in the value", Config{Kind: Avro}, func(r stream.Record) (Record, bool) {
			n, ok := parseNative(r.Value)
			return Record{Key: r.Key, Value: append(wirePrefix(avroID), avroNative(n)...)}, ok
		}},
		{"avro with the id in a header", Config{Kind: Avro, SchemaID: SchemaIDInHeader}, func(r stream.Record) (Record, bool) {
			n, ok := parseNative(r.Value)
			return Record{Key: r.Key, Value: avroNative(n), Headers: headers("value.schema.id", itoa(avroID))}, ok
		}},
		{"protobuf in the value", Config{Kind: Protobuf}, func(r stream.Record) (Record, bool) {
			n, ok := parseNative(r.Value)
			// Message index [0], written as the one-byte shortcut.
			return Record{Key: r.Key, Value: append(append(wirePrefix(protoID), 0), protoNative(n)...)}, ok
		}},
		{"protobuf with the id in a header", Config{Kind: Protobuf, SchemaID: SchemaIDInHeader, SchemaIDHeader: "schema-id",
			ProtobufMessage: "pinsync.v1.NativeEvent"}, func(r stream.Record) (Record, bool) {
			n, ok := parseNative(r.Value)
			return Record{Key: r.Key, Value: protoNative(n), Headers: headers("schema-id", itoa(protoID))}, ok
		}},
		{"json schema", Config{Kind: JSONSchema}, func(r stream.Record) (Record, bool) {
			return Record{Key: r.Key, Value: append(wirePrefix(jsonID), r.Value...)}, true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, want := reencode(t, recs, want, tc.encode)
			decodeAll(t, newDecoder(t, tc.cfg, reg), in, want)
		})
	}
}

// TestJSONSchemaCarriesSegmentToo: a JSON Schema record is read as plain
// JSON after its prefix, Segment or native.
func TestJSONSchemaCarriesSegmentToo(t *testing.T) {
	recs := collect(t, stream.Config{Profiles: 300, Audiences: 5, Events: 3000, Seed: 5})
	want := plain(t, recs)
	fake, reg := fakeRegistry(t)
	id := register(t, fake, "engage-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	in, want := reencode(t, recs, want, func(r stream.Record) (Record, bool) {
		return Record{Key: r.Key, Value: append(wirePrefix(id), r.Value...)}, true
	})
	decodeAll(t, newDecoder(t, Config{Kind: JSONSchema}, reg), in, want)
}

// audienceChange is a team's own Avro schema, read through a Mapping: the
// worked example of schemas/README.md.
const audienceChange = `{"type":"record","name":"AudienceChange","namespace":"com.example","fields":[
  {"name":"user","type":{"type":"record","name":"User","fields":[
    {"name":"id","type":"string"},
    {"name":"email","type":["null","string"],"default":null},
    {"name":"devices","type":{"type":"array","items":{"type":"record","name":"Device","fields":[
      {"name":"os","type":{"type":"enum","name":"OS","symbols":["IOS","ANDROID"]}},
      {"name":"ad_id","type":"string"}]}}}]}},
  {"name":"segment","type":"string"},
  {"name":"entered","type":"boolean"},
  {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}`

var audienceChangeMapping = Mapping{
	Type: "=membership", Profile: "user.id", Audience: "segment", Member: "entered",
	Email: "user.email", Timestamp: "at",
}

func TestMappingReadsAnotherSchema(t *testing.T) {
	fake, reg := fakeRegistry(t)
	id := register(t, fake, "audience-changes-value", sr.Schema{Schema: audienceChange, Type: sr.TypeAvro})
	d := newDecoder(t, Config{Kind: Avro, Mapping: audienceChangeMapping}, reg)
	var b []byte
	str := func(s string) { b = append(binary.AppendVarint(b, int64(len(s))), s...) }
	str("u-1")                    // user.id
	b = binary.AppendVarint(b, 1) // user.email: the string branch
	str("Jane.Doe@Example.com")   //
	b = binary.AppendVarint(b, 1) // user.devices: one item
	b = binary.AppendVarint(b, 0) // os IOS
	str("6d92078a-8246-4ba4-ae5b-76104861e7dc")
	b = binary.AppendVarint(b, 0)             // end of devices
	str("vip")                                // segment
	b = append(b, 1)                          // entered
	b = binary.AppendVarint(b, 1772366400123) // at: 2026-03-01T12:00:00.123Z
	var ev schemas.Event
	got := outcomeOf(t, d.Decode(t.Context(), Record{Value: append(wirePrefix(id), b...)}, &ev), &ev)

	var wantEv schemas.Event
	nat := `{"type":"membership","profile":"u-1","audience":"vip","member":true,"identifiers":{"email":"Jane.Doe@Example.com"},"timestamp":"2026-03-01T12:00:00.123Z"}`
	want := outcomeOf(t, eventDecoder(t).Decode(nil, []byte(nat), &wantEv), &wantEv)
	if !got.equal(want) || want.reason != "" {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	// The record's own key must be its profile, as for native JSON.
	if err := d.Decode(t.Context(), Record{Key: []byte("u-2"), Value: append(wirePrefix(id), b...)}, &ev); reasonOf(err) != schemas.ReasonKeyMismatch {
		t.Fatalf("another key: %v", err)
	}
}

func reasonOf(err error) string {
	var de *schemas.DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestMalformedRegistryRecordsAreRejectedWithTheirReason(t *testing.T) {
	fake, reg := fakeRegistry(t)
	avroID := register(t, fake, "a-value", sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro})
	protoID := register(t, fake, "p-value", sr.Schema{Schema: schemas.NativeEventProto, Type: sr.TypeProtobuf})
	jsonID := register(t, fake, "j-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	badAvroID := register(t, fake, "bad-value", sr.Schema{Schema: `{"type":"record","name":"X","fields":[{"name":"a","type":"nosuchtype"}]}`, Type: sr.TypeAvro})
	badNameID := register(t, fake, "badn-value", sr.Schema{Schema: `{"type":"record","name":"X","fields":[{"name":"a\"b","type":"string"}]}`, Type: sr.TypeAvro})
	badProtoID := register(t, fake, "badp-value", sr.Schema{Schema: `syntax = "proto3"; message X { nosuch a = 1; }`, Type: sr.TypeProtobuf})
	jane := "jane@example.com"
	member := true
	good := avroNative(native{typ: "membership", profile: "p1", audience: &jane, member: &member})
	goodProto := protoNative(native{typ: "forget", profile: "p1"})
	for _, tc := range []struct {
		name          string
		cfg           Config
		rec           Record
		reason, field string
	}{
		{"avro tombstone", Config{Kind: Avro}, Record{}, schemas.ReasonEmptyRecord, ""},
		{"avro without prefix", Config{Kind: Avro}, Record{Value: []byte(`{"type":"forget"}`)}, schemas.ReasonInvalidEnvelope, "value"},
		{"avro prefix cut short", Config{Kind: Avro}, Record{Value: []byte{0, 0, 1}}, schemas.ReasonInvalidEnvelope, "value"},
		{"avro unknown id", Config{Kind: Avro}, Record{Value: append(wirePrefix(9999), good...)}, schemas.ReasonUnknownSchema, ""},
		{"avro with a protobuf schema", Config{Kind: Avro}, Record{Value: append(wirePrefix(protoID), good...)}, schemas.ReasonSchemaMismatch, ""},
		{"avro schema that does not parse", Config{Kind: Avro}, Record{Value: append(wirePrefix(badAvroID), good...)}, schemas.ReasonSchemaMismatch, ""},
		{"avro field name not an identifier", Config{Kind: Avro}, Record{Value: append(wirePrefix(badNameID), 0)}, schemas.ReasonSchemaMismatch, ""},
		{"avro truncated", Config{Kind: Avro}, Record{Value: append(wirePrefix(avroID), good[:len(good)-3]...)}, schemas.ReasonInvalidPayload, ""},
		{"avro trailing bytes", Config{Kind: Avro}, Record{Value: append(append(wirePrefix(avroID), good...), 7)}, schemas.ReasonInvalidPayload, ""},
		{"avro string not UTF-8", Config{Kind: Avro}, Record{Value: append(wirePrefix(avroID), avroNative(native{typ: "forget", profile: "p\xff"})...)}, schemas.ReasonInvalidPayload, ""},
		{"avro native rule", Config{Kind: Avro}, Record{Value: append(wirePrefix(avroID), avroNative(native{typ: "membership", profile: "p1", audience: &jane})...)}, schemas.ReasonMissingField, "member"},
		{"header missing", Config{Kind: Avro, SchemaID: SchemaIDInHeader}, Record{Value: good}, schemas.ReasonInvalidEnvelope, "value.schema.id"},
		{"header not a number", Config{Kind: Avro, SchemaID: SchemaIDInHeader}, Record{Value: good, Headers: headers("value.schema.id", "x1")}, schemas.ReasonInvalidEnvelope, "value.schema.id"},
		{"protobuf without message index", Config{Kind: Protobuf}, Record{Value: wirePrefix(protoID)}, schemas.ReasonInvalidEnvelope, "value"},
		{"protobuf index of no message", Config{Kind: Protobuf}, Record{Value: append(append(wirePrefix(protoID), 2, 6, 0), goodProto...)}, schemas.ReasonSchemaMismatch, ""},
		{"protobuf message not in schema", Config{Kind: Protobuf, ProtobufMessage: "x.Y"}, Record{Value: append(append(wirePrefix(protoID), 0), goodProto...)}, schemas.ReasonSchemaMismatch, ""},
		{"protobuf schema that does not compile", Config{Kind: Protobuf}, Record{Value: append(append(wirePrefix(badProtoID), 0), goodProto...)}, schemas.ReasonSchemaMismatch, ""},
		{"protobuf garbage", Config{Kind: Protobuf}, Record{Value: append(append(wirePrefix(protoID), 0), 0xff, 0xff, 0xff)}, schemas.ReasonInvalidPayload, ""},
		{"json schema with an avro schema", Config{Kind: JSONSchema}, Record{Value: append(wirePrefix(avroID), `{"type":"forget","profile":"p"}`...)}, schemas.ReasonSchemaMismatch, ""},
		{"json schema not json", Config{Kind: JSONSchema}, Record{Value: append(wirePrefix(jsonID), `{"type":`...)}, schemas.ReasonInvalidJSON, ""},
		{"json schema mapped, not json", Config{Kind: JSONSchema, Mapping: Mapping{Type: "=forget", Profile: "id"}}, Record{Value: append(wirePrefix(jsonID), "{\"id\":\"\xff\"}"...)}, schemas.ReasonInvalidJSON, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ev schemas.Event
			err := newDecoder(t, tc.cfg, reg).Decode(t.Context(), tc.rec, &ev)
			var de *schemas.DecodeError
			if !errors.As(err, &de) || de.Reason != tc.reason || de.Field != tc.field {
				t.Fatalf("error %v, want reason %q field %q", err, tc.reason, tc.field)
			}
		})
	}
}

// TestRegistryDownIsRetryableNotMalformed: a registry that cannot answer
// gives a RegistryUnavailableError, never a DecodeError, and is asked
// again for the next record.
func TestRegistryDownIsRetryableNotMalformed(t *testing.T) {
	fake, reg := fakeRegistry(t)
	id := register(t, fake, "a-value", sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro})
	rec := Record{Value: append(wirePrefix(id), avroNative(native{typ: "forget", profile: "p1"})...)}
	d := newDecoder(t, Config{Kind: Avro}, reg)
	var ev schemas.Event

	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"503", http.StatusServiceUnavailable, `{"error_code":50003,"message":"down"}`},
		{"500", http.StatusInternalServerError, `{"error_code":50001,"message":"store"}`},
		{"401", http.StatusUnauthorized, `{"error_code":40101,"message":"who"}`},
		{"404 not from the registry", http.StatusNotFound, `<html>not found</html>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
				return true
			})
			err := d.Decode(t.Context(), rec, &ev)
			var ue *RegistryUnavailableError
			var de *schemas.DecodeError
			if !errors.Is(err, ErrRegistryUnavailable) || !errors.As(err, &ue) || ue.Status != tc.status || errors.As(err, &de) {
				t.Fatalf("error %v (%T), want a RegistryUnavailableError with status %d", err, err, tc.status)
			}
			fake.ClearInterceptors()
			if err := d.Decode(t.Context(), rec, &ev); err != nil || ev.Kind != schemas.KindForget {
				t.Fatalf("once the registry answers: %v", err)
			}
			reg.forget(id)
		})
	}

	t.Run("timeout", func(t *testing.T) {
		slow, err := NewRegistry(RegistryConfig{URL: fake.URL(), Timeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		defer close(release)
		fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return false
		})
		defer fake.ClearInterceptors()
		err = newDecoder(t, Config{Kind: Avro}, slow).Decode(t.Context(), rec, &ev)
		if !errors.Is(err, ErrRegistryUnavailable) {
			t.Fatalf("error %v, want unavailable", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		gone := srfake.New()
		url := gone.URL()
		gone.Close()
		r, err := NewRegistry(RegistryConfig{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		err = newDecoder(t, Config{Kind: Avro}, r).Decode(t.Context(), rec, &ev)
		var ue *RegistryUnavailableError
		if !errors.As(err, &ue) || ue.SchemaID != id || ue.Status != 0 {
			t.Fatalf("error %v (%T), want unavailable for schema %d", err, err, id)
		}
	})

	t.Run("context ended", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		reg.forget(id)
		if err := d.Decode(ctx, rec, &ev); !errors.Is(err, ErrRegistryUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want unavailable and canceled", err)
		}
	})
}

// forget drops id from the cache (tests only).
func (r *Registry) forget(id int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.schemas, id)
}

func TestRegistryFetchesASchemaOnceForConcurrentRecords(t *testing.T) {
	fake, reg := fakeRegistry(t)
	id := register(t, fake, "a-value", sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro})
	var fetches atomic.Int32
	release := make(chan struct{})
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/schemas/ids/") {
			fetches.Add(1)
			<-release // every decoder is waiting by now, or has the schema
		}
		return false
	})
	d := newDecoder(t, Config{Kind: Avro}, reg)
	rec := Record{Value: append(wirePrefix(id), avroNative(native{typ: "forget", profile: "p1"})...)}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			var ev schemas.Event
			errs <- d.Decode(t.Context(), rec, &ev)
		})
	}
	time.Sleep(50 * time.Millisecond) // let them queue on the one fetch
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches of one schema, want 1", n)
	}
}

func TestRegistryCredentials(t *testing.T) {
	fake := srfake.New(srfake.WithAuth("Bearer s3cret"))
	defer fake.Close()
	id := register(t, fake, "a-value", sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro})
	rec := Record{Value: append(wirePrefix(id), avroNative(native{typ: "forget", profile: "p1"})...)}
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"s3cret", true}, {"wrong", false}} {
		reg, err := NewRegistry(RegistryConfig{URL: fake.URL(), BearerToken: tc.token})
		if err != nil {
			t.Fatal(err)
		}
		var ev schemas.Event
		err = newDecoder(t, Config{Kind: Avro}, reg).Decode(t.Context(), rec, &ev)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrRegistryUnavailable)) {
			t.Errorf("token %q: error %v", tc.token, err)
		}
	}
}

func TestRegistryCacheIsBounded(t *testing.T) {
	fake := srfake.New()
	defer fake.Close()
	reg, err := NewRegistry(RegistryConfig{URL: fake.URL(), CacheSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	d := newDecoder(t, Config{Kind: JSONSchema}, reg)
	var ev schemas.Event
	for i := range 10 {
		id := register(t, fake, "s"+itoa(i)+"-value", sr.Schema{Schema: `{"type":"object","title":"` + itoa(i) + `"}`, Type: sr.TypeJSON})
		if err := d.Decode(t.Context(), Record{Value: append(wirePrefix(id), `{"type":"forget","profile":"p"}`...)}, &ev); err != nil {
			t.Fatal(err)
		}
		if n := len(reg.schemas); n > 3 {
			t.Fatalf("%d schemas cached, want at most 3", n)
		}
	}
}

// TestReferencedSchemasAreFetched: a schema that references others (an
// Avro named type, a Protobuf import) is read with them.
func TestReferencedSchemasAreFetched(t *testing.T) {
	fake, reg := fakeRegistry(t)
	register(t, fake, "ids-avro", sr.Schema{Type: sr.TypeAvro,
		Schema: `{"type":"record","name":"Ids","namespace":"com.example","fields":[{"name":"email","type":"string"}]}`})
	avroID := register(t, fake, "change-avro", sr.Schema{Type: sr.TypeAvro,
		Schema:     `{"type":"record","name":"Change","namespace":"com.example","fields":[{"name":"id","type":"string"},{"name":"ids","type":"com.example.Ids"}]}`,
		References: []sr.SchemaReference{{Name: "com.example.Ids", Subject: "ids-avro", Version: 1}}})
	register(t, fake, "ids-proto", sr.Schema{Type: sr.TypeProtobuf,
		Schema: `syntax = "proto3"; package example; message Ids { string email = 1; }`})
	protoID := register(t, fake, "change-proto", sr.Schema{Type: sr.TypeProtobuf,
		Schema:     `syntax = "proto3"; package example; import "ids.proto"; message Change { string id = 1; Ids ids = 2; }`,
		References: []sr.SchemaReference{{Name: "ids.proto", Subject: "ids-proto", Version: 1}}})
	m := Mapping{Type: "=identify", Profile: "id", Identifiers: "ids", Email: "ids.email"}

	var avroRec []byte
	for _, s := range []string{"u1", "sam@example.com"} {
		avroRec = append(binary.AppendVarint(avroRec, int64(len(s))), s...)
	}
	protoRec := []byte{0x0a, 2, 'u', '1', 0x12, 17, 0x0a, 15}
	protoRec = append(protoRec, "sam@example.com"...)
	for _, tc := range []struct {
		name string
		cfg  Config
		rec  Record
	}{
		{"avro", Config{Kind: Avro, Mapping: m}, Record{Value: append(wirePrefix(avroID), avroRec...)}},
		{"protobuf", Config{Kind: Protobuf, Mapping: m}, Record{Value: append(append(wirePrefix(protoID), 0), protoRec...)}},
	} {
		var ev schemas.Event
		got := outcomeOf(t, newDecoder(t, tc.cfg, reg).Decode(t.Context(), tc.rec, &ev), &ev)
		want := plainOutcome(t, nil, []byte(`{"type":"identify","profile":"u1","identifiers":{"email":"sam@example.com"}}`))
		if !got.equal(want) {
			t.Errorf("%s: got %+v\nwant %+v", tc.name, got, want)
		}
	}
}
