package format

import (
	"bytes"
	"encoding/base64"

	"github.com/pinsync/pinsync/schemas"
)

// This file reads the JSON envelopes: Kafka Connect's and CloudEvents'.
// Their members are found by the decoder's own scanner (schemas.Members),
// which validates the whole value as it validates a plain record.

// connect decodes a Kafka Connect JsonConverter envelope (schemas.enable):
// {"schema": ..., "payload": <the event>}. The schema is not read.
func (d *Decoder) connect(rec Record, ev *schemas.Event) error {
	var raw [1][]byte
	if err := schemas.Members(rec.Value, []string{"payload"}, raw[:]); err != nil {
		return err
	}
	return d.carried(rec.Key, raw[0], "payload", ev)
}

// carried decodes the event an envelope carries in its member field: a
// JSON object, or a JSON string whose content is the record (as a
// converter of string values writes it).
func (d *Decoder) carried(key, v []byte, field string, ev *schemas.Event) error {
	if v == nil || string(v) == "null" {
		return invalidEnvelope(field)
	}
	if v[0] != '"' {
		return d.events.Decode(key, v, ev)
	}
	buf := d.buffer()
	defer d.putBuffer(buf)
	*buf, _ = schemas.Unquote((*buf)[:0], v)
	return d.events.Decode(key, *buf, ev)
}

// The CloudEvents attributes pinsync checks, as Kafka headers (binary
// mode) and as members (structured mode).
const (
	ceSpecVersion = "1.0"
	ceHeader      = "ce_"
	contentType   = "content-type"
)

// ceRequired are the attributes CloudEvents 1.0 requires besides
// specversion.
var ceRequired = [...]string{"id", "source", "type"}

// cloudEvent decodes a CloudEvent in the Kafka protocol binding: binary
// mode when the record has a ce_specversion header, else structured mode.
func (d *Decoder) cloudEvent(rec Record, ev *schemas.Event) error {
	if v, ok := rec.header(ceHeader + "specversion"); ok {
		return d.binaryEvent(rec, v, ev)
	}
	if ct, ok := rec.header(contentType); ok && !hasPrefixFold(mediaType(ct), "application/cloudevents") {
		// Neither mode: binary mode's attributes are missing.
		return invalidEnvelope(ceHeader + "specversion")
	}
	return d.structuredEvent(rec, ev)
}

// binaryEvent checks the ce_ headers; the value is the data.
func (d *Decoder) binaryEvent(rec Record, specVersion []byte, ev *schemas.Event) error {
	if string(specVersion) != ceSpecVersion {
		return invalidEnvelope(ceHeader + "specversion")
	}
	for _, a := range ceRequired {
		if v, ok := rec.header(ceHeader + a); !ok || len(v) == 0 {
			return invalidEnvelope(ceHeader + a)
		}
	}
	if ct, ok := rec.header(contentType); ok && !jsonMediaType(mediaType(ct)) {
		return invalidEnvelope(contentType)
	}
	return d.events.Decode(rec.Key, rec.Value, ev)
}

// structuredEvent reads the event from a CloudEvents JSON document: its
// data member (the record, or a string holding it) or data_base64.
func (d *Decoder) structuredEvent(rec Record, ev *schemas.Event) error {
	if ct, ok := rec.header(contentType); ok && !bytes.EqualFold(mediaType(ct), []byte("application/cloudevents+json")) {
		return invalidEnvelope(contentType) // a batch, or not JSON
	}
	names := []string{"specversion", "datacontenttype", "data", "data_base64", "id", "source", "type"}
	var raw [7][]byte
	if err := schemas.Members(rec.Value, names, raw[:]); err != nil {
		return err
	}
	var buf [64]byte
	if v, ok := schemas.Unquote(buf[:0], raw[0]); !ok || string(v) != ceSpecVersion {
		return invalidEnvelope("specversion")
	}
	for i, a := range ceRequired {
		if len(raw[4+i]) <= 2 || raw[4+i][0] != '"' { // a non-empty string
			return invalidEnvelope(a)
		}
	}
	if ct := raw[1]; ct != nil && string(ct) != "null" {
		v, ok := schemas.Unquote(buf[:0], ct)
		if !ok || !jsonMediaType(mediaType(v)) {
			return invalidEnvelope("datacontenttype")
		}
	}
	data, b64 := raw[2], raw[3]
	present := func(v []byte) bool { return v != nil && string(v) != "null" }
	switch {
	case present(data) && present(b64):
		return invalidEnvelope("data_base64") // the spec allows one of them
	case !present(b64):
		return d.carried(rec.Key, data, "data", ev)
	}
	text := d.buffer()
	defer d.putBuffer(text)
	var ok bool
	if *text, ok = schemas.Unquote((*text)[:0], b64); !ok {
		return invalidEnvelope("data_base64")
	}
	value := d.buffer()
	defer d.putBuffer(value)
	var err error
	if *value, err = base64.StdEncoding.AppendDecode((*value)[:0], *text); err != nil {
		return invalidEnvelope("data_base64")
	}
	return d.events.Decode(rec.Key, *value, ev)
}

// mediaType returns the media type of a content type, without parameters.
func mediaType(ct []byte) []byte {
	mt, _, _ := bytes.Cut(ct, []byte(";"))
	return bytes.TrimSpace(mt)
}

// jsonMediaType reports whether data of media type mt is JSON.
func jsonMediaType(mt []byte) bool {
	return bytes.EqualFold(mt, []byte("application/json")) || bytes.EqualFold(mt, []byte("text/json")) ||
		len(mt) > len("+json") && bytes.EqualFold(mt[len(mt)-len("+json"):], []byte("+json"))
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}
