package sandbox_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
)

const acct = sandbox.DefaultAdAccountID

// clock is an injectable clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one sandbox served over TCP plus a valid access token.
type env struct {
	t     *testing.T
	s     *sandbox.Server
	ts    *httptest.Server
	clk   *clock
	token string
}

func setup(t *testing.T, cfg sandbox.Config) *env {
	t.Helper()
	clk := newClock()
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	s, err := sandbox.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	tok, err := s.GrantTokens()
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, ts: ts, clk: clk, token: tok.AccessToken}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// code returns the Pinterest error code of an error body.
func (r response) code(t *testing.T) int {
	t.Helper()
	m := r.json(t)
	c, ok := m["code"].(float64)
	if _, hasMsg := m["message"].(string); !ok || !hasMsg {
		t.Fatalf("error body %s lacks code or message", r.body)
	}
	return int(c)
}

func (e *env) do(method, path string, body any) response {
	return e.doToken(e.token, method, path, body)
}

func (e *env) doToken(token, method, path string, body any) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				e.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.Header.Get("x-pinterest-rid") == "" {
		e.t.Errorf("%s %s: no x-pinterest-rid header", method, path)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func hashOf(i int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("user%d@example.com", i)))
	return hex.EncodeToString(h[:])
}

func hashes(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, hashOf(i))
	}
	return out
}

func listsPath(rest string) string { return "/v5/ad_accounts/" + acct + "/customer_lists" + rest }

func audPath(rest string) string { return "/v5/ad_accounts/" + acct + "/audiences" + rest }

func (e *env) createList(name, listType string, recs []string) string {
	e.t.Helper()
	r := e.do("POST", listsPath(""), map[string]string{"name": name, "list_type": listType, "records": strings.Join(recs, ",")})
	if r.status != 201 {
		e.t.Fatalf("create list: %d %s", r.status, r.body)
	}
	return r.json(e.t)["id"].(string)
}

func (e *env) patch(id, op string, recs []string) response {
	e.t.Helper()
	return e.do("PATCH", listsPath("/"+id), map[string]string{"operation_type": op, "records": strings.Join(recs, ",")})
}

func (e *env) list(id string) sandbox.ListState {
	e.t.Helper()
	l, ok := e.s.CustomerList(id)
	if !ok {
		e.t.Fatalf("list %s not in state", id)
	}
	return l
}

