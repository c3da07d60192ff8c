package schemas

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// shapes are the published schemas of accepted records, each with its
// fixture folder testdata/fixtures/<shape>/{valid,invalid}.
var shapeKinds = map[string][]Kind{
	"segment-identify":  {KindIdentify, KindMembership},
	"segment-track":     {KindMembership},
	"native-identify":   {KindIdentify},
	"native-membership": {KindMembership},
	"native-forget":     {KindForget},
}

func shapes() []string {
	names := make([]string, 0, len(shapeKinds))
	for n := range shapeKinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// compileSchemas compiles every *.schema.json of the package, each under its
// $id, and returns the shapes by name.
func compileSchemas(t testing.TB) map[string]*jsonschema.Schema {
	t.Helper()
	files, err := filepath.Glob("*.schema.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	ids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id == "" {
			t.Fatalf("%s: no $id", f)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ids[f] = id
	}
	out := map[string]*jsonschema.Schema{}
	for _, name := range shapes() {
		id, ok := ids[name+".schema.json"]
		if !ok {
			t.Fatalf("schema %s.schema.json is missing", name)
		}
		sch, err := c.Compile(id)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = sch
	}
	return out
}

// matchingShapes returns the shapes value validates against (none when it
// is not JSON).
func matchingShapes(schemas map[string]*jsonschema.Schema, value []byte) []string {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return nil
	}
	var out []string
	for _, name := range shapes() {
		if schemas[name].Validate(doc) == nil {
			out = append(out, name)
		}
	}
	return out
}

type fixture struct {
	shape, path string
	valid       bool
	value       []byte
}

func loadFixtures(t testing.TB) []fixture {
	t.Helper()
	var out []fixture
	for _, shape := range shapes() {
		for _, valid := range []bool{true, false} {
			dir := "invalid"
			if valid {
				dir = "valid"
			}
			files, err := filepath.Glob(filepath.Join("testdata", "fixtures", shape, dir, "*.json"))
			if err != nil {
				t.Fatal(err)
			}
			if len(files) == 0 {
				t.Fatalf("no fixtures in %s/%s", shape, dir)
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, fixture{shape: shape, path: f, valid: valid, value: b})
			}
		}
	}
	return out
}

// TestFixturesMatchSchemasAndDecoder holds the contract together: every
// valid fixture validates against its schema and every invalid one does
// not, and the decoder accepts a fixture exactly when it validates against
// one of the schemas, with the kind that schema describes.
func TestFixturesMatchSchemasAndDecoder(t *testing.T) {
	schemas := compileSchemas(t)
	dec, err := NewDecoder(DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range loadFixtures(t) {
		t.Run(fx.path, func(t *testing.T) {
			matched := matchingShapes(schemas, fx.value)
			own := false
			for _, m := range matched {
				own = own || m == fx.shape
			}
			if own != fx.valid {
				doc, _ := jsonschema.UnmarshalJSON(bytes.NewReader(fx.value))
				t.Fatalf("validates against %s: %v, want %v (%v)", fx.shape, own, fx.valid, schemas[fx.shape].Validate(doc))
			}
			if len(matched) > 1 {
				t.Fatalf("validates against several shapes: %v", matched)
			}
			var ev Event
			err := dec.Decode(nil, fx.value, &ev)
			if (err == nil) != (len(matched) == 1) {
				t.Fatalf("decoder error %v, but schemas matched: %v", err, matched)
			}
			if err != nil {
				return
			}
			kindOK := false
			for _, k := range shapeKinds[matched[0]] {
				kindOK = kindOK || k == ev.Kind
			}
			if !kindOK {
				t.Fatalf("decoded kind %v for shape %s", ev.Kind, matched[0])
			}
			want, reason := refDecode(DecoderConfig{}, nil, fx.value)
			if reason != "" || !sameEvent(&ev, &want) {
				t.Fatalf("decoder and reference disagree:\n got %+v\nwant %+v (%s)", ev, want, reason)
			}
		})
	}
}
