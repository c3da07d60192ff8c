package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

const svcTopic = "events"

// svcRig runs the whole service in-process (service.Run) against Kafka
// (kfake over TCP) and the Pinterest sandbox (over HTTP), and records every
// request the sandbox receives.
type svcRig struct {
	t          *testing.T
	cluster    *kfake.Cluster
	brokers    []string
	partitions int
	sb         *sandbox.Server
	sbURL      string
	captured   *captured
	store      *pinterest.FileTokenStore
	cfg        service.Config
	logs       *lockedBuffer
	addr       string
	cancel     context.CancelFunc
	done       chan error
}

// newSvcRig starts Kafka and the sandbox and seeds the token store; the
// service itself starts with start. tok nil seeds the sandbox's refresh
// token with an expired access token, so the first call refreshes.
func newSvcRig(t *testing.T, partitions int, sbCfg sandbox.Config, tok *oauth2.Token) *svcRig {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), svcTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	sbCfg.WritesPerMinute, sbCfg.ReadsPerMinute = sandbox.Unlimited, sandbox.Unlimited
	sb, err := sandbox.New(sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	capt := &captured{}
	srv := httptest.NewServer(capt.wrap(sb))
	t.Cleanup(srv.Close)

	store := pinterest.NewFileTokenStore(filepath.Join(t.TempDir(), "token.json"))
	if tok == nil {
		rt := sbCfg.RefreshToken
		if rt == "" {
			rt = sandbox.DefaultRefreshToken
		}
		tok = &oauth2.Token{RefreshToken: rt, Expiry: time.Unix(1, 0)}
	}
	if err := store.Save(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	appSecret := sbCfg.AppSecret
	if appSecret == "" {
		appSecret = sandbox.DefaultAppSecret
	}

	cfg := service.Default()
	cfg.Kafka.Brokers = c.ListenAddrs()
	cfg.Kafka.Topics = []string{svcTopic}
	cfg.Kafka.Group = "pinsync-test"
	cfg.Pinterest.BaseURL = srv.URL
	cfg.Pinterest.AppID = sandbox.DefaultAppID
	cfg.Pinterest.AppSecret = appSecret
	cfg.Pinterest.AdAccountID = sandbox.DefaultAdAccountID
	cfg.Pinterest.TokenStore.Path = store.Path()
	cfg.Pinterest.WritesPerMinute = -1
	cfg.Pinterest.BreakerOpenTimeout = service.Duration(200 * time.Millisecond)
	cfg.Sync.FlushInterval = service.Duration(100 * time.Millisecond)
	cfg.Sync.ShutdownGrace = service.Duration(2 * time.Second)
	cfg.Sync.AudiencePollInterval = service.Duration(-1)
	cfg.HTTP.Listen = ""
	cfg.Log.Level = "debug"
	return &svcRig{t: t, cluster: c, brokers: c.ListenAddrs(), partitions: partitions, sb: sb, sbURL: srv.URL,
		captured: capt, store: store, cfg: cfg, logs: &lockedBuffer{}}
}

// start runs service.Run and waits until /readyz says ready.
func (r *svcRig) start() {
	r.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	opts := service.Options{Logger: service.NewLogger(r.logs, r.cfg.Log.Level), Registry: prometheus.NewRegistry(), Listener: ln}
	go func() { r.done <- service.Run(ctx, r.cfg, opts) }()
	r.t.Cleanup(func() { r.stop() })
	waitFor(r.t, 20*time.Second, "the service to be ready", func() bool {
		code, _ := r.get("/readyz")
		return code == http.StatusOK
	})
}

// stop cancels the service and returns what Run returned.
func (r *svcRig) stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		r.t.Error("service.Run did not return within 30s of cancellation")
		return nil
	}
}

// get fetches a path from the service's HTTP server.
func (r *svcRig) get(path string) (int, string) {
	r.t.Helper()
	resp, err := http.Get("http://" + r.addr + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (r *svcRig) kafka() *kgo.Client {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(cl.Close)
	return cl
}

// produce writes records to the partition of their key (murmur2), in order.
func (r *svcRig) produce(recs ...stream.Record) {
	r.t.Helper()
	cl := r.kafka()
	for _, rec := range recs {
		kr := &kgo.Record{Topic: svcTopic, Key: rec.Key, Value: rec.Value, Partition: stream.Partition(rec.Key, r.partitions)}
		if err := cl.ProduceSync(context.Background(), kr).FirstErr(); err != nil {
			r.t.Fatal(err)
		}
	}
}

// committed returns the group's committed offset of every partition.
func (r *svcRig) committed() map[int32]int64 {
	r.t.Helper()
	resp, err := kadm.NewClient(r.kafka()).FetchOffsets(context.Background(), r.cfg.Kafka.Group)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == svcTopic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// ends returns the end offset of every input partition that has records.
func (r *svcRig) ends() map[int32]int64 {
	r.t.Helper()
	return r.endsOf(svcTopic)
}

// endsOf returns the end offset of every partition of topic that has records.
func (r *svcRig) endsOf(topic string) map[int32]int64 {
	r.t.Helper()
	l, err := kadm.NewClient(r.kafka()).ListEndOffsets(context.Background(), topic)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			out[o.Partition] = o.Offset
		}
	})
	return out
}

