package pinterest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
)

func TestCheckWriteAccessNeedsAnAudienceRole(t *testing.T) {
	e := newEnv(t, envOpts{sandbox: sandbox.Config{AdAccounts: []sandbox.AdAccount{
		{ID: "1001", Permissions: []string{"OWNER"}},
		{ID: "1002", Permissions: []string{"AUDIENCE_MANAGER"}},
		{ID: "1003", Permissions: []string{"ADMIN", "FINANCE_VIEW"}},
		{ID: "1004", Permissions: []string{"ANALYST", "CAMPAIGN_MANAGER"}},
	}}})
	ctx := context.Background()
	for _, id := range []string{"1001", "1002", "1003"} {
		if err := e.client.CheckWriteAccess(ctx, id); err != nil {
			t.Errorf("CheckWriteAccess(%s) = %v, want nil", id, err)
		}
	}
	err := e.client.CheckWriteAccess(ctx, "1004")
	var pe *PermissionError
	if !errors.As(err, &pe) {
		t.Fatalf("CheckWriteAccess(1004) = %v, want *PermissionError", err)
	}
	for _, s := range []string{"1004", "ANALYST", "CAMPAIGN_MANAGER", "AUDIENCE_MANAGER"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
	// The sandbox agrees: writes to that account are forbidden.
	_, err = e.client.CreateCustomerList(ctx, "1004", "x", ident.Email, hashes("r", 1))
	var ae *Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || ae.Code != 29 || IsRetryable(err) {
		t.Fatalf("create on a read-only account: %v, want permanent 403 code 29", err)
	}
	err = e.client.CheckWriteAccess(ctx, "4242")
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound || !strings.Contains(err.Error(), "4242") {
		t.Fatalf("unknown account: %v, want *Error 404 naming the account", err)
	}
}

func TestAdAccountsFollowsBookmarks(t *testing.T) {
	var accts []sandbox.AdAccount
	for i := range 600 {
		accts = append(accts, sandbox.AdAccount{ID: fmt.Sprint(100000 + i), Permissions: []string{"ANALYST"}})
	}
	e := newEnv(t, envOpts{sandbox: sandbox.Config{AdAccounts: accts}})
	got, err := e.client.AdAccounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 600 {
		t.Fatalf("%d accounts, want 600", len(got))
	}
	seen := map[string]bool{}
	for _, a := range got {
		if seen[a.ID] {
			t.Fatalf("account %s listed twice", a.ID)
		}
		seen[a.ID] = true
		if a.CanManageAudiences() || a.Country != "US" || a.Currency != "USD" {
			t.Fatalf("account = %+v", a)
		}
	}
	if n := e.opCount("ad_accounts/list"); n != 3 {
		t.Errorf("%d pages fetched, want 3 of 250", n)
	}
}

func TestCustomerListsAndAudiencesFollowBookmarks(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	var firstList CustomerList
	for i := range 260 {
		l, err := e.client.CreateCustomerList(ctx, testAccount, fmt.Sprintf("list %03d", i), ident.Email, hashes(fmt.Sprint(i), 1))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstList = l
		}
	}
	lists, err := e.client.CustomerLists(ctx, testAccount)
	if err != nil || len(lists) != 260 {
		t.Fatalf("CustomerLists = %d lists, %v; want 260", len(lists), err)
	}
	if l, ok, err := e.client.FindCustomerList(ctx, testAccount, "list 259"); err != nil || !ok || l.Name != "list 259" {
		t.Fatalf("FindCustomerList on the second page = %v %v %v", l, ok, err)
	}
	for i := range 255 {
		if _, err := e.client.CreateAudience(ctx, testAccount, fmt.Sprintf("aud %d", i), firstList.ID); err != nil {
			t.Fatal(err)
		}
	}
	auds, err := e.client.Audiences(ctx, testAccount)
	if err != nil || len(auds) != 255 {
		t.Fatalf("Audiences = %d, %v; want 255", len(auds), err)
	}
}

