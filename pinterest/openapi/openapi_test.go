package openapi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pinsync/pinsync/pinterest/openapi"
	"github.com/pinsync/pinsync/pinterest/sandbox"
)

// officialSpec finds ../shared/pinterest/openapi.yaml next to the repository
// root (the directory holding go.mod above this package).
func officialSpec(t *testing.T) (string, bool) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the package directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "pinterest", "openapi.yaml")
	_, err = os.Stat(p)
	return p, err == nil
}

func TestCommittedDescriptionMatchesDerivation(t *testing.T) {
	p, ok := officialSpec(t)
	if !ok {
		t.Skipf("official description not found at %s; cannot check the committed copy", p)
	}
	spec, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := openapi.Derive(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, openapi.Trimmed) {
		t.Errorf("pinterest-v5-trimmed.yaml is stale; regenerate it with\n" +
			"  go run ./pinterest/openapi/derive -in ../shared/pinterest/openapi.yaml -out pinterest/openapi/pinterest-v5-trimmed.yaml")
	}
	again, err := openapi.Derive(spec)
	if err != nil || !bytes.Equal(got, again) {
		t.Errorf("Derive is not deterministic")
	}
}

func TestDescriptionHoldsExactlyPinsyncsOperations(t *testing.T) {
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			got = append(got, op.OperationID)
		}
	}
	slices.Sort(got)
	want := slices.Clone(openapi.Operations)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("operations %v, want %v", got, want)
	}
	for _, name := range []string{"CustomerList", "CustomerListUpdateRequest", "Audience", "AudienceRule",
		"OauthAccessTokenResponseRefresh", "Paginated", "Error", "AdAccount"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("schema %s missing", name)
		}
	}
}

func TestDeriveRejectsADescriptionWithoutAnOperation(t *testing.T) {
	spec := []byte("openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /x:\n    get:\n      operationId: ad_accounts/list\ncomponents: {}\n")
	if _, err := openapi.Derive(spec); err == nil || !strings.Contains(err.Error(), "ad_accounts/get") {
		t.Errorf("want an error naming a missing operation, got %v", err)
	}
}

// violations collects what the transport reports.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) report(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err)
}

func (v *violations) take() []error {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := v.errs
	v.errs = nil
	return out
}

// session is a plain net/http client talking to a server through the
// validating transport.
type session struct {
	t      *testing.T
	base   string
	client *http.Client
	token  string
	v      *violations
}

func newSession(t *testing.T, h http.Handler) *session {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	v := &violations{}
	tr, err := openapi.NewValidatingTransport(ts.Client().Transport, v.report)
	if err != nil {
		t.Fatal(err)
	}
	return &session{t: t, base: ts.URL, client: &http.Client{Transport: tr}, v: v}
}

func (s *session) do(method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	return s.send(req)
}

