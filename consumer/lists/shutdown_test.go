package lists

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
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
	s.flightWG.Wait()
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
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "changes", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	pcl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	part := changes.NewPartitioner(2)
	for a := range lists {
		l := changes.List{Audience: fmt.Sprint("aud", a), Type: ident.Email}
		cs := make([]changes.Change, n)
		for i := range cs {
			cs[i] = changes.Change{Hash: benchHash(uint64(a*1000+i), 1), Op: changes.Add}
		}
		k := l.AppendKey(nil)
		pcl.Produce(t.Context(), &kgo.Record{Topic: "changes", Partition: part.Partition(k), Key: k,
			Value: changes.AppendValue(nil, changes.Header{AdAccount: "549755885175"}, cs)}, nil)
	}
	if err := pcl.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs()
}

// startStage starts a list stage on brokers with one flight at a time.
func startStage(t *testing.T, brokers []string, pin Pinterest, flush time.Duration) *Stage {
	t.Helper()
	s, err := New(Config{
		Topic: "changes", Partitions: 2, Group: "g.lists", DLQTopic: "dlq", DLQPartitions: 2,
		FlushInterval: flush, CommitInterval: 20 * time.Millisecond, RevokeTimeout: time.Second,
		MaxRecords: 5000, MaxBuffered: 100_000, MaxFlights: 1, ListNameTemplate: DefaultListNameTemplate,
		AudiencePollInterval: -1,
	}, Deps{Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Pinterest: pin})
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