func TestAudienceLifecycle(t *testing.T) {
	e := newEnv(t, envOpts{sandbox: sandbox.Config{MatchAnyRecord: true}})
	ctx := context.Background()
	l, err := e.client.CreateCustomerList(ctx, testAccount, "members", ident.Email, hashes("m", 120))
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.client.CreateAudience(ctx, testAccount, "pinsync members", l.ID)
	if err != nil {
		t.Fatalf("CreateAudience: %v", err)
	}
	if a.ID == "" || a.AudienceType != "CUSTOMER_LIST" || a.Rule.CustomerListID != l.ID || a.Name != "pinsync members" {
		t.Fatalf("audience = %+v", a)
	}
	got, err := e.client.Audience(ctx, testAccount, a.ID)
	if err != nil || got.ID != a.ID || got.Size == nil || *got.Size != 120 || got.Status != "READY" {
		t.Fatalf("Audience = %+v, %v; want size 120, READY", got, err)
	}
	st := e.sb.State()
	if len(st.Audiences) != 1 || st.Audiences[0].CustomerListID != l.ID {
		t.Fatalf("sandbox audiences = %+v", st.Audiences)
	}

	var pe *Error
	if _, err := e.client.Audience(ctx, testAccount, "987654321"); !errors.As(err, &pe) || pe.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown audience: %v, want 404", err)
	}
	if _, err := e.client.CreateAudience(ctx, testAccount, "orphan", "987654321"); !errors.As(err, &pe) || IsRetryable(err) {
		t.Fatalf("audience of an unknown list: %v, want a permanent *Error", err)
	}
	if _, err := e.client.Audiences(ctx, "4242"); !errors.As(err, &pe) || pe.StatusCode != http.StatusNotFound {
		t.Fatalf("Audiences of unknown account: %v, want 404", err)
	}
}

// TestRepointAudience: an audience repointed to another list follows it
// (the sandbox's state and the answer say so, with a request Pinterest's
// description accepts); repointing to a list that does not exist is a
// permanent refusal, and an audience that does not exist is not_found.
func TestRepointAudience(t *testing.T) {
	e := newEnv(t, envOpts{sandbox: sandbox.Config{MatchAnyRecord: true}})
	ctx := context.Background()
	old, err := e.client.CreateCustomerList(ctx, testAccount, "members", ident.Email, hashes("m", 10))
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.client.CreateAudience(ctx, testAccount, "pinsync members", old.ID)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := e.client.CreateCustomerList(ctx, testAccount, "members #1", ident.Email, hashes("n", 5))
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.client.RepointAudience(ctx, testAccount, a.ID, rebuilt.ID)
	if err != nil || got.ID != a.ID || got.Rule.CustomerListID != rebuilt.ID {
		t.Fatalf("RepointAudience = %+v, %v; want audience %s following %s", got, err, a.ID, rebuilt.ID)
	}
	if st := e.sb.State(); len(st.Audiences) != 1 || st.Audiences[0].CustomerListID != rebuilt.ID {
		t.Fatalf("sandbox audiences = %+v", st.Audiences)
	}
	if _, err := e.client.RepointAudience(ctx, testAccount, a.ID, "987654321"); Classify(err) != ClassRefused {
		t.Errorf("repoint to an unknown list: %v (%v), want refused", err, Classify(err))
	}
	if _, err := e.client.RepointAudience(ctx, testAccount, "987654321", rebuilt.ID); Classify(err) != ClassNotFound {
		t.Errorf("repoint of an unknown audience: %v (%v), want not_found", err, Classify(err))
	}
}

// TestAudiencesLeaveOutSharedAudiences: since API 5.24 the audience listing
// holds the audiences other accounts share with this one unless it asks for
// ownership_type=OWNED; the client asks for it, so that a shared audience
// with the name pinsync would give its own is never taken for it.
func TestAudiencesLeaveOutSharedAudiences(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	shared, ok := e.sb.ShareAudience(testAccount, "549755000001", "pinsync members")
	if !ok {
		t.Fatal("ShareAudience refused")
	}
	l, err := e.client.CreateCustomerList(ctx, testAccount, "members", ident.Email, hashes("m", 3))
	if err != nil {
		t.Fatal(err)
	}
	own, err := e.client.CreateAudience(ctx, testAccount, "pinsync members", l.ID)
	if err != nil {
		t.Fatal(err)
	}
	auds, err := e.client.Audiences(ctx, testAccount)
	if err != nil || len(auds) != 1 || auds[0].ID != own.ID {
		t.Fatalf("Audiences = %+v, %v; want only %s, not the shared %s", auds, err, own.ID, shared)
	}
	asked := false
	for _, r := range e.sb.Requests() {
		if r.Operation == "audiences/list" {
			asked = true
			if !strings.Contains(r.Query, "ownership_type=OWNED") {
				t.Errorf("audience listing %s?%s does not ask for OWNED", r.Path, r.Query)
			}
		}
	}
	if !asked {
		t.Fatal("no audience listing was sent")
	}
	// The sandbox does hold the shared one in a listing without the
	// parameter, as the API does since 5.24.
	if st := e.sb.State(); len(st.Audiences) != 2 {
		t.Fatalf("sandbox audiences %+v, want the shared one too", st.Audiences)
	}
}
