package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
	"github.com/pinsync/pinsync/schemas/stream"
)

// The registry's credentials in these tests: the user in the file, the
// password from the environment only.
const (
	registryUser     = "pinsync-reader"
	registryPassword = "registry-s3cret-never-logged"
	registryPassEnv  = "PINSYNC_KAFKA_SCHEMA_REGISTRY_PASSWORD"
)

// formatRig is a fleet whose replicas read the input in one value format,
// and the schema registry (srfake, served over HTTP on a listener of the
// test's, behind basic auth) they reach.
type formatRig struct {
	*fleet
	fake *srfake.Registry
	sr   *sr.Client
	cfg  format.Config
	addr string // the registry's host:port
	url  string

	// The ways the registry goes down (see takeDown).
	mu      sync.Mutex
	srv     *http.Server
	answer  atomic.Bool   // answer 503 to every request
	hang    chan struct{} // non-nil: requests wait until it is closed
	stopped bool
}

func newFormatRig(t *testing.T, cfg format.Config) *formatRig {
	t.Helper()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(registryUser+":"+registryPassword))
	r := &formatRig{cfg: cfg, fake: srfake.NewRegistry(srfake.WithAuth(auth))}
	r.fake.Intercept(func(w http.ResponseWriter, req *http.Request) bool {
		if r.answer.Load() {
			http.Error(w, `{"error_code":50301,"message":"down for the test"}`, http.StatusServiceUnavailable)
			return true
		}
		r.mu.Lock()
		hang := r.hang
		r.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-req.Context().Done():
				return true
			}
		}
		return false
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.url = "http://" + r.addr
	r.serve(ln)
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.hang != nil {
			close(r.hang)
			r.hang = nil
		}
		r.srv.Close()
	})
	if r.sr, err = sr.NewClient(sr.URLs(r.url), sr.BasicAuth(registryUser, registryPassword)); err != nil {
		t.Fatal(err)
	}
	kafka := fmt.Sprintf("  input_format: {kind: %s", cfg.Kind)
	if cfg.SchemaID != "" {
		kafka += ", schema_id: " + cfg.SchemaID
	}
	kafka += "}\n"
	settings := fastSettings
	if cfg.Kind.Registered() {
		kafka += fmt.Sprintf("  schema_registry: {url: %q, username: %s, timeout: 2s}\n", r.url, registryUser)
		settings.env = []string{registryPassEnv + "=" + registryPassword}
	}
	settings.kafka = kafka
	r.fleet = newFleetWith(t, 3, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited}, settings)
	return r
}

