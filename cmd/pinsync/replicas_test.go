package main

// Multi-process tests: real pinsync processes (built once from this
// package) against kfake over TCP and the Pinterest sandbox over HTTP,
// both in the test process. They check that replicas killed, restarted and
// scaled leave Pinterest exactly as the oracle says.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

const (
	replicaTopic = "events"
	replicaGroup = "pinsync-replicas"
	keyEnv       = "PINSYNC_PINTEREST_TOKEN_KEY"
)

// binary builds cmd/pinsync once per test process (without -race: the race
// detector applies to the test process only) and returns its path.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pinsync-replicas-")
	if err != nil {
		return "", err
	}
	binDir.Store(&dir)
	path := filepath.Join(dir, "pinsync")
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(gobin, "build", "-o", path, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return path, nil
})

// binDir is the directory of the built binary, once built.
var binDir atomic.Pointer[string]

func TestMain(m *testing.M) {
	code := m.Run()
	if d := binDir.Load(); d != nil {
		os.RemoveAll(*d)
	}
	os.Exit(code)
}

// fleet is kfake, the sandbox and a set of pinsync processes.
type fleet struct {
	t          testing.TB
	bin, dir   string
	brokers    []string
	partitions int
	sb         *sandbox.Server
	sbURL      string
	key        string // base64 token-store key
	kcl        *kgo.Client
	cluster    *kfake.Cluster

	// settings are the pinsync configuration lines the tests vary.
	settings fleetSettings

	mu    sync.Mutex
	procs map[int]*replica
}

// fleetSettings are the configuration values a fleet's replicas run with.
type fleetSettings struct {
	writesPerMinute string // pinterest.writes_per_minute
	maxRecords      string // pinterest.max_records
	flushInterval   string // sync.flush_interval
	// maxBufferedBytes is sync.max_buffered_bytes, rebuildMaxBytes
	// sync.rebuild_max_bytes; "" keeps the default.
	maxBufferedBytes, rebuildMaxBytes string
	// budgetLease is sync.budget_lease; "" keeps the default.
	budgetLease string
	// dynamic leaves kafka.instance_id out: the replicas are dynamic group
	// members, and a restarted one joins as a new member.
	dynamic bool
	// sessionTimeout and rebalanceTimeout are kafka.session_timeout and
	// kafka.rebalance_timeout; "" means 6s and 10s. revokeTimeout is
	// sync.revoke_timeout; "" means 4s (less than half the rebalance timeout).
	sessionTimeout, rebalanceTimeout, revokeTimeout string
	// events are sync.entered_event and sync.exited_event; "" keeps the
	// defaults.
	events [2]string
	// kafka are further lines of the kafka section (each indented by two
	// spaces), and env further KEY=value variables of the replicas.
	kafka string
	env   []string
}

// fastSettings flush often and spend without a budget, so that the tests
// that exercise faults run quickly.
var fastSettings = fleetSettings{writesPerMinute: "100000", maxRecords: "2000", flushInterval: "250ms"}

// replica is one running pinsync process.
type replica struct {
	id   int
	cmd  *exec.Cmd
	addr string        // its HTTP address
	done chan struct{} // closed when the process has exited
}

func newFleet(t testing.TB, partitions int) *fleet {
	t.Helper()
	return newFleetWith(t, partitions, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited}, fastSettings)
}

