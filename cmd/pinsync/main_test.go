package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestEveryCommandAnswersHelpAndRefusesBadFlags runs every command with
// -h (usage on stderr, status 0), with an unknown flag and with a stray
// argument (status 2 and the reason), without connecting anywhere.
func TestEveryCommandAnswersHelpAndRefusesBadFlags(t *testing.T) {
	for name := range commands() {
		t.Run(name, func(t *testing.T) {
			call := func(args ...string) (int, string) {
				var out, errb bytes.Buffer
				io := &stdio{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) string { return "" }}
				return dispatch(t.Context(), io, append([]string{name}, args...)), errb.String()
			}
			if code, msg := call("-h"); code != 0 || !strings.Contains(msg, "usage: pinsync "+name) {
				t.Errorf("%s -h: status %d, stderr %q; want 0 and its usage", name, code, msg)
			}
			if code, msg := call("--no-such-flag"); code != 2 || !strings.Contains(msg, "flag provided but not defined: -no-such-flag") {
				t.Errorf("%s --no-such-flag: status %d, stderr %q; want 2 and the reason", name, code, msg)
			}
		})
	}
	// The commands that take no argument name the stray one.
	for _, name := range []string{"run", "check-config", "auth", "accounts", "bench", "demo"} {
		var errb bytes.Buffer
		io := &stdio{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &errb, Getenv: func(string) string { return "" }}
		if code := dispatch(t.Context(), io, []string{name, "stray"}); code != 2 || !strings.Contains(errb.String(), `pinsync `+name+`: unexpected argument "stray"`) {
			t.Errorf("%s stray: status %d, stderr %q; want 2 and the argument", name, code, errb.String())
		}
	}
}
