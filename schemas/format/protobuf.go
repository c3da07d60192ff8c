package format

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The JSON form of a Protobuf message: an object of all its fields, named
// as in the .proto (audience_name, not audienceName). A field with presence
// (optional, a message) that is not set is null; a scalar without presence
// that is not set has its zero value; a repeated field is an array, a map
// field an object; an enum is the name of its value; bytes are base64;
// 64-bit integers are JSON numbers. google.protobuf.Timestamp is an
// RFC 3339 string, and the wrapper types (StringValue, BoolValue, ...) are
// the value they wrap.

// maxProtoDepth bounds the nesting of the JSON form.
const maxProtoDepth = 64

// appendProtoJSON decodes data as a message md and appends its JSON form.
// ok is false when data is not a message md (protobuf-go's checks: wire
// format, UTF-8 of proto3 strings, nesting) or nests too deep.
func appendProtoJSON(b []byte, md protoreflect.MessageDescriptor, data []byte) (out []byte, ok bool) {
	m := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(data, m); err != nil {
		return b, false
	}
	w := protoWriter{jsonWriter: jsonWriter{b: b}}
	w.message(m, 0)
	return w.b, !w.bad && !w.deep
}

type protoWriter struct {
	jsonWriter
	deep bool
}

func (w *protoWriter) message(m protoreflect.Message, depth int) {
	if depth > maxProtoDepth {
		w.deep = true
		return
	}
	md := m.Descriptor()
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		f := md.Fields()
		w.time(time.Unix(m.Get(f.ByNumber(1)).Int(), m.Get(f.ByNumber(2)).Int()))
		return
	case "google.protobuf.StringValue", "google.protobuf.BoolValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.Int64Value", "google.protobuf.UInt32Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		f := md.Fields().ByNumber(1)
		w.scalar(f, m.Get(f))
		return
	}
	w.byte('{')
	fields := md.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if i > 0 {
			w.byte(',')
		}
		w.name(string(f.Name()))
		switch {
		case f.IsMap():
			w.byte('{')
			first := true
			m.Get(f).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				if !first {
					w.byte(',')
				}
				first = false
				quote(&w.jsonWriter, k.String())
				w.byte(':')
				w.single(f.MapValue(), v, depth)
				return true
			})
			w.byte('}')
		case f.IsList():
			w.byte('[')
			l := m.Get(f).List()
			for j := range l.Len() {
				if j > 0 {
					w.byte(',')
				}
				w.single(f, l.Get(j), depth)
			}
			w.byte(']')
		case f.HasPresence() && !m.Has(f):
			w.raw("null")
		default:
			w.single(f, m.Get(f), depth)
		}
	}
	w.byte('}')
}

// single appends one value of field f (an element, for a list or a map).
func (w *protoWriter) single(f protoreflect.FieldDescriptor, v protoreflect.Value, depth int) {
	if f.Kind() == protoreflect.MessageKind || f.Kind() == protoreflect.GroupKind {
		w.message(v.Message(), depth+1)
		return
	}
	w.scalar(f, v)
}

func (w *protoWriter) scalar(f protoreflect.FieldDescriptor, v protoreflect.Value) {
	switch f.Kind() {
	case protoreflect.BoolKind:
		w.bool(v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		w.int(v.Int())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		w.uint(v.Uint())
	case protoreflect.FloatKind:
		w.float(v.Float(), 32)
	case protoreflect.DoubleKind:
		w.float(v.Float(), 64)
	case protoreflect.StringKind:
		quote(&w.jsonWriter, v.String())
	case protoreflect.BytesKind:
		w.bytes(v.Bytes())
	case protoreflect.EnumKind:
		if ev := f.Enum().Values().ByNumber(v.Enum()); ev != nil {
			quote(&w.jsonWriter, string(ev.Name()))
		} else {
			w.int(int64(v.Enum()))
		}
	default:
		w.raw("null")
	}
}