func TestCustomerListKeepsSortedMembersAndCountsLikePinterest(t *testing.T) {
	e := setup(t, sandbox.Config{})
	id := e.createList("pinsync a EMAIL", "EMAIL", []string{hashOf(3), hashOf(1), hashOf(2), hashOf(1)})

	r := e.patch(id, "ADD", []string{hashOf(2), hashOf(4)}) // 2 is already in
	if r.status != 200 {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	r = e.patch(id, "REMOVE", []string{hashOf(1), hashOf(99)}) // 99 never was
	if r.status != 200 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	got := r.json(t)
	want := map[string]float64{"num_batches": 3, "num_uploaded_user_records": 6, "num_removed_user_records": 2}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if got["type"] != "customerlist" || got["id"] != id || got["ad_account_id"] != acct || got["name"] != "pinsync a EMAIL" {
		t.Errorf("response %s", r.body)
	}
	l := e.list(id)
	wantRecs := []string{hashOf(2), hashOf(3), hashOf(4)}
	sortStrings(wantRecs)
	if strings.Join(l.Records, ",") != strings.Join(wantRecs, ",") {
		t.Errorf("records = %v, want %v", l.Records, wantRecs)
	}
	if l.ListType != "EMAIL" || fmt.Sprint(l.Calls) != "[4 2 2]" {
		t.Errorf("list type %s calls %v", l.ListType, l.Calls)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestRecordsStringValidation(t *testing.T) {
	h := hashOf(1)
	cases := []struct {
		name      string
		records   string
		status    int
		plaintext int
	}{
		{"trailing comma tolerated", h + "," + hashOf(2) + ",", 201, 0},
		{"single record", h, 201, 0},
		{"plaintext email", h + ",someone@example.com", 400, 1},
		{"plaintext device id", "6D92078A-8246-4BA4-AE5B-76104861E7DC", 400, 1},
		{"space after comma", h + ", " + hashOf(2), 400, 0},
		{"uppercase hex", strings.ToUpper(h), 400, 0},
		{"md5", h[:32], 400, 0},
		{"empty element", h + ",," + hashOf(2), 400, 0},
		{"two trailing commas", h + ",,", 400, 0},
		{"empty", "", 400, 0},
		{"leading comma", "," + h, 400, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, sandbox.Config{})
			r := e.do("POST", listsPath(""), map[string]string{"name": "n", "records": tc.records})
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			st := e.s.State()
			if tc.status != 201 {
				if c := r.code(t); c != sandbox.CodeInvalid {
					t.Errorf("code %d, want 1", c)
				}
				if len(st.CustomerLists) != 0 {
					t.Errorf("a rejected create left a list")
				}
				if strings.Contains(string(r.body), "example.com") {
					t.Errorf("error echoes the identifier: %s", r.body)
				}
			}
			if st.PlaintextRejected != tc.plaintext {
				t.Errorf("plaintext_rejected = %d, want %d", st.PlaintextRejected, tc.plaintext)
			}
		})
	}
}

func TestRejectedUpdateChangesNothing(t *testing.T) {
	e := setup(t, sandbox.Config{})
	id := e.createList("l", "IDFA", hashes(0, 3))
	r := e.patch(id, "ADD", []string{hashOf(5), "not-a-hash"})
	if r.status != 400 {
		t.Fatalf("status %d", r.status)
	}
	l := e.list(id)
	if len(l.Records) != 3 || l.NumBatches != 1 || l.NumUploadedUserRecords != 3 {
		t.Errorf("rejected update changed the list: %+v", l)
	}
}

func TestRequestBodyValidation(t *testing.T) {
	e := setup(t, sandbox.Config{})
	id := e.createList("l", "MAID", hashes(0, 2))
	h := hashOf(9)
	cases := []struct {
		name, method, path string
		body               any
		status, code       int
	}{
		{"misspelt field", "PATCH", listsPath("/" + id), map[string]string{"operation_typ": "ADD", "records": h}, 400, 1},
		{"missing operation_type", "PATCH", listsPath("/" + id), map[string]string{"records": h}, 400, 1},
		{"bad operation_type", "PATCH", listsPath("/" + id), map[string]string{"operation_type": "add", "records": h}, 400, 1},
		{"records as array", "PATCH", listsPath("/" + id), map[string]any{"operation_type": "ADD", "records": []string{h}}, 400, 1},
		{"list_type on update", "PATCH", listsPath("/" + id), map[string]string{"operation_type": "ADD", "records": h, "list_type": "EMAIL"}, 400, 1},
		{"unknown list", "PATCH", listsPath("/123"), map[string]string{"operation_type": "ADD", "records": h}, 404, 404},
		{"missing name", "POST", listsPath(""), map[string]string{"records": h}, 400, 1},
		{"bad list_type", "POST", listsPath(""), map[string]string{"name": "x", "records": h, "list_type": "GAID"}, 400, 1},
		{"malformed json", "POST", listsPath(""), []byte(`{"name":`), 400, 1},
		{"unknown ad account", "GET", "/v5/ad_accounts/42/customer_lists", nil, 404, 2},
		{"non-numeric ad account", "GET", "/v5/ad_accounts/abc", nil, 400, 1},
		{"unknown endpoint", "GET", "/v5/pins", nil, 404, 404},
		{"audience without rule", "POST", audPath(""), map[string]string{"name": "a", "audience_type": "CUSTOMER_LIST"}, 400, 1},
		{"audience of unknown list", "POST", audPath(""), map[string]any{"name": "a", "audience_type": "CUSTOMER_LIST", "rule": map[string]string{"customer_list_id": "77"}}, 400, 1},
		{"audience rule array", "POST", audPath(""), map[string]any{"name": "a", "audience_type": "CUSTOMER_LIST", "rule": map[string]any{"customer_list_ids": []string{id}}}, 400, 1},
		{"unknown audience", "GET", audPath("/1"), nil, 404, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if c := r.code(t); c != tc.code {
				t.Errorf("code %d, want %d", c, tc.code)
			}
		})
	}
	if l := e.list(id); l.NumBatches != 1 {
		t.Errorf("rejected requests changed the list: %+v", l)
	}
}

func TestOversizedRequestsGet413(t *testing.T) {
	e := setup(t, sandbox.Config{MaxRecords: 10, MaxBytes: 2000})
	r := e.do("POST", listsPath(""), map[string]string{"name": "n", "records": strings.Join(hashes(0, 11), ",")})
	if r.status != 413 {
		t.Errorf("11 records: status %d, want 413", r.status)
	}
	r = e.do("POST", listsPath(""), map[string]string{"name": strings.Repeat("x", 2000), "records": hashOf(1)})
	if r.status != 413 {
		t.Errorf("2000+ bytes: status %d, want 413", r.status)
	}
	r.code(t)
	r = e.do("POST", listsPath(""), map[string]string{"name": "n", "records": strings.Join(hashes(0, 10), ",")})
	if r.status != 201 {
		t.Errorf("10 records: status %d, want 201", r.status)
	}
}