// waitAllCommitted waits until every produced record is committed.
func (r *svcRig) waitAllCommitted() {
	r.t.Helper()
	want := r.ends()
	waitFor(r.t, 30*time.Second, "every record to be committed", func() bool {
		got := r.committed()
		for p, end := range want {
			if got[p] != end {
				return false
			}
		}
		return true
	})
}

// lists returns the sandbox's lists by name.
func (r *svcRig) lists() map[string]sandbox.ListState {
	out := map[string]sandbox.ListState{}
	for _, l := range r.sb.State().CustomerLists {
		out[l.Name] = l
	}
	return out
}

// waitFor polls cond until it holds, failing after within.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// segmentEntered is a Segment Engage "Audience Entered" track call for a
// profile with an email and, if not empty, an iOS advertising id.
// consent, when not nil, is context.consent.categoryPreferences.
func segmentEntered(profile, audience, email, idfa string, consent map[string]bool) stream.Record {
	ctx := map[string]any{"traits": map[string]any{"email": email}}
	if idfa != "" {
		ctx["device"] = map[string]any{"type": "ios", "advertisingId": idfa, "adTrackingEnabled": true}
	}
	if consent != nil {
		ctx["consent"] = map[string]any{"categoryPreferences": consent}
	}
	return segmentRecord(profile, map[string]any{
		"type": "track", "event": "Audience Entered", "userId": profile,
		"properties": map[string]any{"audience_key": audience},
		"context":    ctx,
	})
}

func segmentRecord(profile string, msg map[string]any) stream.Record {
	b, err := json.Marshal(msg)
	if err != nil {
		panic(err)
	}
	return stream.Record{Key: []byte(profile), Value: b}
}

// captured records every request the sandbox receives and every response
// body it sends, to inspect what pinsync put on the wire.
type captured struct {
	mu   sync.Mutex
	reqs []capturedRequest
}

type capturedRequest struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body, Response         []byte
}

func (c *captured) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &bodyRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		c.mu.Lock()
		c.reqs = append(c.reqs, capturedRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body, Response: rec.body.Bytes()})
		c.mu.Unlock()
	})
}

func (c *captured) all() []capturedRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]capturedRequest(nil), c.reqs...)
}

type bodyRecorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (b *bodyRecorder) Write(p []byte) (int, error) {
	b.body.Write(p)
	return b.ResponseWriter.Write(p)
}

