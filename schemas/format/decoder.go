package format

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pinsync/pinsync/schemas"
)

// Decoder turns the Kafka records of one input topic into Events. It is
// safe for concurrent use.
type Decoder struct {
	cfg    Config
	mapped bool // cfg.Mapping is not zero
	events *schemas.Decoder
	reg    *Registry
	bufs   sync.Pool // *[]byte: JSON forms and unwrapped values
}

// NewDecoder returns a Decoder for the format cfg, which hands the event
// inside each record to events. reg is needed for the registry formats
// and ignored by the others (it may be nil).
func NewDecoder(cfg Config, reg *Registry, events *schemas.Decoder) (*Decoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	cfg = cfg.withDefaults()
	if cfg.Kind.Registered() && reg == nil {
		return nil, errNoRegistry
	}
	return &Decoder{cfg: cfg, mapped: !cfg.Mapping.IsZero(), events: events, reg: reg}, nil
}

// Kind returns the format the Decoder reads.
func (d *Decoder) Kind() Kind { return d.cfg.Kind }

// Decode decodes one record into ev, reusing ev's slices as
// schemas.Decoder.Decode does. A malformed record gets a
// *schemas.DecodeError: dead-letter it. A registry format whose schema
// cannot be had now gets a *RegistryUnavailableError (errors.Is
// ErrRegistryUnavailable): the record is not at fault; pause, and decode it
// again later. ctx bounds the wait for the registry; the other formats do
// not use it.
func (d *Decoder) Decode(ctx context.Context, rec Record, ev *schemas.Event) error {
	switch d.cfg.Kind {
	case JSON:
		return d.events.Decode(rec.Key, rec.Value, ev)
	case ConnectJSON:
		return d.connect(rec, ev)
	case CloudEvents:
		return d.cloudEvent(rec, ev)
	}
	return d.registered(ctx, rec, ev)
}

func (d *Decoder) buffer() *[]byte {
	if b, ok := d.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 1024)
	return &b
}

// putBuffer returns b to the pool unless it grew large: one huge record
// must not keep its buffer.
func (d *Decoder) putBuffer(b *[]byte) {
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		d.bufs.Put(b)
	}
}

// decodeJSON decodes value (the event inside an envelope, or a JSON form),
// through the Mapping when there is one.
func (d *Decoder) decodeJSON(key, value []byte, ev *schemas.Event) error {
	if !d.mapped {
		return d.events.Decode(key, value, ev)
	}
	// The scanner validates the value as it validates a record, so that a
	// mapped record is no more lenient than a plain one.
	if err := schemas.Members(value, nil, nil); err != nil {
		return err
	}
	buf := d.buffer()
	defer d.putBuffer(buf)
	native, ok := d.cfg.Mapping.apply((*buf)[:0], value)
	*buf = native
	if !ok {
		return &schemas.DecodeError{Reason: schemas.ReasonInvalidPayload}
	}
	return d.events.Decode(key, native, ev)
}

func invalidEnvelope(field string) error {
	return &schemas.DecodeError{Reason: schemas.ReasonInvalidEnvelope, Field: field}
}

// registered decodes a record of a registry format.
func (d *Decoder) registered(ctx context.Context, rec Record, ev *schemas.Event) error {
	if len(rec.Value) == 0 {
		return d.events.Decode(rec.Key, nil, ev) // a tombstone: empty_record
	}
	id, payload, err := d.schemaID(rec)
	if err != nil {
		return err
	}
	s, err := d.reg.schema(ctx, id)
	if err != nil {
		return err
	}
	if s.typ != d.cfg.Kind.schemaType() {
		return &schemas.DecodeError{Reason: schemas.ReasonSchemaMismatch}
	}
	if d.cfg.Kind == JSONSchema {
		return d.decodeJSON(rec.Key, payload, ev)
	}
	buf := d.buffer()
	defer d.putBuffer(buf)
	var ok bool
	switch d.cfg.Kind {
	case Avro:
		*buf, ok = appendAvroJSON((*buf)[:0], s.avro, payload)
	case Protobuf:
		var md protoreflect.MessageDescriptor
		if md, payload, err = d.message(s, payload); err != nil {
			return err
		}
		*buf, ok = appendProtoJSON((*buf)[:0], md, payload)
	}
	if !ok {
		return &schemas.DecodeError{Reason: schemas.ReasonInvalidPayload}
	}
	return d.decodeJSON(rec.Key, *buf, ev)
}

// schemaID returns the schema id of a registry record and its encoded
// value.
func (d *Decoder) schemaID(rec Record) (id int, payload []byte, err error) {
	if d.cfg.SchemaID == SchemaIDInHeader {
		h, ok := rec.header(d.cfg.SchemaIDHeader)
		if !ok {
			return 0, nil, invalidEnvelope(d.cfg.SchemaIDHeader)
		}
		n, err := strconv.ParseUint(string(h), 10, 31)
		if err != nil || len(h) == 0 || h[0] == '+' {
			return 0, nil, invalidEnvelope(d.cfg.SchemaIDHeader)
		}
		return int(n), rec.Value, nil
	}
	var wire sr.ConfluentHeader
	id, payload, err = wire.DecodeID(rec.Value)
	if err != nil {
		return 0, nil, invalidEnvelope("value")
	}
	return id, payload, nil
}

// maxMessageIndexes bounds the message indexes of a Protobuf record: one
// per level of message nesting.
const maxMessageIndexes = 16

// message returns the message type of a Protobuf record and the encoded
// message after its message indexes.
func (d *Decoder) message(s *schema, payload []byte) (protoreflect.MessageDescriptor, []byte, error) {
	mismatch := &schemas.DecodeError{Reason: schemas.ReasonSchemaMismatch}
	index := []int{0}
	if d.cfg.SchemaID == SchemaIDInValue {
		var wire sr.ConfluentHeader
		var err error
		if index, payload, err = wire.DecodeIndex(payload, maxMessageIndexes); err != nil {
			return nil, nil, invalidEnvelope("value")
		}
	}
	if d.cfg.ProtobufMessage != "" {
		desc := s.proto.FindDescriptorByName(protoreflect.FullName(d.cfg.ProtobufMessage))
		md, ok := desc.(protoreflect.MessageDescriptor)
		if !ok {
			return nil, nil, mismatch
		}
		return md, payload, nil
	}
	msgs := s.proto.Messages()
	var md protoreflect.MessageDescriptor
	for _, i := range index {
		if i < 0 || i >= msgs.Len() {
			return nil, nil, mismatch
		}
		md = msgs.Get(i)
		msgs = md.Messages()
	}
	return md, payload, nil
}

// schemaType is the registry's type of the schemas of a registry format.
func (k Kind) schemaType() sr.SchemaType {
	switch k {
	case Protobuf:
		return sr.TypeProtobuf
	case JSONSchema:
		return sr.TypeJSON
	}
	return sr.TypeAvro
}