func TestAuthentication(t *testing.T) {
	e := setup(t, sandbox.Config{AccessTokenTTL: time.Hour})
	readOnly, err := e.s.GrantTokens(sandbox.ScopeAdsRead)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token, method, path string
		status, code              int
	}{
		{"no token", "", "GET", "/v5/ad_accounts", 401, 2},
		{"unknown token", "pina.nope", "GET", "/v5/ad_accounts", 401, 2},
		{"read scope reads", readOnly.AccessToken, "GET", listsPath(""), 200, 0},
		{"read scope cannot write", readOnly.AccessToken, "POST", listsPath(""), 401, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.method == "POST" {
				body = map[string]string{"name": "n", "records": hashOf(1)}
			}
			r := e.doToken(tc.token, tc.method, tc.path, body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != 0 && r.code(t) != tc.code {
				t.Errorf("code %d, want %d", r.code(t), tc.code)
			}
		})
	}
	t.Run("expired token", func(t *testing.T) {
		e.clk.Advance(time.Hour)
		r := e.do("GET", "/v5/ad_accounts", nil)
		if r.status != 401 || r.code(t) != 2 || r.json(t)["message"] != "Authentication failed." {
			t.Errorf("expired token: %d %s", r.status, r.body)
		}
	})
}

func TestWritesNeedAnAudienceRole(t *testing.T) {
	e := setup(t, sandbox.Config{AdAccounts: []sandbox.AdAccount{
		{ID: "111", Permissions: []string{"ANALYST"}},
		{ID: "222", Permissions: []string{"AUDIENCE_MANAGER"}},
	}})
	body := map[string]string{"name": "n", "records": hashOf(1)}
	r := e.do("POST", "/v5/ad_accounts/111/customer_lists", body)
	if r.status != 403 || r.code(t) != 29 {
		t.Errorf("analyst write: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v5/ad_accounts/111/customer_lists", nil); r.status != 200 {
		t.Errorf("analyst read: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v5/ad_accounts/222/customer_lists", body); r.status != 201 {
		t.Errorf("audience manager write: %d %s", r.status, r.body)
	}
}

func TestAdAccounts(t *testing.T) {
	e := setup(t, sandbox.Config{AdAccounts: []sandbox.AdAccount{
		{ID: "1", Name: "mine"}, {ID: "2", Shared: true, Permissions: []string{"ADMIN"}}, {ID: "3"},
	}})
	r := e.do("GET", "/v5/ad_accounts?page_size=2", nil)
	m := r.json(t)
	if len(m["items"].([]any)) != 2 || m["bookmark"] == nil {
		t.Fatalf("first page: %s", r.body)
	}
	r = e.do("GET", "/v5/ad_accounts?page_size=2&bookmark="+m["bookmark"].(string), nil)
	m = r.json(t)
	if len(m["items"].([]any)) != 1 || m["bookmark"] != nil {
		t.Fatalf("second page: %s", r.body)
	}
	r = e.do("GET", "/v5/ad_accounts?include_shared_accounts=false", nil)
	if n := len(r.json(t)["items"].([]any)); n != 2 {
		t.Errorf("without shared: %d accounts, want 2", n)
	}
	r = e.do("GET", "/v5/ad_accounts/1", nil)
	a := r.json(t)
	if a["id"] != "1" || a["name"] != "mine" || a["currency"] != "USD" || a["country"] != "US" ||
		fmt.Sprint(a["permissions"]) != "[OWNER]" {
		t.Errorf("account: %s", r.body)
	}
}

func TestListPagination(t *testing.T) {
	e := setup(t, sandbox.Config{})
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append(ids, e.createList(fmt.Sprint("l", i), "EMAIL", hashes(i, i+1)))
	}
	for _, order := range []string{"ASCENDING", "DESCENDING"} {
		var got []string
		bookmark := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			q := "?page_size=3&order=" + order
			if bookmark != "" {
				q += "&bookmark=" + bookmark
			}
			m := e.do("GET", listsPath(q), nil).json(t)
			for _, it := range m["items"].([]any) {
				got = append(got, it.(map[string]any)["id"].(string))
			}
			b, _ := m["bookmark"].(string)
			if b == "" {
				break
			}
			bookmark = b
		}
		want := append([]string(nil), ids...)
		if order == "DESCENDING" {
			for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
				want[i], want[j] = want[j], want[i]
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", order, got, want)
		}
	}
	for _, q := range []string{"?page_size=251", "?page_size=0", "?order=UP", "?bookmark=%21%21"} {
		if r := e.do("GET", listsPath(q), nil); r.status != 400 {
			t.Errorf("%s: status %d, want 400", q, r.status)
		}
	}
}

