package format

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Mapping says where the fields of a registry record hold the members of a
// native event, for schemas other than the published native ones. Each
// entry is a path of field names from the record's top level, separated by
// dots ("user.id"; a union is no level: the path goes through it), or "="
// and a constant ("=membership"; for member "=true" or "=false"). An empty
// entry leaves the member out.
//
// The record's JSON form (see the package comment) is read at each path
// and the native record built from the values found, with "profile"
// always present (null when its path finds nothing) so that the record is
// decoded as native; a path that finds nothing gives null, which the
// native rules read as absent. The identifiers object is present when the
// Identifiers path finds an object, or, with no Identifiers path, when one
// of the Email, IDFA and MAID paths finds a value.
type Mapping struct {
	Type         string `yaml:"type"`
	Profile      string `yaml:"profile"`
	Audience     string `yaml:"audience"`
	AudienceName string `yaml:"audience_name"`
	AdAccountID  string `yaml:"ad_account_id"`
	Member       string `yaml:"member"`
	Identifiers  string `yaml:"identifiers"`
	Email        string `yaml:"email"`
	IDFA         string `yaml:"idfa"`
	MAID         string `yaml:"maid"`
	Timestamp    string `yaml:"timestamp"`
}

// IsZero reports whether m maps nothing: records are then decoded as they
// are.
func (m Mapping) IsZero() bool { return m == Mapping{} }

// entries returns the native member name (with its yaml key) and the entry
// of every field of m, in the order of the native record.
func (m *Mapping) entries() []struct{ member, entry string } {
	return []struct{ member, entry string }{
		{"type", m.Type}, {"profile", m.Profile}, {"audience", m.Audience},
		{"audience_name", m.AudienceName}, {"ad_account_id", m.AdAccountID},
		{"member", m.Member}, {"identifiers", m.Identifiers}, {"email", m.Email},
		{"idfa", m.IDFA}, {"maid", m.MAID}, {"timestamp", m.Timestamp},
	}
}

func (m Mapping) validate() error {
	if m.IsZero() {
		return nil
	}
	if m.Profile == "" || m.Type == "" {
		return fmt.Errorf("profile and mapping.type: both needed by any mapping (type may be a constant, \"=membership\")")
	}
	for _, e := range m.entries() {
		if e.entry == "" {
			continue
		}
		if c, ok := strings.CutPrefix(e.entry, "="); ok {
			switch {
			case e.member == "member" && c != "true" && c != "false":
				return fmt.Errorf("member: a constant member is \"=true\" or \"=false\", not %q", e.entry)
			case e.member == "identifiers" || e.member == "email" || e.member == "idfa" || e.member == "maid":
				return fmt.Errorf("%s: identifiers come from the record, not from a constant", e.member)
			}
			continue
		}
		for _, name := range strings.Split(e.entry, ".") {
			if name == "" {
				return fmt.Errorf("%s: %q is not a path of field names separated by dots", e.member, e.entry)
			}
		}
	}
	return nil
}

// apply builds the native JSON record of the JSON form doc. ok is false
// when doc is not one JSON object (from Avro and Protobuf it always is).
func (m *Mapping) apply(b, doc []byte) (out []byte, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var root map[string]any
	if dec.Decode(&root) != nil || dec.More() || root == nil {
		return b, false
	}
	w := jsonWriter{b: append(b, '{')}
	first := true
	member := func(name string, v any) {
		if !first {
			w.byte(',')
		}
		first = false
		w.name(name)
		enc, _ := json.Marshal(v) // a decoded document: it does not fail
		w.b = append(w.b, enc...)
	}
	for _, e := range []struct{ name, entry string }{
		{"type", m.Type}, {"audience", m.Audience}, {"audience_name", m.AudienceName},
		{"ad_account_id", m.AdAccountID}, {"member", m.Member}, {"timestamp", m.Timestamp},
	} {
		if v := lookupEntry(root, e.entry, e.name == "member"); v != nil {
			member(e.name, v)
		}
	}
	member("profile", lookupEntry(root, m.Profile, false))
	ids := lookupEntry(root, m.Identifiers, false)
	if _, isObject := ids.(map[string]any); ids != nil && !isObject {
		member("identifiers", ids) // the decoder says it is not an object
		return append(w.b, '}'), true
	}
	inner := map[string]any{}
	for _, e := range []struct{ name, entry string }{{"email", m.Email}, {"idfa", m.IDFA}, {"maid", m.MAID}} {
		if v := lookupEntry(root, e.entry, false); v != nil {
			inner[e.name] = v
		}
	}
	if ids != nil || (m.Identifiers == "" && len(inner) > 0) {
		member("identifiers", inner)
	}
	return append(w.b, '}'), true
}

// lookupEntry returns the value of a mapping entry in root: a constant
// (a boolean when boolean is set and it is "true" or "false"), or the value
// at a path; nil when the entry is empty or finds nothing.
func lookupEntry(root map[string]any, entry string, boolean bool) any {
	if c, ok := strings.CutPrefix(entry, "="); ok {
		if boolean && (c == "true" || c == "false") {
			return c == "true"
		}
		return c
	}
	if entry == "" {
		return nil
	}
	var v any = root
	for name := range strings.SplitSeq(entry, ".") {
		obj, _ := v.(map[string]any)
		if v = obj[name]; v == nil {
			return nil
		}
	}
	return v
}
