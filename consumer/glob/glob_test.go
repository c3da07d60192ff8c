package glob

import (
	"path"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "engage/space/audience", true},
		{"engage/*", "engage/space/audience", true},
		{"engage/*", "engage/", true},
		{"engage/*", "other/audience", false},
		{"*_buyers", "engage/space/recent_buyers", true},
		{"*_buyers", "engage/space/recent_buyers_2", false},
		{"a?c", "a/c", true},
		{"a?c", "ac", false},
		{"a?c", "aéc", true}, // one character, not one byte
		{"[ab]x", "bx", true},
		{"[^ab]x", "cx", true},
		{"[^ab]x", "ax", false},
		{"[a-c]1", "b1", true},
		{"[a-c]1", "d1", false},
		{"[-a]z", "-z", true},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{"a.b", "axb", false}, // regexp metacharacters are literal
		{"(a)+", "(a)+", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"exact", "inexact", false},
	} {
		g, err := Compile(tc.pattern)
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.pattern, err)
			continue
		}
		if got := g.Match(tc.s); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestBadPatternsAreRefused(t *testing.T) {
	for _, p := range []string{"[", "[a", `a\`, `[a\`, "[z-a]"} {
		if _, err := Compile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Compile(%q): %v; want an error naming the pattern", p, err)
		}
	}
}

// TestAgreesWithPathMatchWithoutSlashes checks that, on keys without '/',
// a glob means what path.Match says it means.
func TestAgreesWithPathMatchWithoutSlashes(t *testing.T) {
	patterns := []string{"*", "a*", "*b", "a*b", "?", "a?", "[ab]*", "[^a]?", "[a-c]x", `\?`, "ab"}
	keys := []string{"", "a", "b", "ab", "ba", "abb", "axb", "c", "cx", "?", "aab"}
	for _, p := range patterns {
		g, err := Compile(p)
		if err != nil {
			t.Fatalf("Compile(%q): %v", p, err)
		}
		for _, k := range keys {
			want, err := path.Match(p, k)
			if err != nil {
				t.Fatalf("path.Match(%q): %v", p, err)
			}
			if got := g.Match(k); got != want {
				t.Errorf("%q matches %q: %v; path.Match says %v", p, k, got, want)
			}
		}
	}
}
