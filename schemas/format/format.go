// Package format is the layer in front of pinsync's JSON decoder: it reads
// the value format of an input topic — plain JSON (Segment or native), a
// Kafka Connect JSON envelope, a CloudEvent (binary or structured mode), or
// Avro, Protobuf or JSON Schema records through a Confluent-compatible
// schema registry — and hands the event inside to schemas.Decoder, which
// alone decides what it means.
//
// A record in a registry format is turned into its JSON form (the record's
// fields as JSON members; see schemas/README.md, "Input formats"), which
// for the published native schemas (schemas/native-event.avsc and .proto)
// is a native JSON record; a Mapping builds the native record from other
// schemas' fields. Identifiers are therefore normalised and hashed by the
// one JSON decoder and package ident, whatever the format.
//
// A malformed record gets a *schemas.DecodeError (the consumer
// dead-letters it); a registry that cannot answer gets a
// *RegistryUnavailableError (the consumer pauses and retries the record).
// The package does not encode records, keep per-profile state or talk to
// Kafka.
package format

import (
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Kind is the value format of an input topic.
type Kind string

// The value formats.
const (
	// JSON: the value is a Segment or native JSON record (the default).
	JSON Kind = "json"
	// ConnectJSON: a Kafka Connect JsonConverter envelope,
	// {"schema": ..., "payload": <the record>}; the payload may also be a
	// JSON string holding the record.
	ConnectJSON Kind = "connect-json"
	// CloudEvents: a CloudEvents 1.0 event in the Kafka protocol binding,
	// binary mode (ce_* headers, the value is the data) or structured mode
	// (the value is the JSON event with data or data_base64). The data is a
	// Segment or native JSON record.
	CloudEvents Kind = "cloudevents"
	// Avro, Protobuf and JSONSchema: a record written with a schema of a
	// schema registry, its id in the Confluent wire format's prefix or in
	// a header.
	Avro       Kind = "avro"
	Protobuf   Kind = "protobuf"
	JSONSchema Kind = "json-schema"
)

// Kinds returns every Kind, the default first.
func Kinds() []Kind {
	return []Kind{JSON, ConnectJSON, CloudEvents, Avro, Protobuf, JSONSchema}
}

// Registered reports whether k reads its schema from a schema registry.
func (k Kind) Registered() bool { return k == Avro || k == Protobuf || k == JSONSchema }

// Where a registry record's schema id is.
const (
	// SchemaIDInValue: the Confluent wire format, a zero magic byte and
	// the id as 4 bytes big-endian before the encoded record (Protobuf
	// then has the message indexes as varints). The default.
	SchemaIDInValue = "value"
	// SchemaIDInHeader: the id, in decimal, in a record header
	// (Config.SchemaIDHeader); the value is the encoded record alone.
	SchemaIDInHeader = "header"
)

// DefaultSchemaIDHeader is the header of SchemaIDInHeader by default.
const DefaultSchemaIDHeader = "value.schema.id"

// Config is the value format of one input topic. The zero Config is JSON.
type Config struct {
	// Kind is the format; empty means JSON.
	Kind Kind `yaml:"kind"`
	// SchemaID says where a registry record's schema id is:
	// SchemaIDInValue (default) or SchemaIDInHeader.
	SchemaID string `yaml:"schema_id"`
	// SchemaIDHeader names the header of SchemaIDInHeader; default
	// DefaultSchemaIDHeader.
	SchemaIDHeader string `yaml:"schema_id_header"`
	// ProtobufMessage is the full name of the message type of Protobuf
	// records (for example pinsync.v1.NativeEvent). Empty: the message the
	// record's message indexes name (SchemaIDInValue), or the schema's
	// first message (SchemaIDInHeader).
	ProtobufMessage string `yaml:"protobuf_message"`
	// Mapping says where a registry record's fields hold the native
	// event's members. Empty: the record's JSON form is decoded as it is,
	// which reads the published native schemas.
	Mapping Mapping `yaml:"mapping"`
}

func (c Config) withDefaults() Config {
	if c.Kind == "" {
		c.Kind = JSON
	}
	if c.Kind.Registered() {
		if c.SchemaID == "" {
			c.SchemaID = SchemaIDInValue
		}
		if c.SchemaID == SchemaIDInHeader && c.SchemaIDHeader == "" {
			c.SchemaIDHeader = DefaultSchemaIDHeader
		}
	}
	return c
}

// Validate reports the first setting of c that is not usable; the error
// names it by its configuration key.
func (c Config) Validate() error {
	known := false
	for _, k := range Kinds() {
		known = known || c.Kind == k
	}
	if !known && c.Kind != "" {
		return fmt.Errorf("kind: %q is not one of %s", c.Kind, kindList())
	}
	c = c.withDefaults()
	if !c.Kind.Registered() {
		switch {
		case c.SchemaID != "":
			return fmt.Errorf("schema_id: only for the registry formats (avro, protobuf, json-schema), not %s", c.Kind)
		case c.SchemaIDHeader != "":
			return fmt.Errorf("schema_id_header: only for the registry formats (avro, protobuf, json-schema), not %s", c.Kind)
		case !c.Mapping.IsZero():
			return fmt.Errorf("mapping: only for the registry formats (avro, protobuf, json-schema), not %s", c.Kind)
		}
	}
	switch c.SchemaID {
	case "", SchemaIDInValue:
		if c.SchemaIDHeader != "" {
			return fmt.Errorf("schema_id_header: only with schema_id %q", SchemaIDInHeader)
		}
	case SchemaIDInHeader:
	default:
		return fmt.Errorf("schema_id: %q is neither %q nor %q", c.SchemaID, SchemaIDInValue, SchemaIDInHeader)
	}
	if c.ProtobufMessage != "" && c.Kind != Protobuf {
		return fmt.Errorf("protobuf_message: only for kind protobuf, not %s", c.Kind)
	}
	if err := c.Mapping.validate(); err != nil {
		return fmt.Errorf("mapping.%w", err)
	}
	return nil
}

func kindList() string {
	names := make([]string, 0, len(Kinds()))
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// Record is what the decoder reads of a Kafka record. The decoder does not
// keep or modify its slices.
type Record struct {
	Key, Value []byte
	Headers    []kgo.RecordHeader
}

// header returns the value of the last header named name.
func (r *Record) header(name string) (value []byte, ok bool) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == name {
			return r.Headers[i].Value, true
		}
	}
	return nil, false
}

// errNoRegistry is returned by NewDecoder for a registry format without a
// Registry.
var errNoRegistry = errors.New("format: a registry format needs a schema registry (schema_registry.url)")