// newFleetWith is newFleet with a sandbox configuration (its budgets) and
// the replicas' settings.
func newFleetWith(t testing.TB, partitions int, sbCfg sandbox.Config, settings fleetSettings) *fleet {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), replicaTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// A rotated refresh token dies at once (no grace), so a replica that
	// used one another had rotated away would lose its credentials; access
	// tokens expire every 20s (unless sbCfg says otherwise), so the
	// replicas refresh throughout.
	sbCfg.RefreshGrace = -1
	if sbCfg.AccessTokenTTL == 0 {
		sbCfg.AccessTokenTTL = 20 * time.Second
	}
	sb, err := sandbox.New(sbCfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	kcl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kcl.Close)
	f := &fleet{t: t, bin: bin, dir: t.TempDir(), brokers: c.ListenAddrs(), partitions: partitions,
		sb: sb, sbURL: srv.URL, kcl: kcl, cluster: c, procs: map[int]*replica{}, settings: settings,
		key: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, control.KeySize))}
	// Seed the shared token store as `pinsync auth` would.
	ct, err := control.Open(t.Context(), control.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(f.brokers...)}, Topic: replicaGroup + ".control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	ks, err := ct.TokenStore(bytes.Repeat([]byte{0x5a}, control.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Save(t.Context(), &oauth2.Token{RefreshToken: sandbox.DefaultRefreshToken, Expiry: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.killAll)
	return f
}

func (f *fleet) config(id int) string {
	syncKeys := "" // sync keys beyond flush_interval
	if f.settings.maxBufferedBytes != "" {
		syncKeys = "\n  max_buffered_bytes: " + f.settings.maxBufferedBytes
	}
	if f.settings.rebuildMaxBytes != "" {
		syncKeys += "\n  rebuild_max_bytes: " + f.settings.rebuildMaxBytes
	}
	if f.settings.budgetLease != "" {
		syncKeys += "\n  budget_lease: " + f.settings.budgetLease
	}
	instance := fmt.Sprintf("\n  instance_id: replica-%d", id)
	if f.settings.dynamic {
		instance = ""
	}
	session, rebalance := cmp.Or(f.settings.sessionTimeout, "6s"), cmp.Or(f.settings.rebalanceTimeout, "10s")
	revoke := cmp.Or(f.settings.revokeTimeout, "4s")
	if f.settings.events[0] != "" {
		syncKeys += fmt.Sprintf("\n  entered_event: %q\n  exited_event: %q", f.settings.events[0], f.settings.events[1])
	}
	return fmt.Sprintf(`kafka:
  brokers: [%q]
  topics: [%s]
  group: %s%s
  session_timeout: %s
  rebalance_timeout: %s
%spinterest:
  base_url: %q
  ad_account_id: %q
  app_id: %q
  app_secret: %q
  token_store: {kind: kafka, key_env: %s}
  writes_per_minute: %s
  max_records: %s
  breaker_open_timeout: 500ms
sync:
  flush_interval: %s%s
  revoke_timeout: %s
  shutdown_grace: 5s
http:
  listen: 127.0.0.1:0
log:
  level: info
`, f.brokers[0], replicaTopic, replicaGroup, instance, session, rebalance, f.settings.kafka, f.sbURL, sandbox.DefaultAdAccountID,
		sandbox.DefaultAppID, sandbox.DefaultAppSecret, keyEnv,
		f.settings.writesPerMinute, f.settings.maxRecords, f.settings.flushInterval, syncKeys, revoke)
}

// start starts replica id, with env (NAME=value) added to its
// environment, and waits until its HTTP server listens.
func (f *fleet) start(id int, env ...string) *replica {
	f.t.Helper()
	cfgPath := filepath.Join(f.dir, fmt.Sprintf("replica-%d.yaml", id))
	if err := os.WriteFile(cfgPath, []byte(f.config(id)), 0o600); err != nil {
		f.t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(f.dir, fmt.Sprintf("replica-%d.log", id)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(f.bin, "run", "--config", cfgPath)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PINSYNC_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, keyEnv+"="+f.key)
	cmd.Env = append(cmd.Env, f.settings.env...)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	r := &replica{id: id, cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logf.Write(append(line, '\n'))
			if bytes.Contains(line, []byte(`"http server listening"`)) {
				var m struct{ Addr string }
				if json.Unmarshal(line, &m) == nil {
					addr <- m.Addr
				}
			}
		}
	}()
	go func() { cmd.Wait(); close(r.done) }()
	select {
	case r.addr = <-addr:
	case <-r.done:
		f.t.Fatalf("replica %d exited at start; log in %s", id, logf.Name())
	case <-time.After(30 * time.Second):
		f.t.Fatalf("replica %d did not listen within 30s", id)
	}
	f.mu.Lock()
	f.procs[id] = r
	f.mu.Unlock()
	return r
}

