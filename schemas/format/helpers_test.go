package format

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// This file holds the tests' own encoders of each format, written apart
// from the decoders under test (by hand, from the specifications), and
// the helpers that compare a decoding with the plain one.

// outcome is what decoding one record gave: an event or a rejection.
type outcome struct {
	ev            schemas.Event
	reason, field string
}

func outcomeOf(t testing.TB, err error, ev *schemas.Event) outcome {
	t.Helper()
	if err != nil {
		var de *schemas.DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("error %v (%T) is not a DecodeError", err, err)
		}
		return outcome{reason: de.Reason, field: de.Field}
	}
	c := *ev
	c.Identifiers = slices.Clip(slices.Clone(ev.Identifiers))
	c.Drop = slices.Clip(slices.Clone(ev.Drop))
	c.RejectReasons = slices.Clip(slices.Clone(ev.RejectReasons))
	if len(c.Identifiers) == 0 {
		c.Identifiers = nil
	}
	if len(c.Drop) == 0 {
		c.Drop = nil
	}
	if len(c.RejectReasons) == 0 {
		c.RejectReasons = nil
	}
	return outcome{ev: c}
}

func (o outcome) equal(p outcome) bool { return reflect.DeepEqual(o, p) }

func eventDecoder(t testing.TB) *schemas.Decoder {
	t.Helper()
	d, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// plain decodes records as plain JSON, the reference of every format.
func plain(t testing.TB, recs []stream.Record) []outcome {
	t.Helper()
	d := eventDecoder(t)
	out := make([]outcome, len(recs))
	var ev schemas.Event
	for i, r := range recs {
		out[i] = outcomeOf(t, d.Decode(r.Key, r.Value, &ev), &ev)
	}
	return out
}

func collect(t testing.TB, cfg stream.Config) []stream.Record {
	t.Helper()
	recs, _, err := stream.Collect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func newDecoder(t testing.TB, cfg Config, reg *Registry) *Decoder {
	t.Helper()
	d, err := NewDecoder(cfg, reg, eventDecoder(t))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// decodeAll decodes records in the format of d and checks each against
// want (the plain decoding of the same events), record by record.
func decodeAll(t *testing.T, d *Decoder, recs []Record, want []outcome) {
	t.Helper()
	var ev schemas.Event
	for i, r := range recs {
		got := outcomeOf(t, d.Decode(context.Background(), r, &ev), &ev)
		if !got.equal(want[i]) {
			t.Fatalf("record %d (%s):\n got %+v\nwant %+v", i, r.Value, got, want[i])
		}
	}
}

// fakeRegistry starts srfake's registry and a Registry client of it.
func fakeRegistry(t testing.TB, opts ...srfake.Option) (*srfake.Registry, *Registry) {
	t.Helper()
	fake := srfake.New(opts...)
	t.Cleanup(fake.Close)
	reg, err := NewRegistry(RegistryConfig{URL: fake.URL(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return fake, reg
}

func register(t testing.TB, fake *srfake.Registry, subject string, s sr.Schema) int {
	t.Helper()
	id, _, err := fake.RegisterSchema(subject, s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// wirePrefix is the Confluent wire format's prefix: a zero magic byte and
// the schema id, 4 bytes big-endian.
func wirePrefix(id int) []byte { return binary.BigEndian.AppendUint32([]byte{0}, uint32(id)) }

// native is a native JSON record as the tests read it, to re-encode it.
type native struct {
	typ, profile                        string
	audience, audienceName, adAccountID *string
	member                              *bool
	ids                                 *[3][]string // email, idfa, maid
	timestamp                           *time.Time
}

// parseNative reads a native JSON record with encoding/json; ok is false
// for anything the published schemas cannot carry (not a native record,
// a member of another type).
func parseNative(value []byte) (n native, ok bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(value, &m) != nil {
		return n, false
	}
	str := func(name string) (*string, bool) {
		raw, ok := m[name]
		if !ok || string(raw) == "null" {
			return nil, true
		}
		var s string
		return &s, json.Unmarshal(raw, &s) == nil
	}
	typ, ok1 := str("type")
	profile, ok2 := str("profile")
	if !ok1 || !ok2 || typ == nil || profile == nil {
		return n, false
	}
	n.typ, n.profile = *typ, *profile
	var ok3, ok4, ok5 bool
	n.audience, ok3 = str("audience")
	n.audienceName, ok4 = str("audience_name")
	n.adAccountID, ok5 = str("ad_account_id")
	if !ok3 || !ok4 || !ok5 {
		return n, false
	}
	if raw, ok := m["member"]; ok && string(raw) != "null" {
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return n, false
		}
		n.member = &b
	}
	if raw, ok := m["identifiers"]; ok && string(raw) != "null" {
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return n, false
		}
		var ids [3][]string
		for i, name := range []string{"email", "idfa", "maid"} {
			v, ok := obj[name]
			if !ok || string(v) == "null" {
				continue
			}
			var one string
			if json.Unmarshal(v, &one) == nil {
				ids[i] = []string{one}
			} else if json.Unmarshal(v, &ids[i]) != nil {
				return n, false
			}
		}
		n.ids = &ids
	}
	if ts, ok := str("timestamp"); ok && ts != nil {
		if t, err := time.Parse(time.RFC3339Nano, *ts); err == nil {
			t = t.Truncate(time.Millisecond)
			n.timestamp = &t
		}
	}
	return n, true
}

// avroNative encodes n in the Avro binary encoding of
// schemas/native-event.avsc: longs are zigzag varints, as Go's
// binary.AppendVarint writes them; a union is its branch's index, then
// the value.
func avroNative(n native) []byte {
	var b []byte
	str := func(s string) {
		b = binary.AppendVarint(b, int64(len(s)))
		b = append(b, s...)
	}
	optional := func(p *string) {
		if p == nil {
			b = binary.AppendVarint(b, 0)
			return
		}
		b = binary.AppendVarint(b, 1)
		str(*p)
	}
	str(n.typ)
	str(n.profile)
	optional(n.audience)
	optional(n.audienceName)
	optional(n.adAccountID)
	if n.member == nil {
		b = binary.AppendVarint(b, 0)
	} else {
		b = binary.AppendVarint(b, 1)
		b = append(b, map[bool]byte{false: 0, true: 1}[*n.member])
	}
	if n.ids == nil {
		b = binary.AppendVarint(b, 0)
	} else {
		b = binary.AppendVarint(b, 1)
		for _, list := range n.ids {
			if len(list) > 0 {
				b = binary.AppendVarint(b, int64(len(list)))
				for _, s := range list {
					str(s)
				}
			}
			b = binary.AppendVarint(b, 0)
		}
	}
	if n.timestamp == nil {
		b = binary.AppendVarint(b, 0)
	} else {
		b = binary.AppendVarint(b, 1)
		b = binary.AppendVarint(b, n.timestamp.UnixMilli())
	}
	return b
}

// protoNative encodes n as a message pinsync.v1.NativeEvent of
// schemas/native-event.proto, field by field.
func protoNative(n native) []byte {
	var b []byte
	str := func(num protowire.Number, p *string) {
		if p != nil {
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, *p)
		}
	}
	str(1, &n.typ)
	str(2, &n.profile)
	str(3, n.audience)
	str(4, n.audienceName)
	str(5, n.adAccountID)
	if n.member != nil {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(*n.member))
	}
	if n.ids != nil {
		var inner []byte
		for i, list := range n.ids {
			for _, s := range list {
				inner = protowire.AppendTag(inner, protowire.Number(i+1), protowire.BytesType)
				inner = protowire.AppendString(inner, s)
			}
		}
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendBytes(b, inner)
	}
	if n.timestamp != nil {
		var ts []byte
		ts = protowire.AppendTag(ts, 1, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(n.timestamp.Unix()))
		ts = protowire.AppendTag(ts, 2, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(n.timestamp.Nanosecond()))
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, ts)
	}
	return b
}

// reencode turns each record of recs into a record of another format with
// enc, keeping the plain decoding of those it can carry.
func reencode(t *testing.T, recs []stream.Record, want []outcome, enc func(stream.Record) (Record, bool)) ([]Record, []outcome) {
	t.Helper()
	var out []Record
	var outWant []outcome
	for i, r := range recs {
		if rec, ok := enc(r); ok {
			out = append(out, rec)
			outWant = append(outWant, want[i])
		}
	}
	if len(out) < len(recs)*9/10 {
		t.Fatalf("only %d of %d records re-encoded", len(out), len(recs))
	}
	return out, outWant
}

func headers(kv ...string) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return hs
}
