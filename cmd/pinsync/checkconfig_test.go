package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigRefusesWhatCanBeKnownBeforeConnecting: a list name
// template that gives two lists one name, audiences that map to no ad
// account, and a revoke that could keep a member from rejoining within the
// rebalance timeout are refused with the field and the reason; the fixed
// configuration passes.
func TestCheckConfigRefusesWhatCanBeKnownBeforeConnecting(t *testing.T) {
	const base = `kafka:
  brokers: [localhost:9092]
  topics: [events]
  group: pinsync
pinterest:
  app_id: "1234"
  app_secret: secret
%s
sync:
%s
`
	for _, tc := range []struct {
		name, pinterest, sync string
		want                  []string // in stderr; none: valid
	}{
		{"valid", `  ad_account_id: "549755885175"`, `  list_name_template: "crm {{.Audience}} {{.ListType}}"`, nil},
		{"template without the list type", `  ad_account_id: "549755885175"`, `  list_name_template: "crm {{.Audience}}"`,
			[]string{"sync.list_name_template", "{{.ListType}}"}},
		{"template without the audience", `  ad_account_id: "549755885175"`, `  list_name_template: "crm {{.ListType}}"`,
			[]string{"sync.list_name_template", "gives two lists the name"}},
		{"template with an unknown field", `  ad_account_id: "549755885175"`, `  list_name_template: "{{.Audience}} {{.ListType}} {{.Owner}}"`,
			[]string{"sync.list_name_template", "Owner"}},
		{"every audience mapped", `  audience_ad_accounts: {buyers: "549755885175", churned: "549755885176"}`,
			`  audiences: {allow: [buyers, churned]}`, nil},
		{"an allowed audience mapped to no account", `  audience_ad_accounts: {buyers: "549755885175"}`,
			`  audiences: {allow: [buyers, churned]}`, []string{"pinterest.ad_account_id", `audience "churned"`}},
		{"a glob with no default account", `  audience_ad_accounts: {buyers: "549755885175"}`,
			`  audiences: {allow: ["engage/*"]}`, []string{"pinterest.ad_account_id", `"engage/*" may select audiences`}},
		{"a revoke that outlasts the rebalance", `  ad_account_id: "549755885175"`, `  revoke_timeout: 30s`,
			[]string{"sync.revoke_timeout", "less than half kafka.rebalance_timeout (1m0s)"}},
		{"a budget lease that outlasts the session", `  ad_account_id: "549755885175"`, `  budget_lease: 1m`,
			[]string{"sync.budget_lease", "at most kafka.session_timeout"}},
		{"no lending", `  ad_account_id: "549755885175"`, `  budget_lease: -1s`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pinsync.yaml")
			if err := os.WriteFile(path, []byte(fmt.Sprintf(base, tc.pinterest, tc.sync)), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			io := &stdio{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) string { return "" }}
			code := dispatch(t.Context(), io, []string{"check-config", "--config", path})
			if tc.want == nil {
				if code != 0 {
					t.Fatalf("status %d, stderr:\n%s", code, errb.String())
				}
				return
			}
			if code != 1 {
				t.Fatalf("status %d, want 1; stderr:\n%s", code, errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr does not say %q:\n%s", w, errb.String())
				}
			}
		})
	}
}

// TestCheckConfigTakesMaxBufferedBytesFromTheEnvironment: the 64-bit byte cap
// is read from PINSYNC_SYNC_MAX_BUFFERED_BYTES like any other key (every key
// is covered in internal/service); a value below the minimum is refused,
// which shows it reached the configuration.
func TestCheckConfigTakesMaxBufferedBytesFromTheEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pinsync.yaml")
	cfg := "pinterest:\n  ad_account_id: \"549755885175\"\n  app_id: \"1234\"\n  app_secret: secret\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		value string
		code  int
	}{{"16777216", 0}, {"524288", 1}} {
		var out, errb bytes.Buffer
		io := &stdio{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string {
			if k == "PINSYNC_SYNC_MAX_BUFFERED_BYTES" {
				return tc.value
			}
			return ""
		}}
		if code := dispatch(t.Context(), io, []string{"check-config", "--config", path}); code != tc.code {
			t.Errorf("PINSYNC_SYNC_MAX_BUFFERED_BYTES=%s: status %d, want %d; stderr:\n%s", tc.value, code, tc.code, errb.String())
		}
		if tc.code != 0 && !strings.Contains(errb.String(), "sync.max_buffered_bytes") {
			t.Errorf("PINSYNC_SYNC_MAX_BUFFERED_BYTES=%s: stderr does not name the key:\n%s", tc.value, errb.String())
		}
	}
}