// kill9 kills replica id with SIGKILL and waits for it to exit.
func (f *fleet) kill9(id int) {
	f.mu.Lock()
	r := f.procs[id]
	delete(f.procs, id)
	f.mu.Unlock()
	if r == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.done
}

// stop stops replica id with SIGTERM (a clean shutdown) and waits.
func (f *fleet) stop(id int) {
	f.t.Helper()
	f.mu.Lock()
	r := f.procs[id]
	delete(f.procs, id)
	f.mu.Unlock()
	if r == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
		f.t.Errorf("replica %d did not stop within 30s of SIGTERM", id)
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		f.t.Errorf("replica %d exited with status %d after SIGTERM", id, code)
	}
}

func (f *fleet) killAll() {
	f.mu.Lock()
	ids := make([]int, 0, len(f.procs))
	for id := range f.procs {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		f.kill9(id)
	}
}

func (f *fleet) running() []*replica {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*replica, 0, len(f.procs))
	for _, r := range f.procs {
		out = append(out, r)
	}
	return out
}

// produce writes records to their key's partition, in order.
func (f *fleet) produce(recs []stream.Record) {
	f.t.Helper()
	ctx := f.t.Context()
	for i := range recs {
		rec := &kgo.Record{Topic: replicaTopic, Key: recs[i].Key, Value: recs[i].Value,
			Partition: stream.Partition(recs[i].Key, f.partitions)}
		f.kcl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				f.t.Errorf("produce: %v", err)
			}
		})
	}
	if err := f.kcl.Flush(ctx); err != nil {
		f.t.Fatal(err)
	}
}

// offsets returns the group's committed offsets and the topic's end offsets.
func (f *fleet) offsets(ctx context.Context) (committed, end map[int32]int64, err error) {
	adm := kadm.NewClient(f.kcl)
	committed, end = map[int32]int64{}, map[int32]int64{}
	resp, err := adm.FetchOffsets(ctx, replicaGroup)
	if err != nil {
		return nil, nil, err
	}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == replicaTopic && o.Err == nil {
			committed[o.Partition] = o.At
		}
	})
	ends, err := adm.ListEndOffsets(ctx, replicaTopic)
	if err != nil {
		return nil, nil, err
	}
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	return committed, end, nil
}

