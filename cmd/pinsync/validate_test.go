package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pinsync/pinsync/schemas/format"
	"github.com/pinsync/pinsync/schemas/stream"
)

const (
	trackExit = `{"type":"track","event":"Audience Exited","userId":"u456","properties":{"audience_key":"first_time_shopper","first_time_shopper":false},"context":{"traits":{"email":"sam@example.com"}}}`
	samHash   = "cd25a6171969f2a3c6e35c7667e3908ef1bd2424241db04411a0eec454ca6c16"
)

func TestValidateDescribesEveryRecord(t *testing.T) {
	input := strings.Join([]string{
		trackExit,
		"",
		"key-1\t" + `{"type":"identify","userId":"u1","traits":{"email":"not-an-email"}}`,
		`{"type":"track","event":"Order Completed","userId":"u1"}`,
		`{"type":"membership","profile":"p1","audience":"vip","member":true,"identifiers":{"idfa":["6D92078A-8246-4BA4-AE5B-76104861E7DC"]}}`,
		`not json`,
	}, "\n")
	code, out, errOut := runWith(t, runValidate, input)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (records rejected); stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		`line 1: membership profile="u456" audience="first_time_shopper" member=false EMAIL=` + samHash,
		`line 3: identify profile="key-1" skipped=1(not_an_email)`,
		`line 4: rejected: record rejected: unsupported_event (event)`,
		`line 5: membership profile="p1" audience="vip" member=true IDFA=2afcf919a0c1953d177fcb412ea65138b44b4a42dda7d322225811767c0c530c`,
		`line 6: rejected: record rejected: invalid_json`,
		`5 records: 3 accepted, 2 rejected`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if strings.Contains(out, "sam@example.com") || strings.Contains(out, "not-an-email") {
		t.Fatal("output holds a plaintext identifier")
	}
}

func TestValidateAllAcceptedFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.jsonl")
	if err := os.WriteFile(path, []byte(trackExit+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runWith(t, runValidate, "", path)
	if code != 0 || !strings.Contains(out, "1 records: 1 accepted, 0 rejected") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, _ := runWith(t, runValidate, "", filepath.Join(t.TempDir(), "missing")); code != 2 {
		t.Fatalf("missing file: exit %d, want 2", code)
	}
}

func TestValidateHonoursRenamedEvents(t *testing.T) {
	rec := `{"type":"track","event":"Joined","userId":"u","properties":{"audience_key":"vip"}}`
	if code, out, _ := runWith(t, runValidate, rec, "--entered-event", "Joined", "-"); code != 0 || !strings.Contains(out, "member=true") {
		t.Fatalf("exit %d, %q", code, out)
	}
	if code, _, _ := runWith(t, runValidate, rec); code != 1 {
		t.Fatalf("default names: exit %d, want 1", code)
	}
	if code, _, _ := runWith(t, runValidate, "", "--entered-event", "X", "--exited-event", "X"); code != 2 {
		t.Fatalf("equal names: exit %d, want 2", code)
	}
}

func TestValidateStopsOnAnOverlongLine(t *testing.T) {
	input := trackExit + "\n" + `{"type":"identify","userId":"` + strings.Repeat("x", maxRecordLine) + `"}` + "\n"
	code, out, errOut := runWith(t, runValidate, input)
	if code != 2 || !strings.Contains(errOut, "line 2 is longer than") || !strings.Contains(out, "line 1: membership") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestValidateMarksIdentifiersThatCameHashed: an identifier the platform
// hashed itself is sent as it came, so validate marks it and says what
// Pinterest needs of it.
func TestValidateMarksIdentifiersThatCameHashed(t *testing.T) {
	lowerIDFA := "31B806B4DEEC8C4CB1FFB18B9AB4EE1FA82A2B30E1F47902F04D03F5DB023376" // SHA-256 of the lower-case id
	input := `{"type":"membership","profile":"p1","audience":"vip","member":true,"identifiers":{"idfa":["` + lowerIDFA +
		`"],"email":["sam@example.com"]}}`
	code, out, errOut := runWith(t, runValidate, input)
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errOut)
	}
	first := strings.SplitN(out, "\n", 2)[0]
	if !strings.Contains(first, "IDFA="+strings.ToLower(lowerIDFA)+"(prehashed)") || !strings.Contains(first, "EMAIL="+samHash) ||
		strings.Contains(first, samHash+"(prehashed)") {
		t.Errorf("the line does not mark the prehashed IDFA, and it alone:\n%s", first)
	}
	if !strings.Contains(out, "1 identifiers came already hashed") {
		t.Errorf("no summary of the prehashed identifiers:\n%s", out)
	}
}

