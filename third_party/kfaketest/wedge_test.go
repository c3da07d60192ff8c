package kfaketest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	topic      = "events"
	group      = "members"
	partitions = 12

	sessionTimeout   = 6 * time.Second
	rebalanceTimeout = 10 * time.Second
	// requestOverhead is the members' kgo.RequestTimeoutOverhead: a
	// JoinGroup the broker leaves unanswered times out on the client after
	// the rebalance timeout plus this, and the client sends it again.
	requestOverhead = time.Second
	// restartGap separates the starts of the two replacements.
	restartGap = 5 * time.Second
	// margin is what forming may take beyond the rebalance timeout: the
	// replies, the sync and the assignment, on a loaded machine.
	margin = 3 * time.Second
)

// Member processes are this test binary with memberEnv set to their role.
const (
	memberEnv   = "KFAKETEST_MEMBER"
	brokerEnv   = "KFAKETEST_BROKER"
	clientIDEnv = "KFAKETEST_CLIENT_ID"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(memberEnv); role != "" {
		os.Exit(runMember(role, os.Getenv(brokerEnv), os.Getenv(clientIDEnv)))
	}
	os.Exit(m.Run())
}

// runMember is one member process: "plain" polls, marks and autocommits;
// "busy" blocks rebalances while it works on a batch (BlockRebalanceOnPoll)
// and never finishes its first one: it keeps heartbeating but does not
// rejoin, as a member stuck in its revoke does. It prints "busy" once it
// has its batch. It exits when its stdin closes (the test is over).
func runMember(role, broker, clientID string) int {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	opts := []kgo.Opt{
		kgo.SeedBrokers(broker), kgo.ClientID(clientID),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(sessionTimeout), kgo.RebalanceTimeout(rebalanceTimeout),
		kgo.RequestTimeoutOverhead(requestOverhead),
		kgo.AutoCommitMarks(),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, func() string { return time.Now().Format("15:04:05.000 ") })),
	}
	if role == "busy" {
		opts = append(opts, kgo.BlockRebalanceOnPoll())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		fs := cl.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return 0
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) { cl.MarkCommitRecords(r); n++ })
		if role == "busy" && n > 0 {
			fmt.Println("busy")
			select {}
		}
	}
}

// TestGroupFormsWithinTheRebalanceTimeoutAfterKills runs three plain members
// and a busy one, kills two plain members with SIGKILL, restarts one at once
// and the other five seconds later, and waits for the group to form: Stable,
// its members exactly the three live plain ones, every partition assigned.
//
// Kafka's coordinator ends a rebalance at its deadline, one rebalance
// timeout after it began, without the members that did not rejoin (the busy
// one), and keeps the members that wait in JoinGroup meanwhile: the group
// forms within the rebalance timeout. The patched kfake does the same.
// Upstream kfake moves the deadline at every join, and expires members that
// wait in JoinGroup for longer than their session timeout without answering
// them; their clients time the join out and send it again, which moves the
// deadline again: the group does not form. The test expects exactly that of
// each broker; the day upstream fixes it, its case fails, and the patch can
// go (third_party/kfake/PATCH.md).
func TestGroupFormsWithinTheRebalanceTimeoutAfterKills(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, tc := range []struct {
		name   string
		broker func(*testing.T) string
		forms  bool
	}{
		{"patched", patchedBroker, true},
		{"upstream", upstreamBroker, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			took, formed := formsAfterKills(t, tc.broker(t))
			switch {
			case formed && tc.forms:
				t.Logf("formed %s after the kills (rebalance timeout %s)", took.Round(time.Millisecond), rebalanceTimeout)
			case formed:
				t.Errorf("the group formed %s after the kills: upstream kfake no longer wedges it; drop the patch (third_party/kfake/PATCH.md)", took.Round(time.Millisecond))
			case tc.forms:
				t.Errorf("the group did not form within %s of the kills", rebalanceTimeout+margin)
			default:
				t.Logf("the group did not form within %s of the kills, as expected of upstream kfake", rebalanceTimeout+margin)
			}
		})
	}
}

