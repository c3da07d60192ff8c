package format

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// The benchmarks decode generated streams (no malformed records), one
// record an op: ns/op is ns/event; events/s is reported beside it.
// Run: go test -run XXX -bench . -benchmem ./schemas/format/

func benchStream(b *testing.B, nativeFraction float64) []stream.Record {
	b.Helper()
	return collect(b, stream.Config{Profiles: 2000, Audiences: 12, Events: 4000, Seed: 3,
		NativeFraction: nativeFraction, MalformedFraction: stream.None})
}

func benchDecode(b *testing.B, d *Decoder, recs []Record) {
	b.Helper()
	var ev schemas.Event
	ctx := context.Background()
	for _, r := range recs { // every schema in the cache, as in a running consumer
		if err := d.Decode(ctx, r, &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := d.Decode(ctx, recs[i%len(recs)], &ev); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func records(recs []stream.Record, enc func(i int, r stream.Record) Record) []Record {
	out := make([]Record, len(recs))
	for i, r := range recs {
		out[i] = enc(i, r)
	}
	return out
}

func plainRecords(recs []stream.Record) []Record {
	return records(recs, func(_ int, r stream.Record) Record { return Record{Key: r.Key, Value: r.Value} })
}

// BenchmarkDecodeSchemasDirect is the JSON decoder without the format
// layer: BenchmarkDecodeJSON must cost the same.
func BenchmarkDecodeSchemasDirect(b *testing.B) {
	recs := benchStream(b, stream.None)
	d := eventDecoder(b)
	var ev schemas.Event
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := recs[i%len(recs)]
		if err := d.Decode(r.Key, r.Value, &ev); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkDecodeJSON(b *testing.B) {
	benchDecode(b, newDecoder(b, Config{}, nil), plainRecords(benchStream(b, stream.None)))
}

func BenchmarkDecodeNativeJSON(b *testing.B) {
	benchDecode(b, newDecoder(b, Config{}, nil), plainRecords(benchStream(b, 1)))
}

func BenchmarkDecodeConnect(b *testing.B) {
	recs := records(benchStream(b, stream.None), func(_ int, r stream.Record) Record {
		return Record{Key: r.Key, Value: []byte(`{"schema":null,"payload":` + string(r.Value) + `}`)}
	})
	benchDecode(b, newDecoder(b, Config{Kind: ConnectJSON}, nil), recs)
}

func BenchmarkDecodeConnectString(b *testing.B) {
	recs := records(benchStream(b, stream.None), func(_ int, r stream.Record) Record {
		return Record{Key: r.Key, Value: []byte(`{"schema":{"type":"string","optional":false},"payload":` + string(quoted(r.Value)) + `}`)}
	})
	benchDecode(b, newDecoder(b, Config{Kind: ConnectJSON}, nil), recs)
}

func BenchmarkDecodeCloudEventsBinary(b *testing.B) {
	recs := records(benchStream(b, stream.None), func(i int, r stream.Record) Record {
		return Record{Key: r.Key, Value: r.Value, Headers: headers("ce_specversion", "1.0", "ce_id", strconv.Itoa(i),
			"ce_source", "/engage/spa_1", "ce_type", "com.segment.engage.audience", "content-type", "application/json")}
	})
	benchDecode(b, newDecoder(b, Config{Kind: CloudEvents}, nil), recs)
}

func BenchmarkDecodeCloudEventsStructured(b *testing.B) {
	recs := records(benchStream(b, stream.None), func(i int, r stream.Record) Record {
		v, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": strconv.Itoa(i), "source": "/engage/spa_1",
			"type": "com.segment.engage.audience", "datacontenttype": "application/json", "data": json.RawMessage(r.Value)})
		return Record{Key: r.Key, Value: v, Headers: headers("content-type", "application/cloudevents+json")}
	})
	benchDecode(b, newDecoder(b, Config{Kind: CloudEvents}, nil), recs)
}

func BenchmarkDecodeCloudEventsBase64(b *testing.B) {
	recs := records(benchStream(b, stream.None), func(i int, r stream.Record) Record {
		v, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": strconv.Itoa(i), "source": "/engage/spa_1",
			"type": "com.segment.engage.audience", "data_base64": base64.StdEncoding.EncodeToString(r.Value)})
		return Record{Key: r.Key, Value: v}
	})
	benchDecode(b, newDecoder(b, Config{Kind: CloudEvents}, nil), recs)
}

