package sandbox_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pinsync/pinsync/pinterest/sandbox"
)

// sha is the lowercase hex SHA-256 of s, written out here so that the test
// states the normalised forms Pinterest hashes.
func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestRecordsMatchOnlyThePopulationAsPinterestHashesIt: a record matches a
// user only when it is the SHA-256 of the user's identifier normalised as
// Pinterest publishes (email lowercased, IDFA uppercased, Android id
// lowercased), in a list of the user's type; a hash of the same id in
// another case, or in a list of another type, matches nobody.
func TestRecordsMatchOnlyThePopulationAsPinterestHashesIt(t *testing.T) {
	e := setup(t, sandbox.Config{Population: []sandbox.User{
		{Type: "email", ID: "  Jane.Doe@Example.COM "},
		{Type: "idfa", ID: "6d92078a-8246-4ba4-ae5b-76104861e7dc"}, // held in lower case by the CDP
		{Type: "IDFA", ID: "\t1E2D3C4B-0000-4000-8000-00000000000A\n"},
		{Type: "maid", ID: "38400000-8CF0-11BD-B23E-10B96E40000D"}, // held in upper case by the CDP
	}})
	for _, c := range []struct {
		name, listType string
		records        []string
		matched        int
	}{
		{"email lowercased", "EMAIL", []string{sha("jane.doe@example.com"), sha("someone.else@example.com")}, 1},
		{"email not lowercased", "EMAIL", []string{sha("Jane.Doe@Example.COM"), sha("  Jane.Doe@Example.COM ")}, 0},
		{"idfa uppercased", "IDFA", []string{sha("6D92078A-8246-4BA4-AE5B-76104861E7DC"), sha("1E2D3C4B-0000-4000-8000-00000000000A")}, 2},
		{"idfa lowercased (the rule Pinterest does not match)", "IDFA", []string{sha("6d92078a-8246-4ba4-ae5b-76104861e7dc"), sha("1e2d3c4b-0000-4000-8000-00000000000a")}, 0},
		{"maid lowercased", "MAID", []string{sha("38400000-8cf0-11bd-b23e-10b96e40000d")}, 1},
		{"maid uppercased", "MAID", []string{sha("38400000-8CF0-11BD-B23E-10B96E40000D")}, 0},
		{"an email's hash in an IDFA list", "IDFA", []string{sha("jane.doe@example.com")}, 0},
	} {
		id := e.createList(c.name, c.listType, c.records)
		if got := e.list(id).Matched; got != c.matched {
			t.Errorf("%s: matched %d, want %d", c.name, got, c.matched)
		}
	}
	// The audience's size is its list's matched records, and follows
	// removals.
	id := e.createList("sized", "IDFA", []string{sha("6D92078A-8246-4BA4-AE5B-76104861E7DC"), sha("1E2D3C4B-0000-4000-8000-00000000000A"), sha("nobody")})
	r := e.do("POST", audPath(""), map[string]any{"name": "sized", "audience_type": "CUSTOMER_LIST",
		"rule": map[string]string{"customer_list_id": id}})
	if r.status != 201 || r.json(t)["size"] != 2.0 {
		t.Fatalf("audience: %d %s; want 201 and size 2", r.status, r.body)
	}
	e.patch(id, "REMOVE", []string{sha("1E2D3C4B-0000-4000-8000-00000000000A")})
	if st := e.s.State(); st.Audiences[0].Size != 1 || st.Population["IDFA"] != 2 || st.Population["EMAIL"] != 1 {
		t.Errorf("after a removal: audience %+v, population %v; want size 1, 2 IDFA and 1 EMAIL users", st.Audiences[0], st.Population)
	}
}

// TestPublishedVectorsMatchAsPinterestHashes: every identifier vector the
// project publishes (computed apart from both this sandbox and pinsync's
// code) hashes to a record the sandbox matches when its input is a user
// of the population: the vectors and the sandbox read Pinterest's rules
// alike.
func TestPublishedVectorsMatchAsPinterestHashes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "testdata", "ident-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct{ Type, Input, Hash, Reject, Note string }
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range f.Vectors {
		if v.Reject != "" || strings.HasPrefix(v.Note, "64-hex") {
			continue
		}
		e := setup(t, sandbox.Config{Population: []sandbox.User{{Type: v.Type, ID: v.Input}}})
		id := e.createList("v", strings.ToUpper(v.Type), []string{v.Hash})
		if e.list(id).Matched != 1 {
			t.Errorf("%s %q (%s): hash %s matches no user", v.Type, v.Input, v.Note, v.Hash)
		}
		n++
	}
	if n < 12 {
		t.Fatalf("only %d vectors checked", n)
	}
}

func TestReadPopulationNamesTheLineNeverTheIdentifier(t *testing.T) {
	users, err := sandbox.ReadPopulation(strings.NewReader("# users\nemail\t Jane@Example.com \n\nidfa\t6d92078a-8246-4ba4-ae5b-76104861e7dc\nMAID\t38400000-8CF0-11BD-B23E-10B96E40000D\n"))
	if err != nil || len(users) != 3 || users[0] != (sandbox.User{Type: "email", ID: " Jane@Example.com "}) {
		t.Fatalf("ReadPopulation = %v, %v", users, err)
	}
	for _, c := range []struct{ in, want string }{
		{"email\tsecret.person@example.com\nphone\t+15555550100\n", "line 2: unknown identifier type"},
		{"idfa\tsecret-not-a-device\n", "line 1: not an 8-4-4-4-12 device id"},
		{"email secret.person@example.com\n", "line 1: want TYPE<TAB>IDENTIFIER"},
		{"email\tsecret.person.example.com\n", "line 1: not an email address"},
	} {
		_, err := sandbox.ReadPopulation(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error %v; want one containing %q and no identifier", c.in, err, c.want)
		}
	}
}
