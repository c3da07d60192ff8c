package member_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/member"
)

// recorder is a worker that keeps the offsets it is fed, and resumes its
// partition at once.
type recorder struct {
	p       int32
	mu      sync.Mutex
	offsets []int64
	member.Failing
	member.Halt
}

func (r *recorder) Feed(_ context.Context, recs []*kgo.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		r.offsets = append(r.offsets, rec.Offset)
	}
}

func (r *recorder) Committed() int64 { return -1 }

func (r *recorder) fed() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.offsets...)
}

// group is a kfake cluster with topic "t" of two partitions holding n
// records each.
func group(t *testing.T, n int) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for p := range int32(2) {
		for i := range n {
			cl.Produce(t.Context(), &kgo.Record{Topic: "t", Partition: p, Value: fmt.Append(nil, i)}, nil)
		}
	}
	if err := cl.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs()
}

// start runs a member of group "g" whose workers are recorders; revoked
// is called from its Handler.Revoked with the member, before the workers
// are let go.
func start(t *testing.T, brokers []string, revoked func(m *member.Member[*recorder], ws map[int32]*recorder)) *member.Member[*recorder] {
	t.Helper()
	var m *member.Member[*recorder]
	m = member.New(member.Config{Topic: "t", Group: "g", Deps: member.Deps{
		Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.SessionTimeout(6 * time.Second), kgo.RebalanceTimeout(6 * time.Second)},
	}}, member.Handler[*recorder]{
		Start: func(p int32) (*recorder, bool) {
			m.Client().ResumeFetchPartitions(map[string][]int32{"t": {p}})
			return &recorder{p: p}, true
		},
		Revoked: func(_ context.Context, ws map[int32]*recorder) { revoked(m, ws) },
		Lost:    func(map[int32]*recorder) {},
		Gate:    func(ctx context.Context) bool { return ctx.Err() == nil },
		Max:     func() int { return 7 },
	})
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEachPartitionsRecordsReachItsWorkerInOrder: every record of an
// assigned partition is fed to that partition's worker, once, in offset
// order.
func TestEachPartitionsRecordsReachItsWorkerInOrder(t *testing.T) {
	const n = 100
	m := start(t, group(t, n), func(*member.Member[*recorder], map[int32]*recorder) {})
	defer func() {
		m.StopPolling()
		m.Close()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ws := m.Workers()
		done := len(ws) == 2
		for _, w := range ws {
			done = done && len(w.fed()) >= n
		}
		if done {
			for p, w := range ws {
				got := w.fed()
				for i, o := range got {
					if o != int64(i) {
						t.Fatalf("partition %d: fed offsets %v, want 0..%d in order, once", p, got, n-1)
					}
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %d, not every record fed within 20s", len(ws))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestARevokedPartitionIsOwnedUntilItsRevokeReturns: while the stage
// finishes a revoked partition's work, Owner still finds its worker (a
// write guard asks it) and Owned no longer counts it; once the revoke
// returns the partition is gone.
func TestARevokedPartitionIsOwnedUntilItsRevokeReturns(t *testing.T) {
	brokers := group(t, 1)
	type seen struct {
		p                  int32
		owner, owned, left bool
	}
	during := make(chan seen, 2)
	first := start(t, brokers, func(m *member.Member[*recorder], ws map[int32]*recorder) {
		for p, w := range ws {
			o, ok := m.Owner(p)
			during <- seen{p: p, owner: ok && o == w, owned: m.Owned()[p], left: m.Leaving(p)}
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for len(first.Owned()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the first member never owned both partitions")
		}
		time.Sleep(10 * time.Millisecond)
	}
	second := start(t, brokers, func(*member.Member[*recorder], map[int32]*recorder) {})
	defer func() {
		for _, m := range []*member.Member[*recorder]{first, second} {
			m.StopPolling()
			m.Close()
		}
	}()
	var s seen
	select {
	case s = <-during:
	case <-time.After(20 * time.Second):
		t.Fatal("no partition revoked when a second member joined")
	}
	if !s.owner || s.owned || !s.left {
		t.Fatalf("during the revoke of partition %d: Owner finds its worker %v, Owned counts it %v, Leaving %v; want true, false, true",
			s.p, s.owner, s.owned, s.left)
	}
	for first.Leaving(s.p) {
		if time.Now().After(deadline) {
			t.Fatal("the revoked partition never left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := first.Owner(s.p); ok {
		t.Fatalf("partition %d still owned after its revoke returned", s.p)
	}
}

// startStatic runs a static member (instance id) of group "g" with a
// session timeout of five minutes; leave is its Deps.Leave.
func startStatic(t *testing.T, brokers []string, instance string, leave bool) *member.Member[*recorder] {
	t.Helper()
	var m *member.Member[*recorder]
	m = member.New(member.Config{Topic: "t", Group: "g", Deps: member.Deps{
		Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.InstanceID(instance),
			kgo.SessionTimeout(5 * time.Minute), kgo.RebalanceTimeout(2 * time.Minute)},
		Leave: func() bool { return leave },
	}}, member.Handler[*recorder]{
		Start: func(p int32) (*recorder, bool) {
			m.Client().ResumeFetchPartitions(map[string][]int32{"t": {p}})
			return &recorder{p: p}, true
		},
		Revoked: func(context.Context, map[int32]*recorder) {},
		Lost:    func(map[int32]*recorder) {},
		Gate:    func(ctx context.Context) bool { return ctx.Err() == nil },
		Max:     func() int { return 7 },
	})
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAStaticMemberLeavesOnlyWhenItStopsForGood: a static member whose
// Deps.Leave says no keeps its partition in the group when it closes (its
// instance id is still a member once Close returns); one whose Deps.Leave
// says yes leaves, and the other member owns its partition long before
// the session timeout (five minutes) could pass.
func TestAStaticMemberLeavesOnlyWhenItStopsForGood(t *testing.T) {
	brokers := group(t, 1)
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	members := func() []string {
		gs, err := kadm.NewClient(adm).DescribeGroups(t.Context(), "g")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range gs["g"].Members {
			if m.InstanceID != nil {
				ids = append(ids, *m.InstanceID)
			}
		}
		slices.Sort(ids)
		return ids
	}
	waitOwned := func(m *member.Member[*recorder], n int, what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for len(m.Owned()) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: owns %d partitions after 30s, want %d", what, len(m.Owned()), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	stays := startStatic(t, brokers, "stays", false)
	defer func() { stays.StopPolling(); stays.Close() }()
	waitOwned(stays, 2, "the first member alone")

	restarts := startStatic(t, brokers, "restarts", false)
	waitOwned(restarts, 1, "a second member")
	restarts.StopPolling()
	restarts.Close()
	if got := members(); !slices.Equal(got, []string{"restarts", "stays"}) {
		t.Fatalf("after a close without leaving, the group's members are %v; want the closed one kept", got)
	}
	// Back under its instance id, it is given its partition again.
	restarts = startStatic(t, brokers, "restarts", true)
	waitOwned(restarts, 1, "the member back under its instance id")

	restarts.StopPolling()
	restarts.Close()
	if got := members(); !slices.Equal(got, []string{"stays"}) {
		t.Errorf("after a close for good, the group's members are %v; want the closed one gone", got)
	}
	waitOwned(stays, 2, "the member left alone after the other stopped for good")
}
