package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestUpgradeDropsIDFAsHashedInLowerCase: a deployment upgraded from a
// version that hashed IDFAs from their lower-case form (which Pinterest
// matches nobody by) drops those IDFAs from its state and removes them from
// the lists; from then on the IDFA lists gain each IDFA, hashed as
// Pinterest matches it, when an event carries it again, and no list ever
// receives a lower-case IDFA hash again, not even one the earlier version
// had written to the changes topic and not uploaded.
//
// The earlier version's state is made as it made it: the first half of a
// stream whose IDFAs come hashed from their lower case (what the earlier
// version sent), its changelog records rewritten without the mark of the
// identifier rules, as that version wrote them.
func TestUpgradeDropsIDFAsHashedInLowerCase(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	cfg := stream.Config{Profiles: 600, Audiences: 4, Events: 8000, Seed: 21, MalformedFraction: stream.None}
	lowerCfg := cfg
	lowerCfg.PreHashed = stream.PreHashIDFALowercase
	lower, _, err := stream.Collect(lowerCfg)
	if err != nil {
		t.Fatal(err)
	}
	plain, _, err := stream.Collect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	half := len(plain) / 2
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// Every lower-case IDFA hash of the stream: none may be added again.
	lowerIDFA := map[string]bool{}
	var ev schemas.Event
	for _, rec := range lower {
		if dec.Decode(rec.Key, rec.Value, &ev) == nil {
			for _, id := range append(ev.Identifiers, ev.Drop...) {
				if id.Type == ident.IDFA {
					lowerIDFA[id.Hash.String()] = true
				}
			}
		}
	}
	before, _ := stream.BuildOracle(lower[:half], dec, 5)

	// The earlier version at work.
	r.produce(lower[:half])
	ecfg := engineConfig()
	m := r.start(ecfg)
	want := before.Expected()
	r.converge(want, 60*time.Second)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(ecfg.Group) == int64(half) })
	m.stop(t)
	idfaLists := 0
	for k, set := range r.actual() {
		if k.Type != ident.IDFA {
			continue
		}
		idfaLists++
		for h := range set {
			if !lowerIDFA[h.String()] {
				t.Fatalf("%s holds %s, not a lower-case hash: the earlier version is not what the test means", k, h)
			}
		}
	}
	if idfaLists == 0 {
		t.Fatal("no IDFA list after the first half")
	}
	unmarkChangelog(t, r, ecfg.Group+".changelog")
	pending := writeLegacyIDFAAdd(t, r, ecfg.Group+".changes", before)
	lowerIDFA[pending] = true

	// Every add that reaches Pinterest from now on is checked.
	var mu sync.Mutex
	var sentLower []string
	observed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		var b struct {
			Records       string `json:"records"`
			OperationType string `json:"operation_type"`
		}
		if strings.Contains(req.URL.Path, "/customer_lists") && json.Unmarshal(body, &b) == nil && b.OperationType != "REMOVE" {
			for _, rec := range strings.Split(b.Records, ",") {
				if lowerIDFA[rec] {
					mu.Lock()
					sentLower = append(sentLower, rec)
					mu.Unlock()
				}
			}
		}
		r.sb.ServeHTTP(w, req)
	}))
	defer observed.Close()
	r.sbURL = observed.URL

	// The upgraded version reads the rest of the stream, its IDFAs in
	// plaintext as the platform sends them.
	after := stream.NewOracle(5)
	for _, rec := range lower[:half] {
		if err := after.ApplyRecord(dec, &ev, rec.Key, rec.Value); err != nil {
			t.Fatal(err)
		}
	}
	after.DropType(ident.IDFA)
	for _, rec := range plain[half:] {
		if err := after.ApplyRecord(dec, &ev, rec.Key, rec.Value); err != nil {
			t.Fatal(err)
		}
	}
	want = after.Expected()
	for k, s := range want {
		if len(s) == 0 {
			delete(want, k)
		}
	}
	m = r.start(ecfg)
	r.produce(plain[half:])
	r.converge(want, 60*time.Second)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed(ecfg.Group) == int64(len(plain)) })
	if got := counterValue(t, m.reg, "pinsync_changes_dropped_total", "reason", "legacy_idfa"); got < 1 {
		t.Errorf("pinsync_changes_dropped_total{reason=legacy_idfa} = %v: the pending lower-case add was not dropped", got)
	}
	m.stop(t)
	mu.Lock()
	defer mu.Unlock()
	if len(sentLower) > 0 {
		t.Fatalf("after the upgrade %d lower-case IDFA hashes were added to lists, e.g. %s", len(sentLower), sentLower[0])
	}
	regained := 0
	for k, set := range want {
		if k.Type == ident.IDFA {
			regained += len(set)
		}
	}
	if regained == 0 {
		t.Fatal("no IDFA list regained a member: the test proves nothing about the new hashes")
	}
}

// unmarkChangelog rewrites every profile record of the changelog without
// its last byte, the mark of the identifier rules (1), as a version before
// them wrote it.
func unmarkChangelog(t *testing.T, r *rig, changelog string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.ConsumeTopics(changelog),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, changelog)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	latest := map[string]*kgo.Record{}
	read := map[int32]int64{}
	done := func() bool {
		for p, end := range ends {
			if read[p] < end {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", changelog, ctx.Err())
		}
		fs.EachRecord(func(rec *kgo.Record) {
			read[rec.Partition] = rec.Offset + 1
			if !rec.Attrs.IsControl() && strings.HasPrefix(string(rec.Key), topic+"\x02") {
				latest[string(rec.Key)] = rec
			}
		})
	}
	n := 0
	for _, rec := range latest {
		if rec.Value == nil {
			continue
		}
		if rec.Value[len(rec.Value)-1] != 1 {
			t.Fatalf("a profile record does not end with the mark of the identifier rules: %x", rec.Value)
		}
		out := &kgo.Record{Topic: changelog, Partition: rec.Partition, Key: rec.Key, Value: rec.Value[:len(rec.Value)-1]}
		if err := cl.ProduceSync(ctx, out).FirstErr(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no profile record in the changelog")
	}
}

// writeLegacyIDFAAdd writes to the changes topic, as the earlier version
// would have and before anything reads it, an add of a lower-case IDFA
// hash to an IDFA list that is not in it: the upgraded list stage must
// never upload it. It returns the hash.
func writeLegacyIDFAAdd(t *testing.T, r *rig, changesTopic string, o *stream.Oracle) string {
	t.Helper()
	var l changes.List
	for k := range o.Expected() {
		if k.Type == ident.IDFA {
			l = changes.List{Audience: k.Audience, Type: ident.IDFA}
			break
		}
	}
	h, _ := ident.ParseHex(strings.Repeat("5a", 32))
	key := l.AppendKey(nil)
	v := changes.AppendValue(nil, changes.Header{AdAccount: sandbox.DefaultAdAccountID},
		[]changes.Change{{Hash: h, Op: changes.Add, Vouched: true, Legacy: true}})
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: changesTopic, Partition: changes.NewPartitioner(r.partitions).Partition(key), Key: key, Value: v}
	if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return h.String()
}
