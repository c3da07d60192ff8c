package format

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"

	"github.com/pinsync/pinsync/schemas"
)

// This file writes the JSON form of a registry record: the text that
// schemas.Decoder reads. Writers append to a byte slice; a string that is
// not valid UTF-8 makes the record invalid (invalid_payload), as it would
// make a JSON record invalid.

// jsonWriter appends JSON to b and remembers the first problem.
type jsonWriter struct {
	b   []byte
	bad bool // a string was not valid UTF-8
}

func (w *jsonWriter) raw(s string) { w.b = append(w.b, s...) }

func (w *jsonWriter) byte(c byte) { w.b = append(w.b, c) }

// str appends s as a JSON string.
func (w *jsonWriter) str(s []byte) { quote(w, s) }

func quote[S ~string | ~[]byte](w *jsonWriter, s S) {
	var valid bool
	w.b, valid = schemas.AppendQuoted(w.b, s)
	w.bad = w.bad || !valid
}

// name appends "n": for a member name. Names are Avro and Protobuf field
// names, which their parsers have checked are identifiers
// ([A-Za-z_][A-Za-z0-9_]*), or native member names: none needs escaping.
func (w *jsonWriter) name(n string) {
	w.b = append(w.b, '"')
	w.b = append(w.b, n...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonWriter) bool(v bool) { w.b = strconv.AppendBool(w.b, v) }

func (w *jsonWriter) int(v int64) { w.b = strconv.AppendInt(w.b, v, 10) }

func (w *jsonWriter) uint(v uint64) { w.b = strconv.AppendUint(w.b, v, 10) }

// float appends v; JSON has no NaN or infinity, which become null.
func (w *jsonWriter) float(v float64, bits int) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		w.raw("null")
		return
	}
	w.b = strconv.AppendFloat(w.b, v, 'g', -1, bits)
}

// bytes appends binary data as a base64 string, as the JSON encodings of
// Avro and Protobuf do.
func (w *jsonWriter) bytes(v []byte) {
	w.b = append(w.b, '"')
	w.b = base64.StdEncoding.AppendEncode(w.b, v)
	w.b = append(w.b, '"')
}

// time appends t as an RFC 3339 UTC string, as the native timestamp member
// holds it.
func (w *jsonWriter) time(t time.Time) {
	w.b = append(w.b, '"')
	w.b = t.UTC().AppendFormat(w.b, time.RFC3339Nano)
	w.b = append(w.b, '"')
}
