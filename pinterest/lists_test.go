package pinterest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
)

func TestCustomerListLifecycleReachesPinterest(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	first := hashes("a", 150)
	l, err := e.client.CreateCustomerList(ctx, testAccount, "pinsync vip EMAIL", ident.Email, first)
	if err != nil {
		t.Fatalf("CreateCustomerList: %v", err)
	}
	if l.ID == "" || l.Name != "pinsync vip EMAIL" || l.AdAccountID != testAccount {
		t.Fatalf("created list = %+v", l)
	}
	sameSet(t, e.listRecords(l.ID), hexes(first))
	if got := e.sb.State().CustomerLists[0].ListType; got != "EMAIL" {
		t.Errorf("list_type = %q, want EMAIL", got)
	}

	more := hashes("b", 20)
	if err := e.client.UpdateCustomerList(ctx, testAccount, l.ID, Add, more); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if err := e.client.UpdateCustomerList(ctx, testAccount, l.ID, Remove, first[:50]); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	want := hexes(append(slices.Clone(first[50:]), more...))
	sameSet(t, e.listRecords(l.ID), want)

	found, ok, err := e.client.FindCustomerList(ctx, testAccount, "pinsync vip EMAIL")
	if err != nil || !ok || found.ID != l.ID {
		t.Fatalf("FindCustomerList = %+v, %v, %v; want list %s", found, ok, err, l.ID)
	}
	if found.NumBatches != 3 {
		t.Errorf("num_batches = %v, want 3 (create, add, remove)", found.NumBatches)
	}
	if _, ok, err := e.client.FindCustomerList(ctx, testAccount, "pinsync vip"); err != nil || ok {
		t.Fatalf("FindCustomerList of a prefix = %v, %v; want not found (exact names only)", ok, err)
	}
}

func TestCustomerListOperationsReportFailures(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	recs := hashes("x", 3)

	_, err := e.client.CreateCustomerList(ctx, "999999", "n", ident.Email, recs)
	var pe *Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusNotFound || pe.RequestID == "" || IsRetryable(err) {
		t.Fatalf("create on unknown account: %v; want a permanent *Error 404 with a request id", err)
	}
	err = e.client.UpdateCustomerList(ctx, testAccount, "12345", Add, recs)
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusNotFound {
		t.Fatalf("update of unknown list: %v; want *Error 404", err)
	}
	if _, err := e.client.CustomerLists(ctx, "999999"); !errors.As(err, &pe) || pe.StatusCode != http.StatusNotFound {
		t.Fatalf("CustomerLists of unknown account: %v; want *Error 404", err)
	}
	for _, bad := range []error{
		e.client.UpdateCustomerList(ctx, testAccount, "1", Operation("DELETE"), recs),
		e.client.UpdateCustomerList(ctx, testAccount, "", Add, recs),
		func() error {
			_, err := e.client.CreateCustomerList(ctx, testAccount, "n", ident.Email, nil)
			return err
		}(),
		func() error {
			_, err := e.client.CreateCustomerList(ctx, testAccount, "n", ident.Type(0), recs)
			return err
		}(),
	} {
		if bad == nil {
			t.Error("invalid arguments accepted")
		}
	}
	if n := e.sb.State().Requests.ByCategory["ads_write"]; n != 2 {
		t.Errorf("ads_write requests = %d, want 2 (invalid arguments must not reach Pinterest)", n)
	}
}

func TestRecordsAreSplitByCount(t *testing.T) {
	e := newEnv(t, envOpts{config: func(c *Config) { c.MaxRecords = 10 }})
	recs := hashes("count", 25)
	l, err := e.client.CreateCustomerList(context.Background(), testAccount, "l", ident.MAID, recs)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := e.sb.CustomerList(l.ID)
	if !slices.Equal(ls.Calls, []int{10, 10, 5}) {
		t.Fatalf("records per call = %v, want [10 10 5] (create with the first chunk, ADD the rest)", ls.Calls)
	}
	if got := e.opCount("customer_lists/create"); got != 1 {
		t.Errorf("creates = %d, want 1", got)
	}
	sameSet(t, e.listRecords(l.ID), hexes(recs))

	if err := e.client.UpdateCustomerList(context.Background(), testAccount, l.ID, Remove, recs[:21]); err != nil {
		t.Fatal(err)
	}
	ls, _ = e.sb.CustomerList(l.ID)
	if !slices.Equal(ls.Calls[3:], []int{10, 10, 1}) {
		t.Fatalf("remove calls = %v, want [10 10 1]", ls.Calls[3:])
	}
}