// TestValidateReadsEachFormat: the same membership, in each format,
// validates to the same line.
func TestValidateReadsEachFormat(t *testing.T) {
	fake := srfake.New()
	defer fake.Close()
	const event = `{"type":"membership","profile":"p1","audience":"vip","member":true,"identifiers":{"email":["sam@example.com"]}}`
	want := `line 1: membership profile="p1" audience="vip" member=true EMAIL=` + samHash
	ctx := t.Context()
	registry := func(kind format.Kind, subject string) string {
		cl, err := registryClient(format.RegistryConfig{URL: fake.URL()})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := newRecordEncoder(ctx, format.Config{Kind: kind}, cl, subject, "")
		if err != nil {
			t.Fatal(err)
		}
		rec, ok := enc(0, stream.Record{Value: []byte(event)})
		if !ok {
			t.Fatalf("%s cannot carry the event", kind)
		}
		return base64.StdEncoding.EncodeToString(rec.Value)
	}
	structured := `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":` + event + `}`
	for _, tc := range []struct {
		name, input string
		args        []string
	}{
		{"json", event, nil},
		{"connect", `{"schema":null,"payload":` + event + `}`, []string{"--format", "connect-json"}},
		{"cloudevents binary", event, []string{"--format", "cloudevents", "--header", "ce_specversion=1.0", "--header", "ce_id=1",
			"--header", "ce_source=/s", "--header", "ce_type=t"}},
		{"cloudevents structured", structured, []string{"--format", "cloudevents"}},
		{"cloudevents structured in base64", base64.StdEncoding.EncodeToString([]byte(structured)), []string{"--format", "cloudevents", "--base64"}},
		{"avro", "p1\t" + registry(format.Avro, "a-value"), []string{"--format", "avro", "--registry", fake.URL()}},
		{"protobuf", registry(format.Protobuf, "p-value"), []string{"--format", "protobuf", "--registry", fake.URL()}},
		{"json-schema", registry(format.JSONSchema, "j-value"), []string{"--format", "json-schema", "--registry", fake.URL()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runWith(t, runValidate, tc.input+"\n", tc.args...)
			if code != 0 || !strings.HasPrefix(out, want+"\n") {
				t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant the line %q", code, out, errOut, want)
			}
		})
	}
}

func TestValidateMapsAnotherSchema(t *testing.T) {
	fake := srfake.New()
	defer fake.Close()
	id, _, err := fake.RegisterSchema("j-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	value := append([]byte{0, 0, 0, 0, byte(id)}, `{"user":{"id":"u1","mail":"sam@example.com"},"list":"vip","in":false}`...)
	code, out, errOut := runWith(t, runValidate, base64.StdEncoding.EncodeToString(value), "--format", "json-schema", "--registry", fake.URL(),
		"--map", "type==membership", "--map", "profile=user.id", "--map", "audience=list", "--map", "member=in", "--map", "email=user.mail")
	if want := `line 1: membership profile="u1" audience="vip" member=false EMAIL=` + samHash; code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func TestValidateFormatErrors(t *testing.T) {
	fake := srfake.New()
	down := fake.URL()
	fake.Close()
	for _, tc := range []struct {
		name, input string
		args        []string
		code        int
		want        string
	}{
		{"unknown format", "{}", []string{"--format", "xml"}, 2, "kind:"},
		{"registry format without registry", "AA==", []string{"--format", "avro"}, 2, "needs --registry"},
		{"registry for a json format", "{}", []string{"--format", "connect-json", "--registry", "http://r"}, 2, "--registry"},
		{"not base64", "!!", []string{"--format", "cloudevents", "--base64"}, 2, "not base64"},
		{"registry down", "AAAAAAE=", []string{"--format", "avro", "--registry", down}, 2, "schema registry unavailable"},
		{"bad header flag", "{}", []string{"--header", "novalue"}, 2, "NAME=VALUE"},
		{"bad map flag", "{}", []string{"--map", "colour=x"}, 2, "FIELD=ENTRY"},
		{"envelope rejected", `{"payload":null}`, []string{"--format", "connect-json"}, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runWith(t, runValidate, tc.input+"\n", tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d (want %d)\nstdout %q\nstderr %q (want %q in it)", code, tc.code, out, errOut, tc.want)
			}
		})
	}
}
