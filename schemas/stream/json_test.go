package stream

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uo\te`, "tab\tnl\ncr\r", "\x00\x1f\x7f", "é✓𝄞", "bad\xffutf8", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString([]byte("x"), s)
		var got string
		if err := json.Unmarshal(b[1:], &got); err != nil {
			t.Fatalf("appendString(%q) = %s: not a JSON string: %v", s, b[1:], err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if !utf8.ValidString(s) {
			// encoding/json and we replace each invalid byte; ToValidUTF8
			// merges runs, so compare by re-encoding.
			want = string(appendStringWant(s))
		}
		if got != want {
			t.Fatalf("appendString(%q) decodes to %q, want %q", s, got, want)
		}
		if b2 := appendString(nil, []byte(s)); string(b2) != string(b[1:]) {
			t.Fatalf("[]byte and string forms differ: %s vs %s", b2, b[1:])
		}
	})
}

// appendStringWant replaces every invalid byte with U+FFFD.
func appendStringWant(s string) []byte {
	var out []byte
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		out = utf8.AppendRune(out, r)
		i += n
	}
	return out
}

func TestAppendTime(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 5, 0, 7_000_000, time.FixedZone("x", 3600))
	if got := string(appendTime(nil, at)); got != `"2026-03-01T11:05:00.007Z"` {
		t.Errorf("appendTime = %s", got)
	}
}

func TestDeviceIDsAndEmailsAreDistinct(t *testing.T) {
	seen := make(map[string]bool)
	for _, ids := range []identities{newIdentities(defaultProfilePrefix), newIdentities("a_"), newIdentities("b_")} {
		for idx := range uint64(3000) {
			for n := range 4 {
				for _, v := range []string{string(ids.appendEmail(nil, idx, n)), string(ids.appendDeviceID(nil, idx, n, false))} {
					if seen[v] {
						t.Fatalf("%q made twice", v)
					}
					seen[v] = true
				}
			}
		}
	}
}