func TestCredentialsRejectedStopsCommitsAndTellsToRunAuth(t *testing.T) {
	// Access tokens live 2 s, so the service refreshes while it runs.
	r := newSvcRig(t, 3, sandbox.Config{AccessTokenTTL: 2 * time.Second}, nil)
	recs, _, err := stream.Collect(stream.Config{Profiles: 60, Audiences: 2, Events: 300, Seed: 11, AudiencePrefix: "cred"})
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	r.produce(recs...)
	r.waitAllCommitted()
	before := r.committed()
	listsBefore := r.lists()
	if len(listsBefore) == 0 {
		t.Fatal("nothing was uploaded before the revocation")
	}

	r.revokeAll()
	// Every record below changes a list, so each partition it lands on
	// has an upload that cannot succeed.
	r.produce(lateEntries("cred-late", 12)...)

	var ready string
	waitFor(t, 20*time.Second, "/readyz to fail", func() bool {
		code, body := r.get("/readyz")
		ready = body
		return code == http.StatusServiceUnavailable && strings.Contains(body, "credentials rejected")
	})
	if !strings.Contains(ready, "pinsync auth") {
		t.Errorf("/readyz %q does not tell the operator to run `pinsync auth`", ready)
	}
	if _, metrics := r.get("/metrics"); !strings.Contains(metrics, "\npinsync_credentials_rejected 1\n") {
		t.Errorf("pinsync_credentials_rejected is not 1:\n%s", grepLines(metrics, "pinsync_credentials_rejected"))
	}
	if _, status := r.get("/status"); !strings.Contains(status, `"credentials_error"`) {
		t.Errorf("/status does not report the credentials error: %s", status)
	}

	// Shutting down is the last chance to commit: nothing after the
	// revocation may be committed, because none of it reached Pinterest.
	if err := r.stop(); err == nil {
		t.Error("service.Run returned nil although changes could not be uploaded")
	}
	after := r.committed()
	for p, off := range before {
		if after[p] != off {
			t.Errorf("partition %d: committed offset moved from %d to %d after the credentials were rejected", p, off, after[p])
		}
	}
	for name, l := range r.lists() {
		if len(l.Records) != len(listsBefore[name].Records) {
			t.Errorf("list %q changed from %d to %d records after the revocation", name, len(listsBefore[name].Records), len(l.Records))
		}
	}
	if _, ok := r.lists()["pinsync cred-late EMAIL"]; ok {
		t.Error("a list was created after the credentials were rejected")
	}

	logs := r.logs.String()
	if !strings.Contains(logs, "pinsync auth") {
		t.Errorf("the log does not tell the operator to run `pinsync auth`")
	}
	// Once rejected, the refresh token is not tried again and again:
	// Pinterest saw exactly one refused refresh.
	refused := 0
	for _, rq := range r.sb.Requests() {
		if rq.Operation == "oauth/token" && rq.Status == http.StatusBadRequest {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("Pinterest refused %d token requests, want exactly 1 (no retrying a dead refresh token)", refused)
	}
}

// revokeAll invalidates every token, as when the user removes the app,
// through the admin endpoint an operator of `pinsync sandbox` would call.
func (r *svcRig) revokeAll() {
	r.t.Helper()
	resp, err := http.Post(r.sbURL+"/sandbox/v1/revoke", "application/json",
		strings.NewReader(`{"access_tokens":true,"refresh_tokens":true}`))
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		r.t.Fatalf("revoke: %d", resp.StatusCode)
	}
}

// lateEntries are n new profiles entering audience, each with an email.
func lateEntries(audience string, n int) []stream.Record {
	var out []stream.Record
	for i := range n {
		p := audience + "-profile-" + strconv.Itoa(i)
		out = append(out, segmentEntered(p, audience, p+"@example.com", "", nil))
	}
	return out
}

