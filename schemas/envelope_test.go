package schemas

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestMembersFindsTopLevelMembersAndValidatesTheWhole(t *testing.T) {
	names := []string{"payload", "schema", "absent"}
	raw := make([][]byte, len(names))
	value := []byte(`{"schema":{"payload":1},"payload":"first","pay\u006coad":{"a":[1,"x"]} }`)
	if err := Members(value, names, raw); err != nil {
		t.Fatal(err)
	}
	if string(raw[0]) != `{"a":[1,"x"]}` || string(raw[1]) != `{"payload":1}` || raw[2] != nil {
		t.Fatalf("members %q", raw)
	}
	for in, reason := range map[string]string{
		``:                               ReasonEmptyRecord,
		`[1]`:                            ReasonNotAnObject,
		`{"payload":1} x`:                ReasonInvalidJSON,
		"{\"a\":\"\xff\",\"payload\":1}": ReasonInvalidJSON,
	} {
		err := Members([]byte(in), names, raw)
		var de *DecodeError
		if !errors.As(err, &de) || de.Reason != reason || raw[0] != nil {
			t.Errorf("%q: %v, members %q; want %s and none", in, err, raw, reason)
		}
	}
}

func TestAppendQuotedAndUnquoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "quote \" backslash \\ tab \t nl \n nul \x00", "é😀"} {
		q, valid := AppendQuoted(nil, s)
		var viaJSON string
		if !valid || json.Unmarshal(q, &viaJSON) != nil || viaJSON != s {
			t.Errorf("%q quoted as %s", s, q)
		}
		if u, ok := Unquote(nil, q); !ok || string(u) != s {
			t.Errorf("%s unquoted as %q", q, u)
		}
	}
	if q, valid := AppendQuoted(nil, "a\xffb"); valid || string(q) != `"a\ufffdb"` {
		t.Errorf("invalid UTF-8 quoted as %s (valid %t)", q, valid)
	}
}