func (r *formatRig) serve(ln net.Listener) {
	srv := &http.Server{Handler: r.fake.Handler(), ReadHeaderTimeout: 10 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
}

// The ways a registry is down.
const (
	down503     = "503"     // it answers 503
	downRefused = "refused" // nothing listens: connections are refused
	downHang    = "hang"    // it accepts and never answers (the client times out)
)

// takeDown makes the registry unavailable in the way how.
func (r *formatRig) takeDown(how string) {
	r.t.Helper()
	switch how {
	case down503:
		r.answer.Store(true)
	case downHang:
		r.mu.Lock()
		r.hang = make(chan struct{})
		r.mu.Unlock()
	case downRefused:
		r.mu.Lock()
		srv := r.srv
		r.stopped = true
		r.mu.Unlock()
		srv.Close()
	}
}

// bringUp makes the registry answer again, on the same address.
func (r *formatRig) bringUp() {
	r.t.Helper()
	r.answer.Store(false)
	r.mu.Lock()
	if r.hang != nil {
		close(r.hang)
		r.hang = nil
	}
	stopped := r.stopped
	r.stopped = false
	r.mu.Unlock()
	if stopped {
		ln, err := net.Listen("tcp", r.addr)
		if err != nil {
			r.t.Fatalf("listening again on the registry's address: %v", err)
		}
		r.serve(ln)
	}
}

// encode writes recs in the rig's format (registering the published
// schema first, for a registry format) and returns what was produced, and
// the plain records it stands for: a Segment record the native schemas
// cannot carry is left out of both.
func (r *formatRig) encode(recs []stream.Record, ceMode string) (out []*kgo.Record, plain []stream.Record) {
	r.t.Helper()
	enc, err := newRecordEncoder(r.t.Context(), r.cfg, r.sr, replicaTopic+"-value", ceMode)
	if err != nil {
		r.t.Fatal(err)
	}
	for i, rec := range recs {
		kr, ok := enc(i, rec)
		if !ok {
			continue
		}
		out = append(out, kr)
		plain = append(plain, rec)
	}
	return out, plain
}

// produceRecords writes records to their key's partition (murmur2), in
// order.
func (f *fleet) produceRecords(recs []*kgo.Record) {
	f.t.Helper()
	for _, r := range recs {
		r.Topic, r.Partition = replicaTopic, stream.Partition(r.Key, f.partitions)
		f.kcl.Produce(f.t.Context(), r, func(_ *kgo.Record, err error) {
			if err != nil {
				f.t.Errorf("produce: %v", err)
			}
		})
	}
	if err := f.kcl.Flush(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
}

// rejected counts the records the plain decoder refuses: the dead letters
// the stream must give in any format.
func rejected(t *testing.T, recs []stream.Record) int {
	t.Helper()
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var ev schemas.Event
	for _, r := range recs {
		if dec.Decode(r.Key, r.Value, &ev) != nil {
			n++
		}
	}
	return n
}

// TestEachInputFormatConvergesExactly: one stream, written as a Kafka
// Connect envelope, as CloudEvents in binary and in structured mode, and
// as registry records in Avro, Protobuf (its schema id in a header) and
// JSON Schema, is read by a pinsync process configured for that format
// (kafka.input_format, kafka.schema_registry with the password from the
// environment) and leaves the Pinterest lists exactly as the oracle of the
// plain stream says, with the same records dead-lettered; the registry's
// password appears in no log line.
func TestEachInputFormatConvergesExactly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    format.Config
		ceMode string
	}{
		{"connect-json", format.Config{Kind: format.ConnectJSON}, ""},
		{"cloudevents-binary", format.Config{Kind: format.CloudEvents}, "binary"},
		{"cloudevents-structured", format.Config{Kind: format.CloudEvents}, "structured"},
		{"avro", format.Config{Kind: format.Avro}, ""},
		{"protobuf", format.Config{Kind: format.Protobuf, SchemaID: format.SchemaIDInHeader}, ""},
		{"json-schema", format.Config{Kind: format.JSONSchema}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFormatRig(t, tc.cfg)
			scfg := stream.Config{Profiles: 300, Audiences: 4, Events: 3000, Seed: 23, MalformedFraction: 0.01,
				AudiencePrefix: "fmt-", MeanGap: time.Millisecond}
			if tc.cfg.Kind == format.Avro || tc.cfg.Kind == format.Protobuf {
				scfg.NativeFraction = 1 // the published native schemas carry native records only
			}
			recs, plain := r.encode(generate(t, scfg), tc.ceMode)
			want, _ := expected(t, plain)
			if len(want) == 0 || len(recs) < 1000 {
				t.Fatalf("the stream fills %d lists from %d records; the test proves little", len(want), len(recs))
			}
			rep := r.start(1)
			r.produceRecords(recs)
			r.waitLagZero(90 * time.Second)
			r.exact(want)
			wantDead := rejected(t, plain)
			if got := len(readTopic(t, r.brokers, replicaGroup+".dlq", true)); got != wantDead {
				t.Errorf("%d records dead-lettered, want %d (those the plain decoder refuses)", got, wantDead)
			}
			if n, err := metric(rep.addr, "pinsync_schema_registry_errors_total"); err != nil || n != 0 {
				t.Errorf("pinsync_schema_registry_errors_total = %v (%v), want 0", n, err)
			}
			r.stop(1)
			logs, err := os.ReadFile(filepath.Join(r.dir, "replica-1.log"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(logs), registryPassword) {
				t.Error("the registry's password is in the log")
			}
		})
	}
}

// avroV2 is the published native Avro schema under another doc: a second
// schema, with its own id, whose records read the same.
var avroV2 = strings.Replace(schemas.NativeEventAvro, `"doc": "pinsync's native event`, `"doc": "v2: pinsync's native event`, 1)

// TestRegistryDownPausesThenConverges: a schema registry that answers 503,
// refuses connections or does not answer (the client's timeout) when the
// stream turns to a schema the process has not read yet pauses
// every partition at its first record of it: /readyz says not ready and
// why, the metrics show it, nothing is dead-lettered and no offset is
// committed past the records read, and the lists stay exactly as the
// first half of the stream leaves them. Once the registry answers again,
// the process reads on and converges exactly on the whole stream. A record
// of a schema id the registry does not know (its 404) is then
// dead-lettered as unknown_schema, and the partition goes on.
func TestRegistryDownPausesThenConverges(t *testing.T) {
	for _, how := range []string{down503, downRefused, downHang} {
		t.Run(how, func(t *testing.T) { registryDownPausesThenConverges(t, how) })
	}
}