func TestCredentialsRecoverWhenPinsyncAuthStoresNewToken(t *testing.T) {
	r := newSvcRig(t, 2, sandbox.Config{}, nil)
	r.start()
	r.produce(lateEntries("early", 5)...)
	r.waitAllCommitted()
	r.revokeAll()
	r.produce(lateEntries("late", 7)...)
	waitFor(t, 20*time.Second, "/readyz to fail", func() bool {
		code, _ := r.get("/readyz")
		return code == http.StatusServiceUnavailable
	})

	// The operator runs `pinsync auth` against the same token file while
	// the service keeps running.
	r.reauthorise()

	// Without a restart, the service picks the new token up on its next
	// upload attempt, uploads what waited and commits it.
	waitFor(t, 30*time.Second, "/readyz to recover", func() bool {
		code, _ := r.get("/readyz")
		return code == http.StatusOK
	})
	r.waitAllCommitted()
	if l := r.lists()["pinsync late EMAIL"]; len(l.Records) != 7 {
		t.Errorf("list of the late audience has %d records, want 7", len(l.Records))
	}
	if _, metrics := r.get("/metrics"); !strings.Contains(metrics, "\npinsync_credentials_rejected 0\n") {
		t.Errorf("pinsync_credentials_rejected is not back to 0:\n%s", grepLines(metrics, "pinsync_credentials_rejected"))
	}
	if err := r.stop(); err != nil {
		t.Errorf("service.Run: %v", err)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// hashHex is the hex SHA-256 pinsync sends for an identifier.
func hashHex(t *testing.T, typ ident.Type, v string) string {
	t.Helper()
	h, err := ident.OfString(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// TestCredentialsRefusedOnExistingListsDeadLetterNothing revokes every
// token while changes to lists that already exist keep arriving: the
// uploads fail on credentials, not on their records, so nothing is
// dead-lettered and nothing committed while refused; after `pinsync auth`
// into the same store, without a restart, the lists end exact.
func TestCredentialsRefusedOnExistingListsDeadLetterNothing(t *testing.T) {
	r := newSvcRig(t, 2, sandbox.Config{}, nil)
	r.start()
	early := lateEntries("existing", 6)
	r.produce(early...)
	r.waitAllCommitted()
	if l := r.lists()["pinsync existing EMAIL"]; len(l.Records) != 6 {
		t.Fatalf("the list holds %d records before the revocation, want 6", len(l.Records))
	}
	before := r.committed()

	r.revokeAll()
	var late []stream.Record
	for i := range 20 {
		p := "existing-late-" + strconv.Itoa(i)
		late = append(late, segmentEntered(p, "existing", p+"@example.com", "", nil))
	}
	r.produce(late...)
	waitFor(t, 20*time.Second, "/readyz to fail on credentials", func() bool {
		code, body := r.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "credentials rejected")
	})
	// Let the windows fail again and again: each failure was once a
	// reason to bisect the batch and dead-letter its records.
	failedOnce := uploadErrors(t, r)
	waitFor(t, 30*time.Second, "three more failed uploads", func() bool {
		return uploadErrors(t, r) >= failedOnce+3
	})
	if ends := r.endsOf(r.cfg.Kafka.Group + ".dlq"); len(ends) > 0 {
		t.Errorf("dead letters while the credentials were refused: %v", ends)
	}
	if _, metrics := r.get("/metrics"); strings.Contains(metrics, `pinsync_dead_letters_total{reason="pinterest_rejected"}`) {
		t.Errorf("records dead-lettered as refused by Pinterest:\n%s", grepLines(metrics, "pinsync_dead_letters_total"))
	}
	// Fetching has stopped: what arrives now is not read until the
	// credentials are accepted again.
	if _, metrics := r.get("/metrics"); !strings.Contains(metrics, "\npinsync_fetch_paused 1\n") {
		t.Errorf("fetching is not paused:\n%s", grepLines(metrics, "pinsync_fetch_paused"))
	}
	applied := metricOf(t, r, "pinsync_events_total", "")
	var later []stream.Record
	for i := range 5 {
		p := "existing-later-" + strconv.Itoa(i)
		later = append(later, segmentEntered(p, "existing", p+"@example.com", "", nil))
	}
	r.produce(later...)
	failed := uploadErrors(t, r)
	waitFor(t, 30*time.Second, "two more failed uploads", func() bool { return uploadErrors(t, r) >= failed+2 })
	if n := metricOf(t, r, "pinsync_events_total", ""); n != applied {
		t.Errorf("%v records read while the credentials were refused; want none", n-applied)
	}
	late = append(late, later...)
	for p, off := range r.committed() {
		if off != before[p] {
			t.Errorf("partition %d: committed offset moved from %d to %d while the credentials were refused", p, before[p], off)
		}
	}

	r.reauthorise()
	r.waitAllCommitted()
	l := r.lists()["pinsync existing EMAIL"]
	want := map[string]bool{}
	for _, rec := range append(early, late...) {
		want[hashHex(t, ident.Email, string(rec.Key)+"@example.com")] = true
	}
	if len(l.Records) != len(want) {
		t.Errorf("the list holds %d records after `pinsync auth`, want %d", len(l.Records), len(want))
	}
	for _, h := range l.Records {
		if !want[h] {
			t.Errorf("the list holds %s, which no profile entered", h)
		}
	}
	if ends := r.endsOf(r.cfg.Kafka.Group + ".dlq"); len(ends) > 0 {
		t.Errorf("dead letters after recovery: %v", ends)
	}
	if err := r.stop(); err != nil {
		t.Errorf("service.Run: %v", err)
	}
}

// uploadErrors is pinsync_uploads_total{outcome="error"}, summed.
func uploadErrors(t *testing.T, r *svcRig) float64 {
	t.Helper()
	return metricOf(t, r, "pinsync_uploads_total", `outcome="error"`)
}

// metricOf sums the series of a metric family of the service whose labels
// contain label (every series when label is "").
func metricOf(t *testing.T, r *svcRig, name, label string) float64 {
	t.Helper()
	v, err := metricWith(r.addr, name, label)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// reauthorise runs `pinsync auth` into the service's token store, as an
// operator would while the service runs, and completes the consent.
func (r *svcRig) reauthorise() {
	r.t.Helper()
	getenv := func(k string) string {
		return map[string]string{
			"PINSYNC_PINTEREST_APP_ID":           sandbox.DefaultAppID,
			"PINSYNC_PINTEREST_APP_SECRET":       sandbox.DefaultAppSecret,
			"PINSYNC_PINTEREST_TOKEN_STORE_PATH": r.store.Path(),
		}[k]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := startAuth(r.t, ctx, getenv, "--base-url", r.sbURL)
	resp, err := http.Get(run.consent)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if code := run.wait(r.t); code != 0 {
		r.t.Fatalf("pinsync auth: exit %d: %s", code, run.err.String())
	}
}
