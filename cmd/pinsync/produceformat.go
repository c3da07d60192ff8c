package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/bufbuild/protocompile"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
	"github.com/pinsync/pinsync/schemas/stream"
)

// This file writes the generated stream of pinsync produce in a value
// format other than plain JSON. The registry formats carry pinsync's
// published native schemas (schemas/native-event.avsc and .proto; for
// JSON Schema a schema of any JSON object), registered under a subject
// first; their records are written with franz-go's Confluent header, or
// with the id in a header.

// recordEncoder turns a generated record into the record to produce; ok is
// false for a record the format cannot carry (a Segment record in a
// native registry schema), which is not produced.
type recordEncoder func(seq int, r stream.Record) (rec *kgo.Record, ok bool)

// CloudEvents attributes of produced records.
const (
	ceSource = "/pinsync/produce"
	ceType   = "io.pinsync.audience-event"
)

// jsonSchemaOfRecords is the JSON Schema produce registers for
// json-schema: pinsync's records are Segment or native JSON objects; the
// contract is schemas/README.md.
const jsonSchemaOfRecords = `{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"pinsync record (Segment or native JSON; see schemas/README.md)","type":"object"}`

// newRecordEncoder returns the encoder of cfg's format. For a registry
// format it registers the published schema under subject with cl.
func newRecordEncoder(ctx context.Context, cfg format.Config, cl *sr.Client, subject, ceMode string) (recordEncoder, error) {
	switch cfg.Kind {
	case format.JSON, "":
		return func(_ int, r stream.Record) (*kgo.Record, bool) {
			return &kgo.Record{Key: r.Key, Value: r.Value}, true
		}, nil
	case format.ConnectJSON:
		// As JsonConverter writes a string value with schemas.enable.
		return func(_ int, r stream.Record) (*kgo.Record, bool) {
			v := []byte(`{"schema":{"type":"string","optional":false},"payload":`)
			v, _ = schemas.AppendQuoted(v, r.Value)
			return &kgo.Record{Key: r.Key, Value: append(v, '}')}, true
		}, nil
	case format.CloudEvents:
		return cloudEventEncoder(ceMode)
	}
	var s sr.Schema
	switch cfg.Kind {
	case format.Avro:
		s = sr.Schema{Schema: schemas.NativeEventAvro, Type: sr.TypeAvro}
	case format.Protobuf:
		s = sr.Schema{Schema: schemas.NativeEventProto, Type: sr.TypeProtobuf}
	default:
		s = sr.Schema{Schema: jsonSchemaOfRecords, Type: sr.TypeJSON}
	}
	ss, err := cl.CreateSchema(ctx, subject, s)
	if err != nil {
		return nil, fmt.Errorf("register the schema under %s: %w", subject, err)
	}
	var body func([]byte) ([]byte, bool)
	var index []int
	switch cfg.Kind {
	case format.Avro:
		if body, err = avroBody(); err != nil {
			return nil, err
		}
	case format.Protobuf:
		if body, err = protobufBody(ctx); err != nil {
			return nil, err
		}
		index = []int{0}
	default:
		body = func(v []byte) ([]byte, bool) { return v, true }
	}
	var wire sr.ConfluentHeader
	return func(_ int, r stream.Record) (*kgo.Record, bool) {
		b, ok := body(r.Value)
		switch {
		case !ok && !r.Malformed:
			return nil, false
		case !ok:
			// A malformed record the schema cannot carry goes out
			// without the wire prefix: pinsync dead-letters it.
			return &kgo.Record{Key: r.Key, Value: r.Value}, true
		case cfg.SchemaID == format.SchemaIDInHeader:
			name := cfg.SchemaIDHeader
			if name == "" {
				name = format.DefaultSchemaIDHeader
			}
			return &kgo.Record{Key: r.Key, Value: b, Headers: []kgo.RecordHeader{{Key: name, Value: []byte(strconv.Itoa(ss.ID))}}}, true
		}
		v, _ := wire.AppendEncode(nil, ss.ID, index)
		return &kgo.Record{Key: r.Key, Value: append(v, b...)}, true
	}, nil
}

