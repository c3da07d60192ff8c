package sandbox_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
)

func TestInjectedErrorsAreDeterministicBySeed(t *testing.T) {
	run := func() string {
		e := setup(t, sandbox.Config{Seed: 42, Faults: sandbox.Faults{ErrorRate: 0.5, ErrorStatus: 503}})
		var b strings.Builder
		for i := 0; i < 40; i++ {
			r := e.do("GET", "/v5/ad_accounts", nil)
			switch r.status {
			case 200:
				b.WriteByte('.')
			case 503:
				r.code(t)
				b.WriteByte('x')
			default:
				t.Fatalf("status %d", r.status)
			}
		}
		return b.String()
	}
	a, b := run(), run()
	if a != b {
		t.Errorf("same seed, different faults:\n%s\n%s", a, b)
	}
	if n := strings.Count(a, "x"); n < 8 || n > 32 {
		t.Errorf("%d of 40 failed at rate 0.5: %s", n, a)
	}
}

func TestOutageLastsItsDuration(t *testing.T) {
	e := setup(t, sandbox.Config{})
	if err := e.s.SetFaults(sandbox.Faults{Outage: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/v5/ad_accounts", nil); r.status != 503 {
		t.Errorf("during outage: %d", r.status)
	}
	resp, err := e.ts.Client().PostForm(e.ts.URL+"/v5/oauth/token", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("token endpoint during outage: %d", resp.StatusCode)
	}
	e.clk.Advance(time.Minute)
	if r := e.do("GET", "/v5/ad_accounts", nil); r.status != 200 {
		t.Errorf("after outage: %d", r.status)
	}
}

func TestThrottleBurstWithAndWithoutHeaders(t *testing.T) {
	for _, noHeaders := range []bool{false, true} {
		e := setup(t, sandbox.Config{})
		body := `{"throttle":2,"throttle_without_headers":` + map[bool]string{true: "true", false: "false"}[noHeaders] + `}`
		resp, err := e.ts.Client().Post(e.ts.URL+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("set faults: %v %v", resp, err)
		}
		resp.Body.Close()
		for i := 0; i < 2; i++ {
			r := e.do("GET", "/v5/ad_accounts", nil)
			if r.status != 429 || r.code(t) != 8 {
				t.Fatalf("throttled call %d: %d %s", i, r.status, r.body)
			}
			if has := r.header.Get("x-ratelimit-limit") != ""; has == noHeaders {
				t.Errorf("noHeaders=%v but headers %v", noHeaders, r.header)
			}
		}
		if r := e.do("GET", "/v5/ad_accounts", nil); r.status != 200 {
			t.Errorf("after burst: %d", r.status)
		}
		if st := e.s.State(); st.Requests.Injected != 2 || st.RateLimited["ads_read"] != 0 {
			t.Errorf("injected %d rate_limited %v", st.Requests.Injected, st.RateLimited)
		}
	}
}

func TestErrorAfterApplyLosesTheResponseNotTheChange(t *testing.T) {
	e := setup(t, sandbox.Config{})
	id := e.createList("l", "EMAIL", hashes(0, 1))
	if err := e.s.SetFaults(sandbox.Faults{ErrorRate: 1, ErrorAfterApply: true}); err != nil {
		t.Fatal(err)
	}
	if r := e.patch(id, "ADD", hashes(1, 2)); r.status != 500 {
		t.Fatalf("status %d", r.status)
	}
	if n := len(e.list(id).Records); n != 2 {
		t.Errorf("records %d, want 2: the change must have happened", n)
	}
	if err := e.s.SetFaults(sandbox.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	e.patch(id, "ADD", hashes(2, 3))
	if n := len(e.list(id).Records); n != 2 {
		t.Errorf("records %d, want 2: an error before apply changes nothing", n)
	}
}

func TestLatencyDelaysResponses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := sandbox.New(sandbox.Config{Faults: sandbox.Faults{Latency: 3 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := s.GrantTokens()
		req := httptest.NewRequest("GET", "/v5/ad_accounts", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		start := time.Now()
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("took %v, want 3s", took)
		}
	})
}

func TestInvalidFaultsAreRejected(t *testing.T) {
	e := setup(t, sandbox.Config{})
	for _, body := range []string{`{"error_rate":2}`, `{"error_status":404}`, `{"latency":"soon"}`, `{"typo":1}`, `{"refuse_records":["not-a-hash"]}`} {
		resp, err := e.ts.Client().Post(e.ts.URL+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", body, resp.StatusCode)
		}
	}
	if _, err := sandbox.New(sandbox.Config{MatchAnyRecord: true, Population: []sandbox.User{{Type: "email", ID: "a@example.com"}}}); err == nil {
		t.Error("MatchAnyRecord with a Population accepted")
	}
	if _, err := sandbox.New(sandbox.Config{AdAccounts: []sandbox.AdAccount{{ID: "x1"}}}); err == nil {
		t.Error("non-numeric ad account id accepted")
	}
}

func TestRefusedNamesAreRefusedWhateverTheRecords(t *testing.T) {
	e := setup(t, sandbox.Config{})
	bad := hashOf(9)
	body := `{"refuse_names":["Winter sale"],"refuse_records":["` + bad + `"]}`
	resp, err := e.ts.Client().Post(e.ts.URL+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 204 {
		t.Fatalf("set faults: status %d", resp.StatusCode)
	}
	if f := e.s.Faults(); !slices.Equal(f.RefuseNames, []string{"Winter sale"}) || !slices.Equal(f.RefuseRecords, []string{bad}) {
		t.Fatalf("faults after POST: %+v", f)
	}

	r := e.do("POST", listsPath(""), map[string]string{"name": "pinsync Winter sale EMAIL", "list_type": "EMAIL", "records": hashOf(1)})
	if r.status != 400 || r.code(t) != sandbox.CodeInvalid {
		t.Errorf("list with a refused name: %d %s, want 400 code %d", r.status, r.body, sandbox.CodeInvalid)
	}
	r = e.do("POST", listsPath(""), map[string]string{"name": "Summer", "list_type": "EMAIL", "records": bad})
	if r.status != 400 {
		t.Errorf("list with a refused record: %d %s, want 400", r.status, r.body)
	}
	id := e.createList("Summer", "EMAIL", hashes(1, 3))
	r = e.do("POST", audPath(""), map[string]any{"name": "Winter sale", "audience_type": "CUSTOMER_LIST",
		"rule": map[string]any{"customer_list_id": id}})
	if r.status != 400 || r.code(t) != sandbox.CodeInvalid {
		t.Errorf("audience with a refused name: %d %s, want 400", r.status, r.body)
	}
	r = e.do("POST", audPath(""), map[string]any{"name": "Summer", "audience_type": "CUSTOMER_LIST",
		"rule": map[string]any{"customer_list_id": id}})
	if r.status != 201 {
		t.Fatalf("audience: %d %s", r.status, r.body)
	}
	aud := r.json(t)["id"].(string)
	r = e.do("PATCH", audPath("/"+aud), map[string]any{"name": "Winter sale 2"})
	if r.status != 400 {
		t.Errorf("rename to a refused name: %d %s, want 400", r.status, r.body)
	}
	if got := len(e.s.State().CustomerLists); got != 1 {
		t.Errorf("%d lists, want 1: a refused creation makes nothing", got)
	}
	if err := e.s.SetFaults(sandbox.Faults{RefuseNames: []string{""}}); err == nil {
		t.Error("an empty refused name accepted")
	}
}
