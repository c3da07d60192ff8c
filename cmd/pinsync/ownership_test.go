package main

// Multi-process tests of the two stages: one owner per list, one budget
// for the app, and fencing of a replica that wakes after its partitions
// moved.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// producePaced writes records as they would arrive live: record i at the
// call's start plus its event time's distance from the first record's.
func (f *fleet) producePaced(ctx context.Context, recs []stream.Record) {
	f.t.Helper()
	if len(recs) == 0 {
		return
	}
	start, t0 := time.Now(), recs[0].Timestamp
	for i := range recs {
		if w := time.Until(start.Add(recs[i].Timestamp.Sub(t0))); w > time.Millisecond {
			select {
			case <-time.After(w):
			case <-ctx.Done():
				return
			}
		}
		rec := &kgo.Record{Topic: replicaTopic, Key: recs[i].Key, Value: recs[i].Value,
			Partition: stream.Partition(recs[i].Key, f.partitions)}
		f.kcl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil && ctx.Err() == nil {
				f.t.Errorf("produce: %v", err)
			}
		})
	}
	if err := f.kcl.Flush(ctx); err != nil && ctx.Err() == nil {
		f.t.Errorf("produce: %v", err)
	}
}

// assignments returns, per member instance id, the partitions a group
// assigns it.
func (f *fleet) assignments(group string) map[string][]int32 {
	f.t.Helper()
	groups, err := kadm.NewClient(f.kcl).DescribeGroups(f.t.Context(), group)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string][]int32{}
	for _, g := range groups {
		for _, m := range g.Members {
			if m.InstanceID == nil {
				continue
			}
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range a.Topics {
					out[*m.InstanceID] = append(out[*m.InstanceID], tp.Partitions...)
				}
			}
		}
	}
	return out
}

