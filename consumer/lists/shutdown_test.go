package lists

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/member"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// TestCloseFlushesWhatTheWindowsHold: Close uploads every change its
// windows hold, however long their flush interval, and commits them.
func TestCloseFlushesWhatTheWindowsHold(t *testing.T) {
	brokers := changesCluster(t, 8, 100)
	var uploaded atomic.Int32
	pin := pinFunc(func(_ context.Context, _ pinterest.Operation, recs []ident.Hash) error {
		uploaded.Add(int32(len(recs)))
		return nil
	})
	s := startStage(t, brokers, resolved{pin}, time.Hour)
	waitBuffered(t, s, 800)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := uploaded.Load(); n != 800 {
		t.Fatalf("%d of 800 records uploaded by Close", n)
	}
	for _, p := range s.tr.Partitions() {
		if open, sealed := s.tr.Pending(p); open != 0 || len(sealed) != 0 || p.Committed() <= 0 {
			t.Fatalf("partition %d after Close: pending %d and %v, committed %d; want everything committed", p.Partition, open, sealed, p.Committed())
		}
	}
}

// TestDrainReadsToTheEndThenFlushesOncePerList: changes committed just
// before the shutdown (the profile stage's last transactions) are read
// before the windows flush, so each list is written once, not once per
// batch arriving after the flush began.
func TestDrainReadsToTheEndThenFlushesOncePerList(t *testing.T) {
	c := changesKafka(t, 4, 100)
	brokers := c.ListenAddrs()
	var mu sync.Mutex
	calls := map[int]int{} // records per call → calls
	pin := pinFunc(func(_ context.Context, _ pinterest.Operation, recs []ident.Hash) error {
		mu.Lock()
		calls[len(recs)]++
		mu.Unlock()
		return nil
	})
	s := startStage(t, brokers, resolved{pin}, time.Hour)
	waitBuffered(t, s, 400)
	// The last changes arrive late: fetches take 300ms from now on.
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { time.Sleep(300 * time.Millisecond) })
		return nil, nil, false
	})
	produceAdds(t, brokers, 4, 100, 100)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s.Drain(ctx)
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || calls[200] != 4 {
		t.Fatalf("calls by records carried: %v; want 4 calls of 200 (one per list, after reading to the end)", calls)
	}
}