func registryDownPausesThenConverges(t *testing.T, how string) {
	r := newFormatRig(t, format.Config{Kind: format.Avro})
	scfg := stream.Config{Profiles: 300, Audiences: 4, Events: 3000, Seed: 29, MalformedFraction: stream.None,
		NativeFraction: 1, AudiencePrefix: "down-", MeanGap: time.Millisecond}
	gen := generate(t, scfg)
	half := len(gen) / 2
	first, plainFirst := r.encode(gen[:half], "")
	// The second half in a second schema, registered now: the process
	// asks for it when it reaches its first record.
	id2, _, err := r.fake.RegisterSchema(replicaTopic+"-value", sr.Schema{Schema: avroV2, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	body, err := avroBody()
	if err != nil {
		t.Fatal(err)
	}
	var wire sr.ConfluentHeader
	var second []*kgo.Record
	var plainSecond []stream.Record
	for _, rec := range gen[half:] {
		b, ok := body(rec.Value)
		if !ok {
			continue
		}
		v, _ := wire.AppendEncode(nil, id2, nil)
		second = append(second, &kgo.Record{Key: rec.Key, Value: append(v, b...)})
		plainSecond = append(plainSecond, rec)
	}
	wantFirst, _ := expected(t, plainFirst)
	wantAll, _ := expected(t, append(append([]stream.Record(nil), plainFirst...), plainSecond...))
	if stream.Diff(wantFirst, wantAll).OK() {
		t.Fatal("the second half changes no list; the test proves little")
	}

	rep := r.start(1)
	r.produceRecords(first)
	r.waitLagZero(90 * time.Second)
	r.exact(wantFirst)
	_, firstEnds, err := r.offsets(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	r.takeDown(how)
	r.produceRecords(second)
	_, ends, err := r.offsets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	grew := 0
	for p, end := range ends {
		if end > firstEnds[p] {
			grew++
		}
	}
	waitFor(t, 60*time.Second, "every partition the second half reached to wait for the registry", func() bool {
		n, err := metric(rep.addr, "pinsync_schema_registry_waiting_partitions")
		return err == nil && int(n) == grew
	})
	// Each partition asks three more times (0.25s, 0.5s, 1s apart): longer
	// than a commit interval, for a commit past the records read to show.
	waitFor(t, 60*time.Second, "the partitions to ask the registry again", func() bool {
		n, err := metric(rep.addr, "pinsync_schema_registry_errors_total")
		return err == nil && int(n) >= 4*grew
	})
	code, ready := httpGet(t, "http://"+rep.addr+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(ready, "schema registry unavailable") {
		t.Errorf("/readyz while the registry is down: %d %q, want 503 naming the registry", code, ready)
	}
	if _, st := httpGet(t, "http://"+rep.addr+"/status"); !strings.Contains(st, `"schema_registry_waits"`) {
		t.Errorf("/status does not show the partitions waiting for the registry:\n%s", st)
	}
	if _, page := httpGet(t, "http://"+rep.addr+"/"); !strings.Contains(page, `id="registry"`) {
		t.Error("the status page does not show the partitions waiting for the registry")
	}
	committed, _, err := r.offsets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range firstEnds {
		if committed[p] != end {
			t.Errorf("partition %d: committed %d while the registry is down, want %d (the end of what it could read)", p, committed[p], end)
		}
	}
	if dead := readTopic(t, r.brokers, replicaGroup+".dlq", false); len(dead) != 0 {
		t.Errorf("%d records dead-lettered while the registry is down, want none", len(dead))
	}
	r.exact(wantFirst)

	r.bringUp()
	r.waitLagZero(90 * time.Second)
	r.exact(wantAll)
	waitFor(t, 30*time.Second, "the process to be ready again", func() bool {
		code, _ := httpGet(t, "http://"+rep.addr+"/readyz")
		return code == http.StatusOK
	})
	if dead := readTopic(t, r.brokers, replicaGroup+".dlq", false); len(dead) != 0 {
		t.Errorf("%d records dead-lettered after the registry came back, want none", len(dead))
	}

	// A schema id the registry does not have: the record is at fault.
	// After it, its partition reads on: the last record of its profile
	// again (which changes nothing).
	last := second[len(second)-1]
	unknown, _ := wire.AppendEncode(nil, id2+1000, nil)
	r.produceRecords([]*kgo.Record{
		{Key: last.Key, Value: append(unknown, last.Value[5:]...)},
		{Key: last.Key, Value: last.Value},
	})
	r.waitLagZero(60 * time.Second)
	// Every record was applied once: none skipped where a partition waited.
	applied := 0
	for _, rec := range append(append(plainFirst, plainSecond...), plainSecond[len(plainSecond)-1]) {
		if rejected(t, []stream.Record{rec}) == 0 {
			applied++
		}
	}
	if n, err := metricWith(rep.addr, "pinsync_events_total", `outcome="applied"`); err != nil || int(n) != applied {
		t.Errorf("pinsync_events_total{outcome=\"applied\"} = %v (%v), want %d: each record applied once", n, err, applied)
	}
	dead := readTopic(t, r.brokers, replicaGroup+".dlq", true)
	if len(dead) != 1 || header(dead[0], "pinsync.reason") != schemas.ReasonUnknownSchema {
		reasons := []string{}
		for _, d := range dead {
			reasons = append(reasons, header(d, "pinsync.reason"))
		}
		t.Fatalf("dead letters %v, want one %s", reasons, schemas.ReasonUnknownSchema)
	}
	r.exact(wantAll)
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// httpGet fetches a URL and returns its status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
