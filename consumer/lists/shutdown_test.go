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

// TestCloseLeavesNoFlightBehind: when Close returns after a shutdown whose
// grace ran out, no upload is in flight and none starts later.
func TestCloseLeavesNoFlightBehind(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "changes", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pcl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	part := changes.NewPartitioner(2)
	for a := range 8 {
		l := changes.List{Audience: fmt.Sprint("aud", a), Type: ident.Email}
		cs := make([]changes.Change, 100)
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
	pcl.Close()

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
	s, err := New(Config{
		Topic: "changes", Partitions: 2, Group: "g.lists", DLQTopic: "dlq", DLQPartitions: 2,
		FlushInterval: 20 * time.Millisecond, CommitInterval: 20 * time.Millisecond, RevokeTimeout: time.Second,
		MaxRecords: 5000, MaxBuffered: 100_000, MaxFlights: 1, ListNameTemplate: DefaultListNameTemplate,
		AudiencePollInterval: -1,
	}, Deps{Kafka: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, Pinterest: resolved{pin}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
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