// TestCloseLeavesNoFlightBehind: when Close returns after a shutdown whose
// grace ran out, no upload is in flight and none starts later.
func TestCloseLeavesNoFlightBehind(t *testing.T) {
	brokers := changesCluster(t, 8, 100)
	var closed atomic.Bool
	var late atomic.Int32
	// Pinterest hangs until the upload is cancelled.
	pin := pinFunc(func(ctx context.Context, _ pinterest.Operation, _ []ident.Hash) error {
		if closed.Load() {
			late.Add(1)
		}
		<-ctx.Done()
		return ctx.Err()
	})
	s := startStage(t, brokers, resolved{pin}, 20*time.Millisecond)
	deadline := time.Now().Add(20 * time.Second)
	for st := s.Status(); st.Buffered < 100 || st.Flights == 0; st = s.Status() {
		if time.Now().After(deadline) {
			t.Fatal("the stage never buffered changes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err == nil {
		t.Fatal("Close returned nil although changes were left unuploaded")
	}
	closed.Store(true)
	if n := s.Status().Flights; n != 0 {
		t.Fatalf("%d uploads in flight after Close returned", n)
	}
	s.disp.wg.Wait()
	if n := late.Load(); n != 0 {
		t.Fatalf("%d uploads started after Close returned", n)
	}
}

// resolved is a Pinterest where every list of the default name exists.
type resolved struct{ pinFunc }

func (resolved) CustomerLists(context.Context, string) ([]pinterest.CustomerList, error) {
	var out []pinterest.CustomerList
	for a := range 8 {
		name := fmt.Sprintf("pinsync aud%d EMAIL", a)
		out = append(out, pinterest.CustomerList{ID: "list-" + name, Name: name})
	}
	return out, nil
}

// changesCluster is kfake with a changes topic of two partitions holding
// one record of n adds to each of lists lists ("aud0"…), and a dead-letter
// topic.
func changesCluster(t *testing.T, lists, n int) []string {
	t.Helper()
	return changesKafka(t, lists, n).ListenAddrs()
}

// changesKafka is changesCluster's cluster.
func changesKafka(t *testing.T, lists, n int) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "changes", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	produceAdds(t, c.ListenAddrs(), lists, 0, n)
	return c
}

// produceAdds writes one record to each of lists lists ("aud0"…) with adds
// of records from..from+n-1 of the list.
func produceAdds(t *testing.T, brokers []string, lists, from, n int) {
	t.Helper()
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	part := changes.NewPartitioner(2)
	for a := range lists {
		l := changes.List{Audience: fmt.Sprint("aud", a), Type: ident.Email}
		cs := make([]changes.Change, n)
		for i := range cs {
			cs[i] = changes.Change{Hash: record(a*1000 + from + i), Op: changes.Add}
		}
		k := l.AppendKey(nil)
		pcl.Produce(t.Context(), &kgo.Record{Topic: "changes", Partition: part.Partition(k), Key: k,
			Value: changes.AppendValue(nil, changes.Header{AdAccount: "549755885175"}, cs)}, nil)
	}
	if err := pcl.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// startStage starts a list stage on brokers with one flight at a time.
func startStage(t *testing.T, brokers []string, pin Pinterest, flush time.Duration) *Stage {
	t.Helper()
	s, err := New(Config{
		Topic: "changes", Partitions: 2, Group: "g.lists", DLQTopic: "dlq", DLQPartitions: 2,
		FlushInterval: flush, CommitInterval: 20 * time.Millisecond, RevokeTimeout: time.Second,
		MaxRecords: 5000, MaxBuffered: 100_000, MaxFlights: 1, ListNameTemplate: DefaultListNameTemplate,
		AudiencePollInterval: -1, ParkedRetry: time.Second,
	}, Deps{Member: member.Deps{Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...)}}, Pinterest: pin})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func waitBuffered(t *testing.T, s *Stage, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Status().Buffered < n {
		if time.Now().After(deadline) {
			t.Fatalf("the stage buffered %d of %d changes", s.Status().Buffered, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// halfCreated is a Pinterest where no list exists and every creation
// fails after the list was made: its adds may not all have landed.
type halfCreated struct {
	pinFunc
	creates atomic.Int32
}

func (*halfCreated) CustomerLists(context.Context, string) ([]pinterest.CustomerList, error) {
	return nil, nil
}

func (h *halfCreated) CreateCustomerList(_ context.Context, _, name string, _ ident.Type, _ []ident.Hash) (pinterest.CustomerList, error) {
	h.creates.Add(1)
	return pinterest.CustomerList{ID: "list-" + name, Name: name},
		errors.New("pinterest: customer list created, but adding the remaining records failed: HTTP 503")
}

// TestHalfFailedCreateSendsItsAddsAgain: when a list was created but adding
// its records failed partway, none of them counts as uploaded: the flush
// sends them again to the new list, and only then commits.
func TestHalfFailedCreateSendsItsAddsAgain(t *testing.T) {
	brokers := changesCluster(t, 4, 100)
	var updated atomic.Int32
	pin := &halfCreated{pinFunc: func(_ context.Context, o pinterest.Operation, recs []ident.Hash) error {
		if o == pinterest.Add {
			updated.Add(int32(len(recs)))
		}
		return nil
	}}
	s := startStage(t, brokers, pin, time.Hour)
	waitBuffered(t, s, 400)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c := pin.creates.Load(); c != 4 {
		t.Fatalf("%d list creations, want 4 (one per list; the retry updates the list created)", c)
	}
	if n := updated.Load(); n != 400 {
		t.Fatalf("%d of 400 records added again after the half-failed creations", n)
	}
	for _, p := range s.tr.Partitions() {
		if open, sealed := s.tr.Pending(p); open != 0 || len(sealed) != 0 {
			t.Fatalf("partition %d after Close: pending %d and %v", p.Partition, open, sealed)
		}
	}
}

// TestRevokeDuringCloseStopsThePartition: a partition revoked while Close
// is flushing (a rebalance during the shutdown grace) is revoked like any
// other: within the revoke timeout its changes are flushed or dropped,
// and afterwards nothing of it is uploaded or committed; the other
// partition goes on flushing until Close ends.
func TestRevokeDuringCloseStopsThePartition(t *testing.T) {
	brokers := changesCluster(t, 8, 100)
	var revokedAt atomic.Int64 // unix nanos once the revoke returned
	var late atomic.Int32
	part := changes.NewPartitioner(2)
	// Pinterest hangs every upload until it is cancelled; it counts those
	// that start after the revoke for lists of partition 0.
	var s *Stage
	pin := pinFunc(func(ctx context.Context, _ pinterest.Operation, _ []ident.Hash) error {
		<-ctx.Done()
		return ctx.Err()
	})
	guarded := guardSpy{pinFunc: pin, onUpdate: func(listID string) {
		name := strings.TrimPrefix(listID, "list-pinsync ")
		aud, _, _ := strings.Cut(name, " ")
		k := changes.List{Audience: aud, Type: ident.Email}.AppendKey(nil)
		if part.Partition(k) == 0 && revokedAt.Load() != 0 {
			late.Add(1)
		}
	}}
	s = startStage(t, brokers, guarded, 20*time.Millisecond)
	waitBuffered(t, s, 800)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		closed <- s.Close(ctx)
	}()
	// Close has stopped the workers: both partitions are leaving.
	deadline := time.Now().Add(5 * time.Second)
	for !s.member.Leaving(0) || !s.member.Leaving(1) {
		if time.Now().After(deadline) {
			t.Fatal("Close never stopped the workers")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.member.Revoked(t.Context(), s.member.Client(), map[string][]int32{"changes": {0}})
	revokedAt.Store(time.Now().UnixNano())
	if s.member.Leaving(0) {
		t.Error("partition 0 is still leaving after its revoke: Close would go on flushing it")
	}
	for _, p := range s.tr.Partitions() {
		if p.Partition == 0 {
			t.Error("partition 0 is still tracked after its revoke: Close would commit it")
		}
	}
	<-closed
	s.disp.wg.Wait()
	if n := late.Load(); n != 0 {
		t.Errorf("%d uploads for partition 0's lists started after it was revoked", n)
	}
}

// guardSpy is a Pinterest whose updates call onUpdate with the list id.
type guardSpy struct {
	pinFunc
	onUpdate func(listID string)
}

func (g guardSpy) CustomerLists(ctx context.Context, acct string) ([]pinterest.CustomerList, error) {
	return resolved{g.pinFunc}.CustomerLists(ctx, acct)
}

func (g guardSpy) UpdateCustomerList(ctx context.Context, acct, listID string, op pinterest.Operation, records []ident.Hash) error {
	g.onUpdate(listID)
	return g.pinFunc.UpdateCustomerList(ctx, acct, listID, op, records)
}
