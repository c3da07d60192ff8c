package format

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/hamba/avro/v2"
)

// The JSON form of an Avro record: a record is an object of all its fields
// (in schema order), a union is the value of its branch (no wrapper, as
// pinsync reads it: ["null","string"] holds null or a string), an enum its
// symbol, a map an object, bytes and fixed base64 strings, a
// timestamp-millis or timestamp-micros long an RFC 3339 string, any other
// number a JSON number. The Avro binary encoding is read here directly;
// hamba/avro only parses the schemas.

// maxAvroDepth bounds the nesting of a record, so that a recursive schema
// and a hostile record cannot exhaust the stack.
const maxAvroDepth = 64

// avroReader reads the Avro binary encoding of one value.
type avroReader struct {
	data []byte
	pos  int
	// items bounds the array and map items of one record: a block count
	// costs no bytes when the items are null.
	items int
	depth int
	bad   bool
}

func (r *avroReader) fail() bool { r.bad = true; return false }

func (r *avroReader) long() int64 {
	if r.bad {
		return 0
	}
	u, n := binary.Uvarint(r.data[r.pos:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.pos += n
	return int64(u>>1) ^ -int64(u&1) // zigzag
}

func (r *avroReader) next(n int64) []byte {
	if r.bad || n < 0 || n > int64(len(r.data)-r.pos) {
		r.fail()
		return nil
	}
	b := r.data[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return b
}

// count reads a block count of an array or map; 0 ends it. A negative
// count is followed by the block's size in bytes, which is skipped.
func (r *avroReader) count() int64 {
	n := r.long()
	if n < 0 {
		r.long()
		n = -n
	}
	if n < 0 || n > int64(r.items) { // -MinInt64, or more items than allowed
		r.fail()
		return 0
	}
	r.items -= int(n)
	return n
}

// appendAvroJSON appends the JSON form of the Avro value data of schema s.
// ok is false when data is not one value of s (trailing bytes included) or
// holds a string that is not UTF-8.
func appendAvroJSON(b []byte, s avro.Schema, data []byte) (out []byte, ok bool) {
	r := avroReader{data: data, items: len(data) + 1024}
	w := jsonWriter{b: b}
	r.value(&w, s)
	return w.b, !r.bad && !w.bad && r.pos == len(data)
}

func (r *avroReader) value(w *jsonWriter, s avro.Schema) {
	if r.bad {
		return
	}
	r.depth++
	defer func() { r.depth-- }()
	if r.depth > maxAvroDepth {
		r.fail()
		return
	}
	switch s := s.(type) {
	case *avro.NullSchema:
		w.raw("null")
	case *avro.PrimitiveSchema:
		r.primitive(w, s)
	case *avro.RecordSchema:
		w.byte('{')
		for i, f := range s.Fields() {
			if i > 0 {
				w.byte(',')
			}
			w.name(f.Name())
			r.value(w, f.Type())
		}
		w.byte('}')
	case *avro.RefSchema:
		r.value(w, s.Schema())
	case *avro.UnionSchema:
		types := s.Types()
		i := r.long()
		if i < 0 || i >= int64(len(types)) {
			r.fail()
			return
		}
		r.value(w, types[i])
	case *avro.EnumSchema:
		i := r.long()
		if i < 0 || i >= int64(len(s.Symbols())) {
			r.fail()
			return
		}
		quote(w, s.Symbols()[i])
	case *avro.ArraySchema:
		w.byte('[')
		r.blocks(w, func() { r.value(w, s.Items()) })
		w.byte(']')
	case *avro.MapSchema:
		w.byte('{')
		r.blocks(w, func() {
			w.str(r.next(r.long()))
			w.byte(':')
			r.value(w, s.Values())
		})
		w.byte('}')
	case *avro.FixedSchema:
		w.bytes(r.next(int64(s.Size())))
	default:
		r.fail()
	}
}

// blocks reads the blocks of an array or a map: item reads one item, and
// blocks writes the commas between them.
func (r *avroReader) blocks(w *jsonWriter, item func()) {
	for first := true; ; {
		n := r.count()
		if n == 0 || r.bad {
			return
		}
		for range n {
			if !first {
				w.byte(',')
			}
			first = false
			item()
			if r.bad {
				return
			}
		}
	}
}

func (r *avroReader) primitive(w *jsonWriter, s *avro.PrimitiveSchema) {
	switch s.Type() {
	case avro.Boolean:
		switch b := r.next(1); {
		case len(b) == 1 && b[0] <= 1:
			w.bool(b[0] == 1)
		default:
			r.fail()
		}
	case avro.Int, avro.Long:
		v := r.long()
		if s.Type() == avro.Int && (v < math.MinInt32 || v > math.MaxInt32) {
			r.fail()
			return
		}
		switch logical(s) {
		case avro.TimestampMillis:
			w.time(time.UnixMilli(v))
		case avro.TimestampMicros:
			w.time(time.UnixMicro(v))
		default:
			w.int(v)
		}
	case avro.Float:
		if b := r.next(4); len(b) == 4 {
			w.float(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 32)
		}
	case avro.Double:
		if b := r.next(8); len(b) == 8 {
			w.float(math.Float64frombits(binary.LittleEndian.Uint64(b)), 64)
		}
	case avro.String:
		w.str(r.next(r.long()))
	case avro.Bytes:
		w.bytes(r.next(r.long()))
	default:
		r.fail()
	}
}

func logical(s *avro.PrimitiveSchema) avro.LogicalType {
	if l := s.Logical(); l != nil {
		return l.Type()
	}
	return ""
}