func TestAudienceSizeIsMatchedMembers(t *testing.T) {
	e := setup(t, sandbox.Config{MatchAnyRecord: true})
	id := e.createList("l", "EMAIL", hashes(0, 99))
	r := e.do("POST", audPath(""), map[string]any{"name": "aud", "audience_type": "CUSTOMER_LIST",
		"rule": map[string]string{"customer_list_id": id, "ad_account_id": acct}})
	if r.status != 201 {
		t.Fatalf("create audience: %d %s", r.status, r.body)
	}
	a := r.json(t)
	audID := a["id"].(string)
	if a["size"] != 99.0 || a["status"] != "TOO_SMALL" || a["type"] != "audience" || a["audience_type"] != "CUSTOMER_LIST" {
		t.Errorf("new audience: %s", r.body)
	}
	e.patch(id, "ADD", hashes(99, 100))
	a = e.do("GET", audPath("/"+audID), nil).json(t)
	if a["size"] != 100.0 || a["status"] != "READY" {
		t.Errorf("after add: size %v status %v", a["size"], a["status"])
	}
	e.patch(id, "REMOVE", hashes(0, 1))
	st := e.s.State()
	if st.Audiences[0].Size != 99 || st.Audiences[0].Status != "TOO_SMALL" || st.Audiences[0].CustomerListID != id {
		t.Errorf("after remove: %+v", st.Audiences[0])
	}
	r = e.do("PATCH", audPath("/"+audID), map[string]string{"name": "renamed", "operation_type": "UPDATE"})
	if r.status != 200 || r.json(t)["name"] != "renamed" {
		t.Errorf("rename: %d %s", r.status, r.body)
	}
	m := e.do("GET", audPath(""), nil).json(t)
	if len(m["items"].([]any)) != 1 {
		t.Errorf("list audiences: %v", m)
	}
	if r := e.do("PATCH", audPath("/"+audID), map[string]string{"operation_type": "REMOVE"}); r.status != 200 {
		t.Errorf("remove: %d %s", r.status, r.body)
	}
	if r := e.do("GET", audPath("/"+audID), nil); r.status != 404 {
		t.Errorf("removed audience: %d", r.status)
	}
}

