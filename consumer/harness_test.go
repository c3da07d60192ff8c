package consumer_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

const topic = "events"

// rig is a Kafka broker (kfake over TCP) and the Pinterest sandbox (over
// HTTP) for end-to-end tests of the engine.
type rig struct {
	t          *testing.T
	cluster    *kfake.Cluster
	brokers    []string
	partitions int
	sb         *sandbox.Server
	sbURL      string
}

func newRig(t *testing.T, partitions int, sbCfg sandbox.Config) *rig {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if sbCfg.WritesPerMinute == 0 {
		sbCfg.WritesPerMinute = -1
	}
	if sbCfg.ReadsPerMinute == 0 {
		sbCfg.ReadsPerMinute = -1
	}
	sb, err := sandbox.New(sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	return &rig{t: t, cluster: c, brokers: c.ListenAddrs(), partitions: partitions, sb: sb, sbURL: srv.URL}
}

// produce writes records to the partition of their key (murmur2, as every
// well-configured producer does), in order.
func (r *rig) produce(recs []stream.Record) {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i := range recs {
		rec := &kgo.Record{Topic: topic, Key: recs[i].Key, Value: recs[i].Value,
			Partition: stream.Partition(recs[i].Key, r.partitions)}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				r.t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		r.t.Fatal(err)
	}
}

// client returns a Pinterest client for the sandbox with its own token
// store seeded with the sandbox's refresh token.
func (r *rig) client(reg prometheus.Registerer) (*pinterest.Client, *pinterest.FileTokenStore) {
	r.t.Helper()
	store := pinterest.NewFileTokenStore(filepath.Join(r.t.TempDir(), "token.json"))
	if err := store.Save(context.Background(), &oauth2.Token{RefreshToken: sandbox.DefaultRefreshToken, Expiry: time.Unix(1, 0)}); err != nil {
		r.t.Fatal(err)
	}
	pin, err := pinterest.New(pinterest.Config{
		BaseURL: r.sbURL, AppID: sandbox.DefaultAppID, AppSecret: sandbox.DefaultAppSecret,
		TokenStore: store, WritesPerMinute: -1, ReadsPerMinute: -1, Registerer: reg,
		MaxBackoff: 200 * time.Millisecond, BreakerOpenTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return pin, store
}

// engineConfig is a fast configuration for tests.
func engineConfig() consumer.Config {
	return consumer.Config{
		Topics: []string{topic}, Group: "pinsync-test", AdAccount: sandbox.DefaultAdAccountID,
		FlushInterval: 100 * time.Millisecond, MaxRecords: 500, CommitInterval: 50 * time.Millisecond,
		RevokeTimeout: 5 * time.Second, ShutdownGrace: 10 * time.Second, AudiencePollInterval: -1,
	}
}

// member is one running engine.
type member struct {
	cancel context.CancelFunc
	done   chan error
	eng    *consumer.Engine
	reg    *prometheus.Registry
}

func (r *rig) start(cfg consumer.Config, extra ...kgo.Opt) *member {
	r.t.Helper()
	return r.startWithLog(cfg, nil, extra...)
}

func (r *rig) startWithLog(cfg consumer.Config, log *slog.Logger, extra ...kgo.Opt) *member {
	r.t.Helper()
	reg := prometheus.NewRegistry()
	pin, _ := r.client(reg)
	if log == nil && os.Getenv("PINSYNC_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	eng, err := consumer.New(cfg, consumer.Deps{
		Kafka:     append([]kgo.Opt{kgo.SeedBrokers(r.brokers...)}, extra...),
		Pinterest: pin, Registerer: reg, Logger: log,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{cancel: cancel, done: make(chan error, 1), eng: eng, reg: reg}
	go func() { m.done <- eng.Run(ctx) }()
	r.t.Cleanup(func() { m.stop(r.t) })
	return m
}

func (m *member) stop(t *testing.T) {
	t.Helper()
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	if err := <-m.done; err != nil {
		t.Errorf("engine stopped with: %v", err)
	}
}

// listName is the default list name for an audience and type.
func listName(aud string, t ident.Type) string { return "pinsync " + aud + " " + t.String() }

var generation = regexp.MustCompile(` #[0-9]+$`)

// actual reads the sandbox's lists into oracle form.
func (r *rig) actual() map[stream.ListKey]stream.Set {
	r.t.Helper()
	out := map[stream.ListKey]stream.Set{}
	st := r.sb.State()
	// A rebuilt list is named with a generation suffix (" #2"); the one
	// an audience follows is the audience's list, the others are retired.
	followed := map[string]bool{}
	for _, a := range st.Audiences {
		followed[a.CustomerListID] = true
	}
	byName := map[string]sandbox.ListState{}
	for _, l := range st.CustomerLists {
		base := generation.ReplaceAllString(l.Name, "")
		if prev, dup := byName[base]; dup {
			switch {
			case followed[prev.ID] && !followed[l.ID]:
				continue
			case followed[l.ID] && !followed[prev.ID]:
			default:
				r.t.Errorf("two lists named %q", base)
			}
		}
		byName[base] = l
	}
	for name, l := range byName {
		var aud string
		var typ ident.Type
		for _, tt := range ident.Types {
			suffix := " " + tt.String()
			if len(name) > len("pinsync ")+len(suffix) && name[len(name)-len(suffix):] == suffix {
				aud, typ = name[len("pinsync "):len(name)-len(suffix)], tt
			}
		}
		set, err := stream.ParseSet(l.Records)
		if err != nil {
			r.t.Fatal(err)
		}
		if len(set) > 0 {
			out[stream.ListKey{Audience: aud, Type: typ}] = set
		}
	}
	return out
}

// oracle computes the expected lists from the records alone.
func oracle(t *testing.T, recs []stream.Record) (map[stream.ListKey]stream.Set, int) {
	t.Helper()
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	o, bad := stream.BuildOracle(recs, dec, 5)
	exp := o.Expected()
	for k, s := range exp {
		if len(s) == 0 {
			delete(exp, k)
		}
	}
	return exp, bad
}

// converge waits until the sandbox equals want (the engine flushes on its
// own timers), failing with the difference if it never does.
func (r *rig) converge(want map[stream.ListKey]stream.Set, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		d := stream.Diff(want, r.actual())
		if d.OK() {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("sandbox did not converge to the oracle within %s: %s", within, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// committed reads the group's committed offsets, summed.
func (r *rig) committed(group string) int64 {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	offs := fetchCommitted(r.t, cl, group)
	var sum int64
	for _, o := range offs {
		sum += o
	}
	return sum
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// topicID returns the id of topic name: requests of recent versions name
// topics by id, so a fault injected on a topic matches either.
func (r *rig) topicID(name string) [16]byte {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(context.Background(), name)
	if err == nil {
		err = details[name].Err
	}
	if err != nil {
		r.t.Fatalf("topic %s: %v", name, err)
	}
	return details[name].ID
}