func cloudEventEncoder(mode string) (recordEncoder, error) {
	switch mode {
	case "", "binary":
		return func(seq int, r stream.Record) (*kgo.Record, bool) {
			return &kgo.Record{Key: r.Key, Value: r.Value, Headers: []kgo.RecordHeader{
				{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: strconv.AppendInt(nil, int64(seq), 10)},
				{Key: "ce_source", Value: []byte(ceSource)}, {Key: "ce_type", Value: []byte(ceType)},
				{Key: "ce_time", Value: []byte(r.Timestamp.UTC().Format(time.RFC3339Nano))},
				{Key: "content-type", Value: []byte("application/json")},
			}}, true
		}, nil
	case "structured":
		return func(seq int, r stream.Record) (*kgo.Record, bool) {
			ev := map[string]any{"specversion": "1.0", "id": strconv.Itoa(seq), "source": ceSource, "type": ceType,
				"time": r.Timestamp.UTC().Format(time.RFC3339Nano), "datacontenttype": "application/json"}
			if json.Valid(r.Value) {
				ev["data"] = json.RawMessage(r.Value)
			} else {
				ev["data_base64"] = r.Value // a malformed record
			}
			v, err := json.Marshal(ev)
			if err != nil {
				return nil, false
			}
			return &kgo.Record{Key: r.Key, Value: v, Headers: []kgo.RecordHeader{
				{Key: "content-type", Value: []byte("application/cloudevents+json")}}}, true
		}, nil
	}
	return nil, fmt.Errorf("--cloudevents-mode: %q is neither binary nor structured", mode)
}

// nativeRecord is a native JSON record, as the generator writes it.
type nativeRecord struct {
	Type         *string `json:"type"`
	Profile      *string `json:"profile"`
	Audience     *string `json:"audience"`
	AudienceName *string `json:"audience_name"`
	AdAccountID  *string `json:"ad_account_id"`
	Member       *bool   `json:"member"`
	Identifiers  *struct {
		Email []string `json:"email"`
		IDFA  []string `json:"idfa"`
		MAID  []string `json:"maid"`
	} `json:"identifiers"`
	Timestamp *time.Time `json:"timestamp"`
}

// avroNativeEvent is a record of schemas/native-event.avsc.
type avroNativeEvent struct {
	Type         string           `avro:"type"`
	Profile      string           `avro:"profile"`
	Audience     *string          `avro:"audience"`
	AudienceName *string          `avro:"audience_name"`
	AdAccountID  *string          `avro:"ad_account_id"`
	Member       *bool            `avro:"member"`
	Identifiers  *avroIdentifiers `avro:"identifiers"`
	Timestamp    *time.Time       `avro:"timestamp"`
}

type avroIdentifiers struct {
	Email []string `avro:"email"`
	IDFA  []string `avro:"idfa"`
	MAID  []string `avro:"maid"`
}

// avroBody encodes a native JSON record as a NativeEvent; ok is false for
// any other record.
func avroBody() (func([]byte) ([]byte, bool), error) {
	s, err := avro.Parse(schemas.NativeEventAvro)
	if err != nil {
		return nil, err
	}
	return func(v []byte) ([]byte, bool) {
		var n nativeRecord
		if json.Unmarshal(v, &n) != nil || n.Type == nil || n.Profile == nil {
			return nil, false
		}
		ev := avroNativeEvent{Type: *n.Type, Profile: *n.Profile, Audience: n.Audience, AudienceName: n.AudienceName,
			AdAccountID: n.AdAccountID, Member: n.Member, Timestamp: n.Timestamp}
		if ids := n.Identifiers; ids != nil {
			ev.Identifiers = &avroIdentifiers{Email: nonNil(ids.Email), IDFA: nonNil(ids.IDFA), MAID: nonNil(ids.MAID)}
		}
		b, err := avro.Marshal(s, ev)
		return b, err == nil
	}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// protobufBody encodes a native JSON record as a pinsync.v1.NativeEvent,
// through protojson (the field names are the native members); ok is false
// for any other record.
func protobufBody(ctx context.Context) (func([]byte) ([]byte, bool), error) {
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
		Accessor: protocompile.SourceAccessorFromMap(map[string]string{"native-event.proto": schemas.NativeEventProto}),
	})}
	fds, err := c.Compile(ctx, "native-event.proto")
	if err != nil {
		return nil, err
	}
	md := fds[0].FindDescriptorByName("pinsync.v1.NativeEvent").(protoreflect.MessageDescriptor)
	return func(v []byte) ([]byte, bool) {
		var n nativeRecord
		if json.Unmarshal(v, &n) != nil || n.Type == nil || n.Profile == nil {
			return nil, false
		}
		m := dynamicpb.NewMessage(md)
		if protojson.Unmarshal(v, m) != nil {
			return nil, false
		}
		b, err := proto.Marshal(m)
		return b, err == nil
	}, nil
}
