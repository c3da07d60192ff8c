package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runWith(t *testing.T, run func(context.Context, *stdio, []string) int, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	io := &stdio{In: strings.NewReader(stdin), Out: &out, Err: &errOut, Getenv: func(string) string { return "" }}
	code = run(context.Background(), io, args)
	return code, out.String(), errOut.String()
}

func TestHashPrintsWhatPinsyncSends(t *testing.T) {
	const janeHash = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"
	for _, c := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"email normalised", "", []string{"--type", "email", "  Jane.Doe@Example.com "}, janeHash},
		{"email is the default", "", []string{"jane.doe@example.com"}, janeHash},
		{"digest passes through", "", []string{strings.ToUpper(janeHash)}, janeHash},
		{"idfa", "", []string{"--type", "idfa", "6D92078A-8246-4BA4-AE5B-76104861E7DC"}, "2afcf919a0c1953d177fcb412ea65138b44b4a42dda7d322225811767c0c530c"},
		{"maid from stdin", "38400000-8cf0-11bd-b23e-10b96e40000d\n", []string{"--type", "MAID", "-"}, "d4181bb455a74b3bc8b37c75ac9b2c702eb6b9930bd040b861403b31ca85634d"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runWith(t, runHash, c.stdin, c.args...)
			if code != 0 || strings.TrimSpace(out) != c.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %s", code, out, errOut, c.want)
			}
		})
	}
}

func TestHashRejectsWithReasonButNeverTheValue(t *testing.T) {
	for _, c := range []struct {
		args   []string
		reason string
	}{
		{[]string{"--type", "email", "jane.secret-at-example.com"}, "not_an_email"},
		{[]string{"--type", "idfa", "00000000-0000-0000-0000-000000000000"}, "zero_device_id"},
		{[]string{"--type", "maid", "jane.secret"}, "not_a_uuid"},
		{[]string{"--type", "email", "   "}, "empty"},
	} {
		code, out, errOut := runWith(t, runHash, "", c.args...)
		value := c.args[len(c.args)-1]
		if code != 2 || out != "" || !strings.Contains(errOut, c.reason) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %s", c.args, code, out, errOut, c.reason)
		}
		if strings.TrimSpace(value) != "" && strings.Contains(errOut, value) {
			t.Errorf("stderr %q echoes the value", errOut)
		}
	}
}

func TestHashUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"a@example.com", "b@example.com"}, {"--type", "phone", "+15555550100"}, {"--nope"}} {
		if code, _, _ := runWith(t, runHash, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, _ := runWith(t, runHash, "", "-h"); code != 0 {
		t.Errorf("-h: exit %d, want 0", code)
	}
	if code, _, errOut := runWith(t, runHash, "", "-"); code != 2 || !strings.Contains(errOut, "stdin") {
		t.Errorf("empty stdin: exit %d, %q", code, errOut)
	}
}