// formsAfterKills runs the scenario against the broker at addr and reports
// whether the group formed within rebalanceTimeout+margin of the kills, and
// when.
func formsAfterKills(t *testing.T, addr string) (time.Duration, bool) {
	f := newFleet(t, addr)
	for _, id := range []string{"m1", "m2", "m3"} {
		f.start("plain", id)
	}
	f.waitFormed(time.Minute, "m1", "m2", "m3")
	f.start("busy", "z")
	f.waitFormed(time.Minute, "m1", "m2", "m3", "z")
	// Records from now on: the busy member's batch must not hold up the
	// rebalance that lets it in.
	f.produce()
	f.waitBusy(time.Minute)

	killed := time.Now()
	f.kill("m1")
	f.kill("m2")
	f.start("plain", "f1")
	time.Sleep(restartGap)
	f.start("plain", "f2")
	for {
		if f.formed("m3", "f1", "f2") {
			return time.Since(killed), true
		}
		if time.Since(killed) > rebalanceTimeout+margin {
			t.Logf("group: %s", f.describe())
			return 0, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// patchedBroker starts the kfake of this module (the patched copy, through
// go.mod's replace) and returns its address.
func patchedBroker(t *testing.T) string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic),
		kfake.GroupMinSessionTimeout(sessionTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// upstreamBroker builds the module in upstream/ (kfake at the same version,
// unpatched), starts it and returns its address.
func upstreamBroker(t *testing.T) string {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "upstream")
	build := exec.Command(gobin, "build", "-o", bin, ".")
	build.Dir = "upstream"
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building upstream kfake: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-topic", topic, "-partitions", fmt.Sprint(partitions),
		"-min-session-timeout", sessionTimeout.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("upstream kfake printed no address: %v", err)
	}
	return strings.TrimSpace(addr)
}

// fleet is a broker's member processes and a client of the test's own.
type fleet struct {
	t    *testing.T
	addr string
	dir  string
	cl   *kgo.Client
	adm  *kadm.Client

	mu    sync.Mutex
	procs map[string]*member
	busy  chan struct{} // closed when the busy member has its batch
}

// member is a running member process; it exits when stdin closes.
type member struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

func newFleet(t *testing.T, addr string) *fleet {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f := &fleet{t: t, addr: addr, dir: t.TempDir(), cl: cl, adm: kadm.NewClient(cl),
		procs: map[string]*member{}, busy: make(chan struct{})}
	t.Cleanup(f.killAll)
	return f
}

// produce writes a record to each partition in turn, every 20ms, until the
// test ends: the busy member gets a batch whichever partitions it owns.
func (f *fleet) produce() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for i := int32(0); ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			f.cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: i % partitions, Value: []byte("x")}, nil)
		}
	}()
}

// start starts a member process with a role and a client id; its log goes
// to <client id>.log in the fleet's directory.
func (f *fleet) start(role, id string) {
	f.t.Helper()
	self, err := os.Executable()
	if err != nil {
		f.t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(f.dir, id+".log"))
	if err != nil {
		f.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), memberEnv+"="+role, brokerEnv+"="+f.addr, clientIDEnv+"="+id)
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "busy" {
				close(f.busy)
			}
		}
	}()
	f.mu.Lock()
	f.procs[id] = &member{cmd: cmd, stdin: stdin}
	f.mu.Unlock()
}

// kill kills a member process with SIGKILL and waits for it.
func (f *fleet) kill(id string) {
	f.mu.Lock()
	m := f.procs[id]
	delete(f.procs, id)
	f.mu.Unlock()
	if m != nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
		m.stdin.Close()
	}
}

func (f *fleet) killAll() {
	f.mu.Lock()
	ids := make([]string, 0, len(f.procs))
	for id := range f.procs {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		f.kill(id)
	}
}

func (f *fleet) waitBusy(within time.Duration) {
	f.t.Helper()
	select {
	case <-f.busy:
	case <-time.After(within):
		f.t.Fatalf("the busy member got no batch within %s", within)
	}
}

// waitFormed waits until the group has formed with exactly the members ids.
func (f *fleet) waitFormed(within time.Duration, ids ...string) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for !f.formed(ids...) {
		if time.Now().After(deadline) {
			f.t.Fatalf("the group did not form with %v within %s: %s", ids, within, f.describe())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// formed reports whether the group is Stable, its members exactly the
// client ids given, and every partition of the topic assigned to one of
// them.
func (f *fleet) formed(ids ...string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	groups, err := f.adm.DescribeGroups(ctx, group)
	if err != nil {
		return false
	}
	g := groups[group]
	if g.Err != nil || g.State != "Stable" {
		return false
	}
	var members []string
	var assigned []int32
	for _, m := range g.Members {
		members = append(members, m.ClientID)
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range a.Topics {
				if tp.Topic == topic {
					assigned = append(assigned, tp.Partitions...)
				}
			}
		}
	}
	slices.Sort(members)
	slices.Sort(assigned)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(members, want) || len(assigned) != partitions {
		return false
	}
	for i, p := range assigned {
		if p != int32(i) {
			return false
		}
	}
	return true
}

// describe summarises the group for a failure message.
func (f *fleet) describe() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	groups, err := f.adm.DescribeGroups(ctx, group)
	if err != nil {
		return err.Error()
	}
	g := groups[group]
	var b strings.Builder
	fmt.Fprintf(&b, "%s, members", g.State)
	for _, m := range g.Members {
		n := 0
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range a.Topics {
				n += len(tp.Partitions)
			}
		}
		fmt.Fprintf(&b, " %s (%d partitions)", m.ClientID, n)
	}
	return b.String()
}

// TestUpstreamIsTheVersionTheRootReplaces checks that upstream/ builds the
// kfake version the root go.mod requires (and replaces with the patched
// copy): the comparison above is of the same code but for the patch.
func TestUpstreamIsTheVersionTheRootReplaces(t *testing.T) {
	root, up := kfakeVersion(t, "../../go.mod"), kfakeVersion(t, "upstream/go.mod")
	if root != up {
		t.Errorf("the root go.mod requires kfake %s, upstream/go.mod %s: require the same version in both (and update third_party/kfake)", root, up)
	}
}

// kfakeVersion returns the kfake version a go.mod requires.
func kfakeVersion(t *testing.T, gomod string) string {
	t.Helper()
	b, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == "github.com/twmb/franz-go/pkg/kfake" {
			return f[1]
		}
	}
	t.Fatalf("%s requires no kfake", gomod)
	return ""
}
