package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
)

// accountsSandbox is a sandbox with an owned OWNER account and a shared
// ANALYST account, and a token store holding a valid refresh token.
func accountsSandbox(t *testing.T) *authSandbox {
	t.Helper()
	s := newAuthSandbox(t, sandbox.Config{AdAccounts: []sandbox.AdAccount{
		{ID: "549755885175", Name: "Acme US", Currency: "USD", Permissions: []string{"OWNER"}},
		{ID: "549755885176", Name: "Partner EU", Country: "DE", Currency: "EUR", Permissions: []string{"ANALYST"}, Shared: true},
	}})
	err := pinterest.NewFileTokenStore(s.tokenPath).Save(context.Background(),
		&oauth2.Token{RefreshToken: sandbox.DefaultRefreshToken})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func runAccountsWith(t *testing.T, s *authSandbox, adAccount string, args ...string) (int, string, string) {
	t.Helper()
	env := s.env()
	getenv := func(k string) string {
		if k == "PINSYNC_PINTEREST_AD_ACCOUNT_ID" {
			return adAccount
		}
		return env(k)
	}
	var out, errb bytes.Buffer
	sio := &stdio{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: getenv}
	code := runAccounts(context.Background(), sio, append([]string{"--base-url", s.url}, args...))
	return code, out.String(), errb.String()
}

func TestAccountsTableMarksConfiguredAccountAndAudienceRights(t *testing.T) {
	s := accountsSandbox(t)
	code, out, errs := runAccountsWith(t, s, "549755885175")
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errs)
	}
	t.Logf("\n%s", out)
	lines := strings.Split(out, "\n")
	row := func(id string) []string {
		for _, l := range lines {
			if strings.Contains(l, id) {
				return strings.Fields(l)
			}
		}
		t.Fatalf("no row for %s in\n%s", id, out)
		return nil
	}
	if got, want := row("549755885175"), []string{"*", "Acme", "US", "549755885175", "USD", "yes", "OWNER"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("owner row = %q, want %q", got, want)
	}
	if got, want := row("549755885176"), []string{"Partner", "EU", "549755885176", "EUR", "no", "ANALYST"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("analyst row = %q, want %q", got, want)
	}
	if !strings.Contains(lines[0], "NAME") || !strings.Contains(lines[0], "CURRENCY") {
		t.Errorf("no header: %q", lines[0])
	}
}

func TestAccountsJSON(t *testing.T) {
	s := accountsSandbox(t)
	code, out, errs := runAccountsWith(t, s, "549755885175", "--json")
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errs)
	}
	var got []accountJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	want := []accountJSON{
		{ID: "549755885175", Name: "Acme US", Country: "US", Currency: "USD", Permissions: []string{"OWNER"}, CanManageAudiences: true, Configured: true},
		{ID: "549755885176", Name: "Partner EU", Country: "DE", Currency: "EUR", Permissions: []string{"ANALYST"}},
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Errorf("got  %s\nwant %s", gb, wb)
	}
}

func TestAccountsFailsWhenConfiguredAccountCannotManageAudiences(t *testing.T) {
	s := accountsSandbox(t)
	code, out, errs := runAccountsWith(t, s, "549755885176")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "549755885176") {
		t.Errorf("the table was not printed: %q", out)
	}
	if !strings.Contains(errs, "549755885176") || !strings.Contains(errs, "ANALYST") || !strings.Contains(errs, "AUDIENCE_MANAGER") {
		t.Errorf("stderr %q does not explain the missing role", errs)
	}

	code, _, errs = runAccountsWith(t, s, "123")
	if code != 1 || !strings.Contains(errs, "123") || !strings.Contains(errs, "not among") {
		t.Errorf("unknown configured account: exit %d, stderr %q", code, errs)
	}
}

func TestAccountsTellsToRunAuthWhenCredentialsAreRejected(t *testing.T) {
	s := accountsSandbox(t)
	s.sb.Revoke(sandbox.Revocation{AccessTokens: true, RefreshTokens: true})
	code, _, errs := runAccountsWith(t, s, "549755885175")
	if code != 1 || !strings.Contains(errs, "pinsync auth") {
		t.Errorf("exit %d, stderr %q: want 1 and advice to run `pinsync auth`", code, errs)
	}
}