// bodySizes records the size of every customer-list request body.
func bodySizes(sizes *[]int, mu *sync.Mutex) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/customer_lists") && r.Method != http.MethodGet {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				*sizes = append(*sizes, len(b))
				mu.Unlock()
				r.Body = io.NopCloser(strings.NewReader(string(b)))
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestRecordsAreSplitByBytes(t *testing.T) {
	const maxBytes = 2048
	var sizes []int
	var mu sync.Mutex
	e := newEnv(t, envOpts{
		wrap:   bodySizes(&sizes, &mu),
		config: func(c *Config) { c.MaxBytes = maxBytes },
	})
	recs := hashes("bytes", 100)
	l, err := e.client.CreateCustomerList(context.Background(), testAccount, "by bytes", ident.Email, recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.UpdateCustomerList(context.Background(), testAccount, l.ID, Remove, recs); err != nil {
		t.Fatal(err)
	}
	if len(sizes) < 2*(100*65/maxBytes) {
		t.Fatalf("%d requests for 2×100 records in %d-byte bodies; want more", len(sizes), maxBytes)
	}
	for _, s := range sizes {
		if s > maxBytes {
			t.Errorf("request body of %d bytes exceeds MaxBytes %d", s, maxBytes)
		}
	}
	// Chunks are as full as the limit allows: the largest body is within
	// one record of it.
	if m := slices.Max(sizes); m < maxBytes-bytesPerRecord {
		t.Errorf("largest body %d bytes; chunks are smaller than needed", m)
	}
	if got := e.listRecords(l.ID); len(got) != 0 {
		t.Errorf("%d records left after removing all", len(got))
	}
}

func TestTooLargeRequestsAreHalved(t *testing.T) {
	e := newEnv(t, envOpts{sandbox: sandbox.Config{MaxRecords: 8}, config: func(c *Config) { c.MaxRecords = 20 }})
	recs := hashes("413", 45)
	l, err := e.client.CreateCustomerList(context.Background(), testAccount, "halved", ident.IDFA, recs)
	if err != nil {
		t.Fatalf("CreateCustomerList: %v", err)
	}
	sameSet(t, e.listRecords(l.ID), hexes(recs))
	ls, _ := e.sb.CustomerList(l.ID)
	for _, n := range ls.Calls {
		if n > 8 {
			t.Errorf("accepted call with %d records; the sandbox allows 8", n)
		}
	}
	if e.sb.State().Requests.ByStatus["413"] == 0 {
		t.Fatal("no 413 was provoked; the test proves nothing")
	}

	// A single record that is still too large is an error, not a loop.
	big := &failing{next: e.handler, status: http.StatusBadRequest, body: `{"code":1,"message":"Payload too large"}`}
	big.n.Store(1 << 30)
	e2 := newEnv(t, envOpts{handler: big})
	err = e2.client.UpdateCustomerList(context.Background(), testAccount, "1", Add, recs[:4])
	var pe *Error
	if !errors.As(err, &pe) || !pe.PayloadTooLarge() {
		t.Fatalf("err = %v, want *Error with PayloadTooLarge", err)
	}
	if got := big.seen.Load(); got != 3 {
		t.Errorf("%d requests for 4 records refused as too large; want 3 (4, 2, 1)", got)
	}
}

func TestDuplicateRecordsAreSentOnce(t *testing.T) {
	var sizes []int
	var mu sync.Mutex
	e := newEnv(t, envOpts{wrap: bodySizes(&sizes, &mu)})
	recs := hashes("dup", 5)
	in := append(slices.Clone(recs), recs[3], recs[0], recs[3])
	orig := slices.Clone(in)
	l, err := e.client.CreateCustomerList(context.Background(), testAccount, "dups", ident.Email, in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in, orig) {
		t.Error("the caller's records were modified")
	}
	ls, _ := e.sb.CustomerList(l.ID)
	if !slices.Equal(ls.Calls, []int{5}) {
		t.Fatalf("calls = %v, want one call with 5 records", ls.Calls)
	}
}

func TestRecordsEncoding(t *testing.T) {
	recs := hashes("enc", 3)
	got := string(appendUpdate(nil, Add, recs))
	want := fmt.Sprintf(`{"operation_type":"ADD","records":"%s,%s,%s"}`, recs[0], recs[1], recs[2])
	if got != want {
		t.Fatalf("body = %s\nwant  %s", got, want)
	}
	got = string(appendCreate(nil, []byte(`"a \"b\""`), ident.MAID, recs[:1]))
	want = fmt.Sprintf(`{"name":"a \"b\"","list_type":"MAID","records":"%s"}`, recs[0])
	if got != want {
		t.Fatalf("body = %s\nwant  %s", got, want)
	}
}

// A create that took effect but whose response was lost must not create a
// second list when retried.
func TestCreateRetryDoesNotDuplicateTheList(t *testing.T) {
	e := newEnv(t, envOpts{wrap: func(h http.Handler) http.Handler { return &loseFirstResponse{next: h} }})
	recs := hashes("once", 10)
	l, err := e.client.CreateCustomerList(context.Background(), testAccount, "only once", ident.Email, recs)
	if err != nil {
		t.Fatalf("CreateCustomerList: %v", err)
	}
	st := e.sb.State()
	if len(st.CustomerLists) != 1 {
		t.Fatalf("%d lists exist, want 1", len(st.CustomerLists))
	}
	if st.CustomerLists[0].ID != l.ID {
		t.Fatalf("returned list %s, sandbox has %s", l.ID, st.CustomerLists[0].ID)
	}
	sameSet(t, e.listRecords(l.ID), hexes(recs))
}

// loseFirstResponse lets the first write take effect, then answers 502.
type loseFirstResponse struct {
	next http.Handler
	done sync.Once
}

func (l *loseFirstResponse) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lose := false
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/customer_lists") {
		l.done.Do(func() { lose = true })
	}
	if !lose {
		l.next.ServeHTTP(w, r)
		return
	}
	l.next.ServeHTTP(discard{h: http.Header{}}, r)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, `{"code":502,"message":"Bad gateway"}`)
}

type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}