// waitSpread waits until each of the given instances owns partitions of
// both stages.
func (f *fleet) waitSpread(within time.Duration, instances ...string) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok := true
		for _, group := range []string{replicaGroup, replicaGroup + ".lists"} {
			a := f.assignments(group)
			for _, in := range instances {
				if len(a[in]) == 0 {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the groups did not spread over %v within %s", instances, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writes sums the sandbox's list writes (creates and updates carrying
// records), its ads_write requests and its 429 answers.
func (f *fleet) writes() (calls, requests, limited int) {
	st := f.sb.State()
	for _, l := range st.CustomerLists {
		calls += len(l.Calls)
	}
	return calls, st.Requests.ByCategory[sandbox.CategoryAdsWrite], st.Requests.ByStatus["429"]
}

// TestReplicasShareTheWriteBudget syncs one live stream with one replica
// and, on a cluster and sandbox of its own, with three, at the sandbox's
// default budget (400 writes a minute for the app and user, enforced per
// fixed minute) and pinsync's default budget and flush interval. Neither
// run gets a 429; each makes at most 1.05 times the minimum of list writes
// for the stream and the flush interval (an uploader that knows the
// stream and waits no longer than the flush interval); three replicas make
// at most 1.15 times the write requests of one. Times are the bench's.
func TestReplicasShareTheWriteBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	events := envInt("PINSYNC_BUDGET_EVENTS", 60_000)
	recs := generate(t, stream.Config{Profiles: 20_000, Audiences: 60, Events: events, Seed: 45, MembershipRate: 0.02,
		Start: time.Unix(1_800_000_000, 0), MeanGap: 40 * time.Second / time.Duration(events)})
	want, _ := expected(t, recs)
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	minCalls, _, _ := stream.MinCalls(recs, dec, 5000, 10*time.Second)
	settings := fleetSettings{writesPerMinute: "400", maxRecords: "5000", flushInterval: "10s"}

	type result struct{ calls, requests, limited int }
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i, n := range []int{1, 3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
				f := newFleetWith(t, 6, sandbox.Config{}, settings)
				var ids []string
				for id := range n {
					f.start(id)
					ids = append(ids, fmt.Sprintf("replica-%d", id))
				}
				f.waitSpread(time.Minute, ids...)
				f.producePaced(t.Context(), recs)
				f.waitLagZero(4 * time.Minute)
				f.exact(want)
				c, r, l := f.writes()
				results[i] = result{c, r, l}
				t.Logf("%d replicas: %d list writes (minimum %d, %.2fx), %d write requests, %d 429s",
					n, c, minCalls, float64(c)/float64(minCalls), r, l)
			})
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	one, three := results[0], results[1]
	for n, r := range map[int]result{1: one, 3: three} {
		if r.limited != 0 {
			t.Errorf("%d replicas: Pinterest answered 429 %d times", n, r.limited)
		}
		if float64(r.calls) > 1.05*float64(minCalls) {
			t.Errorf("%d replicas: %d list writes, above 1.05x the minimum %d", n, r.calls, minCalls)
		}
	}
	if float64(three.requests) > 1.15*float64(one.requests) {
		t.Errorf("three replicas made %d write requests, above 1.15x the %d of one", three.requests, one.requests)
	}
}

// TestPausedReplicaWakesFencedOut freezes one of three replicas (SIGSTOP)
// while its windows hold changes, until its session expired and its
// partitions moved; kills another (kill -9); then wakes the first. The
// lists end exact, the woken replica sends no write to Pinterest before it
// has rejoined (its windows' flush times passed long before), and the
// topics hold no change, state or dead letter of its fenced producers
// after it woke.
func TestPausedReplicaWakesFencedOut(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	settings := fastSettings
	settings.flushInterval = "2s" // the windows hold changes when it freezes
	// Access tokens outlive the test: the woken replica's stale flushes
	// would go out at once, without waiting for a token refresh.
	f := newFleetWith(t, 6, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited,
		AccessTokenTTL: time.Hour}, settings)
	events := envInt("PINSYNC_ZOMBIE_EVENTS", 60_000)
	recs := generate(t, stream.Config{Profiles: events / 6, Audiences: 20, Events: events, Seed: 46,
		Start: time.Unix(1_800_000_000, 0), MeanGap: 40 * time.Second / time.Duration(events)})
	want, _ := expected(t, recs)
	for id := range 3 {
		f.start(id)
	}
	f.waitSpread(time.Minute, "replica-0", "replica-1", "replica-2")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	produced := make(chan struct{})
	go func() { defer close(produced); f.producePaced(ctx, recs) }()

	const zombie, victim = "replica-1", 2
	time.Sleep(6 * time.Second)
	f.mu.Lock()
	z := f.procs[1]
	f.mu.Unlock()
	if err := z.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Its session expires (6s) and its partitions move to the others.
	deadline := time.Now().Add(time.Minute)
	for {
		gone := true
		for _, group := range []string{replicaGroup, replicaGroup + ".lists"} {
			a := f.assignments(group)
			n := 0
			for in, ps := range a {
				if in == zombie {
					gone = false
				}
				n += len(ps)
			}
			if n != f.partitions {
				gone = false
			}
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			z.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatal("the frozen replica's partitions did not move within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("replica 1 frozen %s until its partitions moved", time.Since(stopped).Round(time.Millisecond))
	f.kill9(victim)
	// A node that wakes from a pause often finds its network slow: its
	// heartbeats take a second to be answered, so franz-go learns late
	// that the coordinator expired it, and its stale windows come due
	// first.
	slowHeartbeats := time.Now().Add(2 * time.Second)
	f.cluster.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		if hb := req.(*kmsg.HeartbeatRequest); hb.InstanceID != nil && *hb.InstanceID == zombie && time.Now().Before(slowHeartbeats) {
			f.cluster.SleepControl(func() { time.Sleep(time.Second) })
		}
		return nil, nil, false
	})
	woke := time.Now()
	if err := z.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// When the coordinator counts it again, with partitions of its own.
	rejoined := make(chan time.Time, 1)
	go func() {
		defer close(rejoined)
		for time.Since(woke) < 20*time.Second {
			if len(f.assignments(replicaGroup + ".lists")[zombie]) > 0 {
				rejoined <- time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	f.start(victim)
	<-produced
	f.waitLagZero(3 * time.Minute)
	f.exact(want)

	// Pinterest: no write by the woken replica before the coordinator
	// gave it partitions again; its stale windows were due the moment it
	// woke.
	back, ok := <-rejoined
	if !ok {
		back = woke.Add(time.Hour)
		t.Log("the woken replica did not own list partitions again within 20s")
	} else {
		t.Logf("the woken replica owned list partitions again %s after it woke", back.Sub(woke).Round(time.Millisecond))
	}
	var early []string
	writes := 0
	for _, r := range f.sb.Requests() {
		if r.Category != sandbox.CategoryAdsWrite || !strings.Contains(r.UserAgent, "instance "+zombie+")") || r.Time.Before(woke) {
			continue
		}
		writes++
		if r.Time.Before(back) {
			early = append(early, fmt.Sprintf("%s %s at +%s", r.Method, r.Path, r.Time.Sub(woke).Round(time.Millisecond)))
		}
	}
	if len(early) > 0 {
		t.Errorf("the woken replica wrote to Pinterest before it owned anything again: %v", early)
	} else {
		t.Logf("the woken replica made %d writes after it woke, all after it rejoined", writes)
	}

	// Kafka: the producers it held when it froze were fenced by the new
	// owners; nothing of theirs became visible after it woke.
	fencedEpochs := f.producerEpochsBefore(replicaGroup+".changelog", stopped)
	for _, topic := range []string{replicaGroup + ".changes", replicaGroup + ".changelog", replicaGroup + ".dlq"} {
		for _, r := range f.committedRecords(topic) {
			if e, ok := fencedEpochs[r.ProducerID]; ok && r.ProducerEpoch <= e && !r.Timestamp.Before(woke) {
				t.Errorf("%s/%d offset %d: written at +%s by a producer fenced while its replica was frozen", topic, r.Partition, r.Offset,
					r.Timestamp.Sub(woke).Round(time.Millisecond))
			}
		}
	}
	if len(fencedEpochs) == 0 {
		t.Error("found no producer of the frozen replica to check")
	}
}

// producerEpochsBefore returns, per producer id, the newest epoch that
// wrote to topic before t: the producers the partitions' owners held then.
func (f *fleet) producerEpochsBefore(topic string, t time.Time) map[int64]int16 {
	out := map[int64]int16{}
	for _, r := range readTopic(f.t, f.brokers, topic, false) {
		if r.Timestamp.Before(t) && r.ProducerEpoch >= out[r.ProducerID] {
			out[r.ProducerID] = r.ProducerEpoch
		}
	}
	return out
}

// committedRecords returns the committed records of topic.
func (f *fleet) committedRecords(topic string) []*kgo.Record {
	return readTopic(f.t, f.brokers, topic, true)
}

// readTopic reads topic to its end, committed records only when
// committed, every record otherwise; control records are left out.
func readTopic(t testing.TB, brokers []string, topic string, committed bool) []*kgo.Record {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	starts, err := kadm.NewClient(adm).ListStartOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	starts.Each(func(o kadm.ListedOffset) {
		if end, ok := left[o.Partition]; ok && o.Offset >= end {
			delete(left, o.Partition)
		}
	})
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords()}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %d records read, partitions %v not read to their end", topic, len(out), left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
	}
	return out
}