// registryBench returns the stream's native records in the registry
// format kind, with a decoder.
func registryBench(b *testing.B, kind Kind) (*Decoder, []Record) {
	fake, reg := fakeRegistry(b)
	recs := benchStream(b, 1)
	var id int
	var enc func(n native) []byte
	switch kind {
	case Avro:
		id = register(b, fake, "a-value", sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro})
		enc = func(n native) []byte { return append(wirePrefix(id), avroNative(n)...) }
	case Protobuf:
		id = register(b, fake, "p-value", sr.Schema{Schema: schemas.NativeEventProto, Type: sr.TypeProtobuf})
		enc = func(n native) []byte { return append(append(wirePrefix(id), 0), protoNative(n)...) }
	}
	var out []Record
	for _, r := range recs {
		if n, ok := parseNative(r.Value); ok { // the generator writes some actions only as Segment
			out = append(out, Record{Key: r.Key, Value: enc(n)})
		}
	}
	return newDecoder(b, Config{Kind: kind}, reg), out
}

func BenchmarkDecodeAvro(b *testing.B) {
	d, recs := registryBench(b, Avro)
	benchDecode(b, d, recs)
}

func BenchmarkDecodeProtobuf(b *testing.B) {
	d, recs := registryBench(b, Protobuf)
	benchDecode(b, d, recs)
}

func BenchmarkDecodeJSONSchema(b *testing.B) {
	fake, reg := fakeRegistry(b)
	id := register(b, fake, "j-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	recs := records(benchStream(b, stream.None), func(_ int, r stream.Record) Record {
		return Record{Key: r.Key, Value: append(wirePrefix(id), r.Value...)}
	})
	benchDecode(b, newDecoder(b, Config{Kind: JSONSchema}, reg), recs)
}

// BenchmarkDecodeAvroMapped reads the native stream through a Mapping of
// the published schema's own fields: the cost of a mapping.
func BenchmarkDecodeAvroMapped(b *testing.B) {
	d, recs := registryBench(b, Avro)
	m := Mapping{Type: "type", Profile: "profile", Audience: "audience", AudienceName: "audience_name",
		AdAccountID: "ad_account_id", Member: "member", Identifiers: "identifiers", Email: "identifiers.email",
		IDFA: "identifiers.idfa", MAID: "identifiers.maid", Timestamp: "timestamp"}
	mapped := newDecoder(b, Config{Kind: Avro, Mapping: m}, d.reg)
	benchDecode(b, mapped, recs)
}

// BenchmarkAvroVsSegmentJSON decodes a realistic stream as Segment JSON,
// and native records as registry Avro, side by side; native-json is the
// same records as the Avro run, as plain JSON (the Avro run's events carry
// more identifiers than Segment's, one a record).
func BenchmarkAvroVsSegmentJSON(b *testing.B) {
	b.Run("segment-json", func(b *testing.B) {
		benchDecode(b, newDecoder(b, Config{}, nil), plainRecords(benchStream(b, stream.None)))
	})
	b.Run("native-json", func(b *testing.B) {
		var recs []Record
		for _, r := range benchStream(b, 1) {
			if _, ok := parseNative(r.Value); ok {
				recs = append(recs, Record{Key: r.Key, Value: r.Value})
			}
		}
		benchDecode(b, newDecoder(b, Config{}, nil), recs)
	})
	b.Run("registry-avro", func(b *testing.B) {
		d, recs := registryBench(b, Avro)
		benchDecode(b, d, recs)
	})
}