func TestStateJSONShape(t *testing.T) {
	e := setup(t, sandbox.Config{})
	id := e.createList("l", "MAID", []string{hashOf(2), hashOf(1)})
	e.do("POST", audPath(""), map[string]any{"name": "a", "audience_type": "CUSTOMER_LIST", "rule": map[string]string{"customer_list_id": id}})
	resp, err := http.Get(e.ts.URL + "/sandbox/v1/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		CustomerLists []struct {
			ID          string   `json:"id"`
			AdAccountID string   `json:"ad_account_id"`
			Name        string   `json:"name"`
			ListType    string   `json:"list_type"`
			Records     []string `json:"records"`
		} `json:"customer_lists"`
		Audiences []map[string]any `json:"audiences"`
		Requests  struct {
			Total    int            `json:"total"`
			ByStatus map[string]int `json:"by_status"`
		} `json:"requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	want := []string{hashOf(1), hashOf(2)}
	sortStrings(want)
	if len(st.CustomerLists) != 1 || st.CustomerLists[0].ListType != "MAID" ||
		strings.Join(st.CustomerLists[0].Records, ",") != strings.Join(want, ",") {
		t.Errorf("customer_lists: %+v", st.CustomerLists)
	}
	for _, k := range []string{"id", "ad_account_id", "name", "customer_list_id", "size", "status"} {
		if _, ok := st.Audiences[0][k]; !ok {
			t.Errorf("audience lacks %q", k)
		}
	}
	if st.Requests.Total != 2 || st.Requests.ByStatus["201"] != 2 {
		t.Errorf("requests: %+v", st.Requests)
	}
	req, _ := http.NewRequest("POST", e.ts.URL+"/sandbox/v1/reset", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("reset: %v %v", resp, err)
	}
	if st := e.s.State(); len(st.CustomerLists) != 0 || len(st.Audiences) != 0 || st.Requests.Total != 0 {
		t.Errorf("after reset: %+v", st)
	}
	if r := e.do("GET", "/v5/ad_accounts", nil); r.status != 200 {
		t.Errorf("tokens must survive a reset: %d", r.status)
	}
}

func TestWriteBudgetPerMinute(t *testing.T) {
	e := setup(t, sandbox.Config{WritesPerMinute: 2, ReadsPerMinute: sandbox.Unlimited})
	id := e.createList("l", "EMAIL", hashes(0, 1))
	r := e.patch(id, "ADD", hashes(1, 2))
	if r.status != 200 || r.header.Get("x-ratelimit-limit") != "2" || r.header.Get("x-ratelimit-remaining") != "0" {
		t.Fatalf("second write: %d headers %v", r.status, r.header)
	}
	r = e.patch(id, "ADD", hashes(2, 3))
	if r.status != 429 || r.code(t) != 8 || r.header.Get("x-ratelimit-reset") != "60" {
		t.Fatalf("third write: %d %s %v", r.status, r.body, r.header)
	}
	if r := e.do("GET", listsPath(""), nil); r.status != 200 || r.header.Get("x-ratelimit-limit") != "" {
		t.Errorf("unlimited reads: %d %v", r.status, r.header)
	}
	e.clk.Advance(59 * time.Second)
	if r := e.patch(id, "ADD", hashes(2, 3)); r.status != 429 || r.header.Get("x-ratelimit-reset") != "1" {
		t.Errorf("59s later: %d reset %q", r.status, r.header.Get("x-ratelimit-reset"))
	}
	e.clk.Advance(time.Second)
	if r := e.patch(id, "ADD", hashes(2, 3)); r.status != 200 {
		t.Errorf("next minute: %d", r.status)
	}
	st := e.s.State()
	if st.RateLimited["ads_write"] != 2 || len(e.list(id).Records) != 3 {
		t.Errorf("rate_limited %v records %d", st.RateLimited, len(e.list(id).Records))
	}
}

func TestRequestLogCountsRecordsPerCall(t *testing.T) {
	e := setup(t, sandbox.Config{})
	id := e.createList("l", "EMAIL", hashes(0, 3))
	e.patch(id, "REMOVE", hashes(0, 2))
	e.patch(id, "ADD", []string{"plain@example.com"})
	log := e.s.Requests()
	if len(log) != 3 {
		t.Fatalf("log %+v", log)
	}
	want := []struct {
		op      string
		status  int
		records int
	}{{"customer_lists/create", 201, 3}, {"customer_lists/update", 200, 2}, {"customer_lists/update", 400, 0}}
	for i, w := range want {
		if log[i].Operation != w.op || log[i].Status != w.status || log[i].Records != w.records ||
			log[i].Category != "ads_write" || log[i].RequestID == "" {
			t.Errorf("log[%d] = %+v, want %+v", i, log[i], w)
		}
	}
	st := e.s.State()
	if st.Requests.ByOperation["customer_lists/update"] != 2 || st.Requests.ByCategory["ads_write"] != 3 ||
		st.Requests.ByStatus["400"] != 1 {
		t.Errorf("requests %+v", st.Requests)
	}
}

// TestDeletedListAnswers404: a list deleted through the admin endpoint (a
// user deleting it in Ads Manager) is gone from the state, and every later
// call on it answers 404 as Pinterest does; a second delete is a 404 too.
func TestDeletedListAnswers404(t *testing.T) {
	e := setup(t, sandbox.Config{})
	id := e.createList("l", "EMAIL", hashes(0, 3))
	other := e.createList("m", "EMAIL", hashes(0, 2))
	if r := e.do("DELETE", "/sandbox/v1/customer_lists/"+id, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if _, ok := e.s.CustomerList(id); ok {
		t.Error("the deleted list is still in the state")
	}
	if r := e.patch(id, "ADD", hashes(3, 4)); r.status != http.StatusNotFound {
		t.Errorf("update of the deleted list: %d, want 404", r.status)
	}
	if r := e.do("GET", listsPath("/"+id), nil); r.status != http.StatusNotFound {
		t.Errorf("get of the deleted list: %d, want 404", r.status)
	}
	if r := e.do("DELETE", "/sandbox/v1/customer_lists/"+id, nil); r.status != http.StatusNotFound {
		t.Errorf("second delete: %d, want 404", r.status)
	}
	if r := e.patch(other, "ADD", hashes(5, 6)); r.status != http.StatusOK {
		t.Errorf("update of another list: %d, want 200", r.status)
	}
}

// TestRolesChangedAtRunTime: the admin endpoint changes the user's roles on
// an ad account, as its owner does in Business Access: without a write
// role every write answers 403 code 29 and the account shows the new
// roles; with one back, writes succeed again. An unknown role or account
// is refused.
func TestRolesChangedAtRunTime(t *testing.T) {
	e := setup(t, sandbox.Config{})
	id := e.createList("l", "EMAIL", hashes(0, 3))
	perm := "/sandbox/v1/ad_accounts/" + acct + "/permissions"
	if r := e.do("POST", perm, map[string]any{"permissions": []string{"ANALYST"}}); r.status != http.StatusNoContent {
		t.Fatalf("set roles: %d %s", r.status, r.body)
	}
	if r := e.patch(id, "ADD", hashes(3, 4)); r.status != http.StatusForbidden || !strings.Contains(string(r.body), `"code":29`) {
		t.Errorf("update without a write role: %d %s, want 403 code 29", r.status, r.body)
	}
	if r := e.do("GET", "/v5/ad_accounts/"+acct, nil); !strings.Contains(string(r.body), `"permissions":["ANALYST"]`) {
		t.Errorf("the account shows %s, want the roles set", r.body)
	}
	if r := e.do("POST", perm, map[string]any{"permissions": []string{"AUDIENCE_MANAGER"}}); r.status != http.StatusNoContent {
		t.Fatalf("set roles: %d %s", r.status, r.body)
	}
	if r := e.patch(id, "ADD", hashes(3, 4)); r.status != http.StatusOK {
		t.Errorf("update with the role back: %d %s, want 200", r.status, r.body)
	}
	for _, bad := range []struct{ path, role string }{{perm, "EMPEROR"}, {"/sandbox/v1/ad_accounts/999/permissions", "OWNER"}} {
		if r := e.do("POST", bad.path, map[string]any{"permissions": []string{bad.role}}); r.status != http.StatusBadRequest {
			t.Errorf("set roles %s on %s: %d, want 400", bad.role, bad.path, r.status)
		}
	}
}

// TestSharedAudienceIsListedUnlessOwnedIsAsked: as the API does since 5.24,
// a listing without ownership_type holds the audiences shared with the
// account; OWNED leaves them out, RECEIVED holds only them; a shared
// audience can be read, not changed.
func TestSharedAudienceIsListedUnlessOwnedIsAsked(t *testing.T) {
	e := setup(t, sandbox.Config{})
	r := e.do("POST", "/sandbox/v1/ad_accounts/"+acct+"/received_audiences", map[string]string{"name": "pinsync vip EMAIL", "owner_ad_account_id": "549755000001"})
	if r.status != 201 {
		t.Fatalf("share: %d %s", r.status, r.body)
	}
	shared := r.json(t)["id"].(string)
	own := e.createList("own", "EMAIL", hashes(0, 1))
	if r := e.do("POST", audPath(""), map[string]any{"name": "pinsync vip EMAIL", "audience_type": "CUSTOMER_LIST",
		"rule": map[string]string{"customer_list_id": own}}); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	for q, want := range map[string]int{"": 2, "?ownership_type=OWNED": 1, "?ownership_type=RECEIVED": 1} {
		items := e.do("GET", audPath(q), nil).json(t)["items"].([]any)
		if len(items) != want {
			t.Errorf("list%s: %d audiences, want %d", q, len(items), want)
		}
	}
	if r := e.do("GET", audPath("/"+shared), nil); r.status != 200 || r.json(t)["ad_account_id"] != "549755000001" {
		t.Errorf("read shared: %d %s", r.status, r.body)
	}
	if r := e.do("PATCH", audPath("/"+shared), map[string]any{"rule": map[string]string{"customer_list_id": own}}); r.status != 403 {
		t.Errorf("change shared: %d %s, want 403", r.status, r.body)
	}
	for _, body := range []map[string]string{{"name": "x", "owner_ad_account_id": acct}, {"name": "", "owner_ad_account_id": "1"}, {"name": "x", "owner_ad_account_id": "abc"}} {
		if r := e.do("POST", "/sandbox/v1/ad_accounts/"+acct+"/received_audiences", body); r.status != 400 {
			t.Errorf("share %v: %d, want 400", body, r.status)
		}
	}
}