func (s *session) send(req *http.Request) (int, map[string]any) {
	s.t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		s.t.Fatalf("%s %s: decoding: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, m
}

func (s *session) must(method, path string, body any) map[string]any {
	s.t.Helper()
	st, m := s.do(method, path, body)
	if st != 200 && st != 201 {
		s.t.Fatalf("%s %s: %d %v", method, path, st, m)
	}
	return m
}

func hashes(from, to int) string {
	var parts []string
	for i := from; i < to; i++ {
		h := sha256.Sum256([]byte(fmt.Sprintf("u%d@example.com", i)))
		parts = append(parts, hex.EncodeToString(h[:]))
	}
	return strings.Join(parts, ",")
}

func TestScriptedSessionAgainstSandboxMatchesDescription(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{MatchAnyRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, sb)

	// OAuth refresh: form body, HTTP Basic.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {sandbox.DefaultRefreshToken}}
	req, _ := http.NewRequest("POST", s.base+"/v5/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sandbox.DefaultAppID, sandbox.DefaultAppSecret)
	st, tok := s.send(req)
	if st != 200 {
		t.Fatalf("refresh: %d %v", st, tok)
	}
	s.token = tok["access_token"].(string)

	const acct = "/v5/ad_accounts/" + sandbox.DefaultAdAccountID
	s.must("GET", "/v5/ad_accounts?page_size=250&include_shared_accounts=true", nil)
	s.must("GET", acct, nil)
	var ids []string
	for i := 0; i < 3; i++ {
		l := s.must("POST", acct+"/customer_lists", map[string]string{
			"name": fmt.Sprint("pinsync aud", i, " EMAIL"), "records": hashes(0, 120) + ",", "list_type": "EMAIL"})
		ids = append(ids, l["id"].(string))
	}
	s.must("PATCH", acct+"/customer_lists/"+ids[0], map[string]string{"operation_type": "ADD", "records": hashes(120, 130)})
	s.must("PATCH", acct+"/customer_lists/"+ids[0], map[string]string{"operation_type": "REMOVE", "records": hashes(0, 5)})
	page := s.must("GET", acct+"/customer_lists?page_size=2&order=ASCENDING", nil)
	s.must("GET", acct+"/customer_lists?page_size=2&order=ASCENDING&bookmark="+url.QueryEscape(page["bookmark"].(string)), nil)
	s.must("GET", acct+"/customer_lists/"+ids[0], nil)
	aud := s.must("POST", acct+"/audiences", map[string]any{"name": "pinsync aud0", "audience_type": "CUSTOMER_LIST",
		"description": "synced by pinsync", "rule": map[string]string{"customer_list_id": ids[0]}})
	s.must("GET", acct+"/audiences/"+aud["id"].(string), nil)
	s.must("GET", acct+"/audiences?page_size=25&order=DESCENDING&ownership_type=OWNED", nil)
	s.must("PATCH", acct+"/audiences/"+aud["id"].(string), map[string]any{"name": "renamed", "operation_type": "UPDATE"})
	// Error responses must match the description too.
	if st, _ := s.do("GET", "/v5/ad_accounts/1", nil); st != 404 {
		t.Errorf("unknown ad account: %d", st)
	}
	if st, _ := s.do("PATCH", acct+"/customer_lists/"+ids[0], map[string]string{"operation_type": "ADD", "records": "plain@example.com"}); st != 400 {
		t.Errorf("plaintext: %d", st)
	}
	if got := sb.State().Audiences[0]; got.Size != 125 || got.Status != "READY" {
		t.Errorf("audience %+v", got)
	}
	for _, err := range s.v.take() {
		t.Error(err)
	}
}

func TestMisspeltRequestFieldIsAViolation(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, sb)
	tok, _ := sb.GrantTokens()
	s.token = tok.AccessToken
	const acct = "/v5/ad_accounts/" + sandbox.DefaultAdAccountID
	l := s.must("POST", acct+"/customer_lists", map[string]string{"name": "n", "records": hashes(0, 1)})
	if errs := s.v.take(); len(errs) != 0 {
		t.Fatalf("valid create reported: %v", errs)
	}
	s.do("PATCH", acct+"/customer_lists/"+l["id"].(string), map[string]string{"operation_typ": "ADD", "records": hashes(1, 2)})
	errs := s.v.take()
	if len(errs) != 1 {
		t.Fatalf("want one violation, got %v", errs)
	}
	var ve *openapi.ViolationError
	if !errors.As(errs[0], &ve) || ve.Response || !strings.Contains(ve.Error(), "operation_type") {
		t.Errorf("want a request violation about operation_type, got %v", errs[0])
	}
	s.do("GET", acct+"/customer_lists?page_size=251", nil)
	if errs := s.v.take(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "page_size") {
		t.Errorf("page_size 251: %v", errs)
	}
	s.do("GET", "/v5/not/an/operation", nil)
	if errs := s.v.take(); len(errs) != 1 {
		t.Errorf("unknown operation: %v", errs)
	}
}

func TestWrongResponseTypeIsAViolation(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"counter as string", `{"id":"1","num_batches":"3","type":"customerlist"}`, 200, "num_batches"},
		{"status outside enum", `{"id":"1","status":"DONE"}`, 200, "status"},
		{"error without message", `{"code":2}`, 404, "message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			s := newSession(t, h)
			s.token = "x"
			s.do("GET", "/v5/ad_accounts/1/customer_lists/2", nil)
			errs := s.v.take()
			var ve *openapi.ViolationError
			if len(errs) != 1 || !errors.As(errs[0], &ve) || !ve.Response || !strings.Contains(ve.Error(), tc.want) {
				t.Errorf("want one response violation mentioning %q, got %v", tc.want, errs)
			}
		})
	}
}
