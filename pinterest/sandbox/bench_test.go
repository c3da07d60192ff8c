package sandbox_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pinsync/pinsync/pinterest/sandbox"
)

// BenchmarkAddRecords pushes batches of 5000 new records through the
// handler (no network): b.N batches, so -benchtime=200x is 1M records.
func BenchmarkAddRecords(b *testing.B) {
	s, err := sandbox.New(sandbox.Config{WritesPerMinute: sandbox.Unlimited})
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := s.GrantTokens()
	serve := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
		return rec
	}
	rec := serve("POST", listsPath(""), `{"name":"bench","records":"`+hashOf(-1)+`"}`)
	id := strings.Split(strings.Split(rec.Body.String(), `"id":"`)[1], `"`)[0]
	const batch = 5000
	bodies := make([]string, 4)
	for i := range bodies {
		bodies[i] = `{"operation_type":"ADD","records":"` + strings.Join(hashes(i*batch, (i+1)*batch), ",") + `"}`
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(bodies[0])))
	i := 0
	for b.Loop() {
		serve("PATCH", listsPath("/"+id), bodies[i%len(bodies)])
		i++
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}
