package ident

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type vector struct {
	Type       string `json:"type"`
	Input      string `json:"input"`
	Normalised string `json:"normalised"`
	Hash       string `json:"hash"`
	Reject     string `json:"reject"`
	Note       string `json:"note"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "ident-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return f.Vectors
}

// TestPublishedVectors checks every published vector: the hash pinsync
// sends, the normalised form it hashes, or the reason it rejects.
func TestPublishedVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Type+"/"+v.Note, func(t *testing.T) {
			typ, err := ParseType(v.Type)
			if err != nil {
				if v.Reject != string(ReasonBadType) {
					t.Fatalf("ParseType(%q): %v", v.Type, err)
				}
				return
			}
			h, err := OfString(typ, v.Input)
			n, nerr := Normalise(typ, v.Input)
			if v.Reject != "" {
				var re *RejectError
				if !errors.As(err, &re) || string(re.Reason) != v.Reject {
					t.Fatalf("Of: got %v, want rejection %q", err, v.Reject)
				}
				if !errors.As(nerr, &re) || string(re.Reason) != v.Reject {
					t.Fatalf("Normalise: got %v, want rejection %q", nerr, v.Reject)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(v.Input)) && strings.TrimSpace(v.Input) != "" {
					t.Fatalf("error %q contains the value", err)
				}
				return
			}
			if err != nil || nerr != nil {
				t.Fatalf("rejected: %v / %v", err, nerr)
			}
			if got := h.String(); got != v.Hash {
				t.Errorf("hash = %s, want %s", got, v.Hash)
			}
			if n != v.Normalised {
				t.Errorf("normalised = %q, want %q", n, v.Normalised)
			}
		})
	}
}

func TestAllZeroDeviceIDIsDropped(t *testing.T) {
	for _, typ := range []Type{IDFA, MAID} {
		for _, v := range []string{"00000000-0000-0000-0000-000000000000", " 00000000-0000-0000-0000-000000000000 "} {
			_, reason := Parse(typ, []byte(v))
			if reason != ReasonZeroDevice {
				t.Errorf("%s %q: reason %q, want %q", typ, v, reason, ReasonZeroDevice)
			}
		}
	}
}

func TestDigestIsNeverHashedTwice(t *testing.T) {
	for _, c := range []struct {
		typ   Type
		value string
	}{
		{Email, "jane.doe@example.com"},
		{IDFA, "6d92078a-8246-4ba4-ae5b-76104861e7dc"},
		{MAID, "38400000-8cf0-11bd-b23e-10b96e40000d"},
	} {
		h, err := OfString(c.typ, c.value)
		if err != nil {
			t.Fatal(err)
		}
		for _, form := range []string{h.String(), strings.ToUpper(h.String()), " " + h.String() + "\n"} {
			again, err := OfString(c.typ, form)
			if err != nil || again != h {
				t.Errorf("%s: Of(hash %q) = %v, %v; want the hash itself", c.typ, form, again, err)
			}
		}
		if want := h.String(); string(h.AppendHex(nil)) != want {
			t.Errorf("AppendHex = %s, want %s", h.AppendHex(nil), want)
		}
	}
}

func TestInvalidUTF8EmailIsRejected(t *testing.T) {
	_, reason := Parse(Email, []byte("j\xffne@example.com"))
	if reason != ReasonNotEmail {
		t.Fatalf("reason %q, want %q", reason, ReasonNotEmail)
	}
}

func TestInvalidTypeIsRejectedFirst(t *testing.T) {
	for _, v := range []string{"", "jane@example.com", strings.Repeat("a", 64)} {
		if _, reason := Parse(Type(0), []byte(v)); reason != ReasonBadType {
			t.Errorf("Parse(0, %q) reason %q, want %q", v, reason, ReasonBadType)
		}
		if _, err := Normalise(Type(9), v); err == nil {
			t.Errorf("Normalise(9, %q) accepted", v)
		}
	}
}

func TestParseType(t *testing.T) {
	for in, want := range map[string]Type{
		"email": Email, "EMAIL": Email, " Email ": Email, "idfa": IDFA, "IDFA": IDFA,
		"maid": MAID, "MAID": MAID, "gaid": MAID, "aaid": MAID,
	} {
		got, err := ParseType(in)
		if err != nil || got != want {
			t.Errorf("ParseType(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got.String() != strings.ToUpper(strings.TrimSpace(in)) && in == strings.ToUpper(in) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if _, err := ParseType("phone"); err == nil {
		t.Error("ParseType(phone) accepted")
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	inputs := []struct {
		typ Type
		v   []byte
	}{
		{Email, []byte(" Jane.Doe@Example.com ")},
		{Email, []byte("\u00a0ÉLODIE@EXEMPLE.FR\u3000")},
		{IDFA, []byte("6D92078A-8246-4BA4-AE5B-76104861E7DC")},
		{Email, []byte(strings.Repeat("AB", 32))},
		{Email, []byte("not an email")},
	}
	for _, in := range inputs {
		if n := testing.AllocsPerRun(100, func() { Parse(in.typ, in.v) }); n != 0 {
			t.Errorf("Parse(%s, %q) allocates %v times", in.typ, in.v, n)
		}
	}
}

// FuzzOf checks that Of never panics and that what it accepts is stable:
// the hash is the SHA-256 of Normalise's result (or that result itself for a
// digest), normalising is idempotent, and a hash fed back is kept as is.
func FuzzOf(f *testing.F) {
	for _, v := range loadVectors(f) {
		typ, err := ParseType(v.Type)
		if err != nil {
			continue
		}
		f.Add(uint8(typ), v.Input)
	}
	f.Fuzz(func(t *testing.T, tb uint8, value string) {
		typ := Type(tb % 4) // includes the invalid Type(0)
		h, err := OfString(typ, value)
		n, nerr := Normalise(typ, value)
		if (err == nil) != (nerr == nil) {
			t.Fatalf("Of and Normalise disagree: %v / %v", err, nerr)
		}
		if err != nil {
			var re *RejectError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("error %v is not a RejectError", err)
			}
			return
		}
		if d, ok := ParseHex(n); ok && len(n) == 64 {
			if d != h {
				t.Fatalf("digest %q: hash %s", n, h)
			}
		} else if sha256.Sum256([]byte(n)) != h {
			t.Fatalf("hash is not sha256(normalised)")
		}
		again, err := OfString(typ, n)
		if err != nil || again != h {
			t.Fatalf("normalised form re-hashed differently: %v", err)
		}
		if twice, err := OfString(typ, h.String()); err != nil || twice != h {
			t.Fatalf("hash hashed twice")
		}
	})
}
