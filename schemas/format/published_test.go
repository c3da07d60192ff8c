package format

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestPublishedSchemasParse: the native event's Avro and Protobuf schemas
// parse with the libraries teams use, and say what the README says.
func TestPublishedSchemasParse(t *testing.T) {
	a, err := avro.Parse(schemas.NativeEventAvro)
	if err != nil {
		t.Fatalf("native-event.avsc: %v", err)
	}
	rec, ok := a.(*avro.RecordSchema)
	if !ok || rec.FullName() != "io.pinsync.NativeEvent" {
		t.Fatalf("native-event.avsc is %T %v", a, a)
	}
	fds, err := (&protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
		Accessor: protocompile.SourceAccessorFromMap(map[string]string{"native-event.proto": schemas.NativeEventProto}),
	})}).Compile(t.Context(), "native-event.proto")
	if err != nil {
		t.Fatalf("native-event.proto: %v", err)
	}
	md := fds[0].Messages().Get(0)
	if md.FullName() != "pinsync.v1.NativeEvent" {
		t.Fatalf("first message %s", md.FullName())
	}
	// The same members, in the same order, in both.
	var avroNames, protoNames []string
	for _, f := range rec.Fields() {
		avroNames = append(avroNames, f.Name())
	}
	for i := range md.Fields().Len() {
		protoNames = append(protoNames, string(md.Fields().Get(i).Name()))
	}
	want := []string{"type", "profile", "audience", "audience_name", "ad_account_id", "member", "identifiers", "timestamp"}
	if !slices.Equal(avroNames, want) || !slices.Equal(protoNames, want) {
		t.Fatalf("avro fields %v, protobuf fields %v, want %v", avroNames, protoNames, want)
	}
	for _, path := range []string{"../native-event.avsc", "../native-event.proto"} {
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPublishedSchemasRoundTripTheFixtures: every native fixture the
// published schemas can carry decodes, as Avro and as Protobuf, to what it
// decodes to as JSON, valid or not.
func TestPublishedSchemasRoundTripTheFixtures(t *testing.T) {
	files, err := filepath.Glob("../testdata/fixtures/native-*/*/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var recs []stream.Record
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := parseNative(b); ok {
			recs = append(recs, stream.Record{Value: b})
		}
	}
	if len(recs) < len(files)/2 {
		t.Fatalf("only %d of %d fixtures can be carried", len(recs), len(files))
	}
	want := plain(t, recs)
	fake, reg := fakeRegistry(t)
	avroID := register(t, fake, "a-value", sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro})
	protoID := register(t, fake, "p-value", sr.Schema{Schema: schemas.NativeEventProto, Type: sr.TypeProtobuf})
	t.Run("avro", func(t *testing.T) {
		in, want := reencode(t, recs, want, func(r stream.Record) (Record, bool) {
			n, _ := parseNative(r.Value)
			return Record{Value: append(wirePrefix(avroID), avroNative(n)...)}, true
		})
		decodeAll(t, newDecoder(t, Config{Kind: Avro}, reg), in, want)
	})
	t.Run("protobuf", func(t *testing.T) {
		in, want := reencode(t, recs, want, func(r stream.Record) (Record, bool) {
			n, _ := parseNative(r.Value)
			return Record{Value: append(append(wirePrefix(protoID), 0), protoNative(n)...)}, true
		})
		decodeAll(t, newDecoder(t, Config{Kind: Protobuf}, reg), in, want)
	})
}
