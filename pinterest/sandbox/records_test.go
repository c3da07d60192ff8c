package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func hexRecords(n int) string {
	parts := make([]string, n)
	for i := range parts {
		h := sha256.Sum256([]byte(fmt.Sprint("u", i)))
		parts[i] = hex.EncodeToString(h[:])
	}
	return strings.Join(parts, ",")
}

func FuzzParseRecords(f *testing.F) {
	f.Add(hexRecords(2) + ",")
	f.Add("a@b.c," + hexRecords(1))
	f.Add(",")
	f.Add(strings.ToUpper(hexRecords(1)))
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := parseRecords(s, 1000)
		if err != nil {
			if len(ds) != 0 || err.msg == "" || (err.status != http.StatusBadRequest && err.status != http.StatusRequestEntityTooLarge) {
				t.Fatalf("bad error %+v with %d digests", err, len(ds))
			}
			return
		}
		// Accepted input is exactly the lowercase hex of the digests,
		// comma-joined, with at most one trailing comma.
		parts := make([]string, len(ds))
		for i, d := range ds {
			parts[i] = hex.EncodeToString(d[:])
		}
		want := strings.Join(parts, ",")
		if s != want && s != want+"," {
			t.Fatalf("accepted %q, which is not %q", s, want)
		}
	})
}

func BenchmarkParseRecords5000(b *testing.B) {
	s := hexRecords(5000)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := parseRecords(s, 10000); err != nil {
			b.Fatal(err.msg)
		}
	}
}
