package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// benchRecords returns n copies of a fixture, each with its own profile id
// (so that the profile string is allocated as in production),
// compact or as the indented fixture.
func benchRecords(b *testing.B, shape, name, profileMember string, compact bool) [][]byte {
	b.Helper()
	base := fixtureValue(b, shape, name)
	var old []byte
	for _, q := range [][]byte{[]byte(`"` + profileMember + `": "`)} {
		i := bytes.Index(base, q)
		if i < 0 {
			b.Fatalf("%s has no %s", name, profileMember)
		}
		j := bytes.IndexByte(base[i+len(q):], '"')
		old = base[i : i+len(q)+j+1]
	}
	out := make([][]byte, 1024)
	for i := range out {
		v := bytes.Replace(base, old, []byte(fmt.Sprintf(`"%s": "user-%06d"`, profileMember, i)), 1)
		if compact {
			var c bytes.Buffer
			if err := json.Compact(&c, v); err != nil {
				b.Fatal(err)
			}
			v = c.Bytes()
		}
		out[i] = v
	}
	return out
}

func benchmarkDecode(b *testing.B, records [][]byte) {
	d, err := NewDecoder(DecoderConfig{ConsentCategory: "Advertising"})
	if err != nil {
		b.Fatal(err)
	}
	var ev Event
	b.SetBytes(int64(len(records[0])))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := d.Decode(nil, records[i%len(records)], &ev); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkDecodeSegmentTrack(b *testing.B) {
	benchmarkDecode(b, benchRecords(b, "segment-track", "engage-example", "userId", true))
}

// BenchmarkDecodeSegmentTrackIndented decodes the same record pretty-printed.
func BenchmarkDecodeSegmentTrackIndented(b *testing.B) {
	benchmarkDecode(b, benchRecords(b, "segment-track", "engage-example", "userId", false))
}

func BenchmarkDecodeSegmentIdentify(b *testing.B) {
	benchmarkDecode(b, benchRecords(b, "segment-identify", "engage-example", "userId", true))
}

func BenchmarkDecodeNativeMembership(b *testing.B) {
	benchmarkDecode(b, benchRecords(b, "native-membership", "exit-with-identifiers", "profile", true))
}

func BenchmarkDecodeNativeIdentify(b *testing.B) {
	benchmarkDecode(b, benchRecords(b, "native-identify", "basic", "profile", true))
}