// waitLagZero waits until every partition's commit reaches its end.
func (f *fleet) waitLagZero(within time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, e, err := f.offsets(f.t.Context())
		if err == nil {
			lag := int64(0)
			for p, end := range e {
				lag += max(end-c[p], 0)
			}
			if lag == 0 {
				return
			}
			if time.Now().After(deadline) {
				f.t.Fatalf("lag still %d after %s (committed %v, end %v)", lag, within, c, e)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// actual reads the sandbox lists into oracle form, failing on a list name
// that exists twice.
func (f *fleet) actual() map[stream.ListKey]stream.Set {
	f.t.Helper()
	out := map[stream.ListKey]stream.Set{}
	for name, l := range currentLists(f.t, f.sb.State()) {
		var key stream.ListKey
		for _, tt := range ident.Types {
			if rest, ok := strings.CutSuffix(name, " "+tt.String()); ok {
				key = stream.ListKey{Audience: strings.TrimPrefix(rest, "pinsync "), Type: tt}
			}
		}
		set, err := stream.ParseSet(l.Records)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(set) > 0 {
			out[key] = set
		}
	}
	return out
}

var generationSuffix = regexp.MustCompile(` #[0-9]+$`)

// currentLists returns the lists of a sandbox state by name without
// generation suffix (a rebuilt list is named " #1"): of the lists of one
// name, the one an audience follows, the others being retired. Two lists of
// one name that no audience tells apart fail the test.
func currentLists(t testing.TB, st sandbox.State) map[string]sandbox.ListState {
	t.Helper()
	followed := map[string]bool{}
	for _, a := range st.Audiences {
		followed[a.CustomerListID] = true
	}
	out := map[string]sandbox.ListState{}
	for _, l := range st.CustomerLists {
		name := generationSuffix.ReplaceAllString(l.Name, "")
		prev, dup := out[name]
		switch {
		case !dup:
		case followed[prev.ID] && !followed[l.ID]:
			continue
		case followed[l.ID] && !followed[prev.ID]:
		default:
			t.Errorf("two lists named %q", name)
		}
		out[name] = l
	}
	return out
}

func expected(t testing.TB, recs []stream.Record) (map[stream.ListKey]stream.Set, *stream.Oracle) {
	t.Helper()
	return expectedWith(t, recs, schemas.DecoderConfig{})
}

// expectedWith is expected for a decoder configuration.
func expectedWith(t testing.TB, recs []stream.Record, cfg schemas.DecoderConfig) (map[stream.ListKey]stream.Set, *stream.Oracle) {
	t.Helper()
	dec, err := schemas.NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := stream.BuildOracle(recs, dec, 5)
	exp := o.Expected()
	for k, s := range exp {
		if len(s) == 0 {
			delete(exp, k)
		}
	}
	return exp, o
}

// exact checks, at lag 0, that the sandbox equals the oracle.
func (f *fleet) exact(want map[stream.ListKey]stream.Set) {
	f.t.Helper()
	if d := stream.Diff(want, f.actual()); !d.OK() {
		f.t.Fatalf("at lag 0 the sandbox differs from the oracle: %s", d)
	}
}

// uploads sums the records Pinterest accepted in list writes.
func (f *fleet) uploads() (records, calls int) {
	for _, l := range f.sb.State().CustomerLists {
		records += l.NumUploadedUserRecords + l.NumRemovedUserRecords
		calls += len(l.Calls)
	}
	return records, calls
}

// finalRecords is the records the lists hold: a lower bound of uploads.
func finalRecords(want map[stream.ListKey]stream.Set) int {
	n := 0
	for _, s := range want {
		n += len(s)
	}
	return n
}

// metric sums a metric's samples from a replica's /metrics.
func metric(addr, name string) (float64, error) { return metricWith(addr, name, "") }

// metricWith is metric over the series whose labels contain label.
func metricWith(addr, name, label string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, name) || len(line) == len(name) || (line[len(name)] != ' ' && line[len(name)] != '{') ||
			!strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func generate(t testing.TB, cfg stream.Config) []stream.Record {
	t.Helper()
	recs, _, err := stream.Collect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestChaosReplicasConvergeExactly runs 3 replicas through kill -9s,
// restarts, 5xx, latency and an access-token revocation, and checks at lag
// 0 that the sandbox equals the oracle. PINSYNC_CHAOS_EVENTS sets the
// stream length (default 200,000).
func TestChaosReplicasConvergeExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	events := envInt("PINSYNC_CHAOS_EVENTS", 200_000)
	f := newFleet(t, 12)
	recs := generate(t, stream.Config{Profiles: events / 8, Audiences: 240, Events: events, Seed: 42, MembershipRate: 0.05})
	want, _ := expected(t, recs)
	for id := range 3 {
		f.start(id)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	bursts := 8
	kills := 0
	var uncommitted int64 // records of the victims' partitions past their commit at the kills
	start := time.Now()
	for b := range bursts {
		lo, hi := b*len(recs)/bursts, (b+1)*len(recs)/bursts
		f.produce(recs[lo:hi])
		switch b {
		case 1:
			f.sb.SetFaults(sandbox.Faults{ErrorRate: 0.05, Latency: 5 * time.Millisecond})
		case 4:
			f.sb.Revoke(sandbox.Revocation{AccessTokens: true}) // every replica's access token dies at once
		case 6:
			f.sb.SetFaults(sandbox.Faults{})
		}
		victim := rng.IntN(3)
		time.Sleep(time.Duration(1000+rng.IntN(1500)) * time.Millisecond) // let it work before the kill
		owned := f.partitionsOf(t, fmt.Sprintf("replica-%d", victim))
		if c, e, err := f.offsets(t.Context()); err == nil {
			for _, p := range owned {
				uncommitted += e[p] - c[p]
			}
		}
		f.kill9(victim)
		kills++
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		f.start(victim)
	}
	f.sb.SetFaults(sandbox.Faults{})
	f.waitLagZero(3 * time.Minute)
	elapsed := time.Since(start)
	f.exact(want)
	uploaded, calls := f.uploads()
	final := finalRecords(want)
	st := f.sb.State()
	t.Logf("chaos: %d events, %d lists, %d kills (kill -9 + restart), %d records past the victims' commits at the kills, %s to lag 0",
		len(recs), len(want), kills, uncommitted, elapsed.Round(time.Millisecond))
	t.Logf("chaos: %d records uploaded in %d list writes for %d records in the final lists (%.2fx; replays and churn); %d requests, %d injected faults, by status %v",
		uploaded, calls, final, float64(uploaded)/float64(max(final, 1)), st.Requests.Total, st.Requests.Injected, st.Requests.ByStatus)
	if n := st.Requests.ByStatus["400"]; n > 0 {
		t.Errorf("Pinterest refused %d requests with 400 (a refresh token another replica had rotated away?)", n)
	}
	t.Logf("chaos: %d token refreshes by the 3 replicas sharing the kafka token store (access tokens live 20s, one revocation)", st.Requests.ByOperation["oauth/token"])
}

// TestScaleReplicasOneToFourAndBack scales 1 → 4 → 1 replicas mid-stream,
// measures the fail-over after a kill -9, and checks exact convergence.
func TestScaleReplicasOneToFourAndBack(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	events := envInt("PINSYNC_SCALE_EVENTS", 60_000)
	f := newFleet(t, 8)
	recs := generate(t, stream.Config{Profiles: events / 6, Audiences: 60, Events: events, Seed: 43})
	want, _ := expected(t, recs)
	third := len(recs) / 3
	f.start(0)
	f.produce(recs[:third])
	for id := 1; id < 4; id++ {
		f.start(id)
	}
	f.waitLagZero(2 * time.Minute)
	// The first replica may drain everything before the others have
	// joined: wait for the group to spread over all four.
	deadline := time.Now().Add(time.Minute)
	var owned []int32
	for {
		all := true
		for id := 0; id < 4; id++ {
			if len(f.partitionsOf(t, fmt.Sprintf("replica-%d", id))) == 0 {
				all = false
			}
		}
		owned = f.partitionsOf(t, "replica-3")
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the group did not spread over the four replicas within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Fail-over: kill -9 one of four while records keep arriving; its
	// partitions flow again once the broker expires it (session timeout)
	// and another replica restores their state.
	before, _, err := f.offsets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	f.kill9(3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	trickle := make(chan struct{})
	mid := recs[third : 2*third]
	go func() {
		defer close(trickle)
		for i := 0; i < len(mid) && ctx.Err() == nil; i += 500 {
			f.produce(mid[i:min(i+500, len(mid))])
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var failover time.Duration
	for failover == 0 {
		c, _, err := f.offsets(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		flowing := true
		for _, p := range owned {
			if c[p] <= before[p] {
				flowing = false
			}
		}
		if flowing {
			failover = time.Since(killed)
		} else if time.Since(killed) > 2*time.Minute {
			t.Fatalf("partitions %v of the killed replica did not flow again within 2m", owned)
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-trickle
	t.Logf("scale: fail-over of partitions %v after kill -9: %s (session_timeout 6s)", owned, failover.Round(time.Millisecond))

	// Back to one replica: clean shutdowns of the others.
	for id := 1; id < 3; id++ {
		f.stop(id)
	}
	f.produce(recs[2*third:])
	f.waitLagZero(2 * time.Minute)
	f.exact(want)
	uploaded, calls := f.uploads()
	t.Logf("scale: %d events, %d lists, %d records uploaded in %d writes for %d final records", len(recs), len(want), uploaded, calls, finalRecords(want))
}

// partitionsOf returns the input partitions the group assigns to a static
// member.
func (f *fleet) partitionsOf(t *testing.T, instance string) []int32 {
	t.Helper()
	groups, err := kadm.NewClient(f.kcl).DescribeGroups(t.Context(), replicaGroup)
	if err != nil {
		t.Fatal(err)
	}
	var out []int32
	for _, g := range groups {
		for _, m := range g.Members {
			if m.InstanceID == nil || *m.InstanceID != instance {
				continue
			}
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range a.Topics {
					if tp.Topic == replicaTopic {
						out = append(out, tp.Partitions...)
					}
				}
			}
		}
	}
	return out
}

// TestRestoreReplicasFromChangelog restarts every replica: their state
// comes back from the changelog, and events that change nothing upload
// nothing.
func TestRestoreReplicasFromChangelog(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	events := envInt("PINSYNC_RESTORE_EVENTS", 60_000)
	f := newFleet(t, 6)
	recs := generate(t, stream.Config{Profiles: events / 6, Audiences: 30, Events: events, Seed: 44})
	want, o := expected(t, recs)
	for id := range 3 {
		f.start(id)
	}
	f.produce(recs)
	f.waitLagZero(2 * time.Minute)
	f.exact(want)
	for id := range 3 {
		f.stop(id)
	}
	writes := f.sb.State().Requests.ByCategory[sandbox.CategoryAdsWrite]

	restart := time.Now()
	for id := range 3 {
		f.start(id)
	}
	var restored float64
	for {
		assigned, restoring := 0.0, 0.0
		restored = 0
		for _, r := range f.running() {
			a, err1 := metric(r.addr, "pinsync_assigned_partitions")
			rs, err2 := metric(r.addr, "pinsync_restoring_partitions")
			n, err3 := metric(r.addr, "pinsync_restored_profiles_total")
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatalf("metrics: %v %v %v", err1, err2, err3)
			}
			assigned, restoring, restored = assigned+a, restoring+rs, restored+n
		}
		// Every profile the oracle knows has at least one changelog record.
		if assigned == float64(f.partitions) && restoring == 0 && restored >= float64(o.Profiles()) {
			break
		}
		if time.Since(restart) > time.Minute {
			t.Fatalf("state not restored within 1m: %v partitions assigned, %v restoring, %v profiles restored, want at least the oracle's %d",
				assigned, restoring, restored, o.Profiles())
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(restart)
	t.Logf("restore: %v profiles in %s from process start (%.0f profiles/s)", restored, took.Round(time.Millisecond), restored/took.Seconds())

	// Replay each profile's last record: it restates the state and must
	// not upload anything.
	last := map[string]stream.Record{}
	for _, r := range recs {
		last[string(r.Key)] = r
	}
	replay := make([]stream.Record, 0, len(last))
	for _, r := range last {
		replay = append(replay, r)
	}
	f.produce(replay)
	f.waitLagZero(time.Minute)
	f.exact(want)
	if got := f.sb.State().Requests.ByCategory[sandbox.CategoryAdsWrite]; got != writes {
		t.Errorf("replaying %d unchanged profiles made %d write calls, want 0", len(replay), got-writes)
	}
}
