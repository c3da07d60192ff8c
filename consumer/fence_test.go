package consumer_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestReplayBelowTheFenceCancelsNothing: an earlier owner of the partition
// read a profile's identify and enter, uploaded the add, and died before
// it committed or wrote the profile's state. The fence it wrote to the
// changelog before reading tells the next owner that below it the lists
// may be ahead of the state. Replaying enter then exit in one window must
// then send the remove: cancelling the pair (as the state alone suggests:
// the record was never in) would leave the record in the list for good.
func TestReplayBelowTheFenceCancelsNothing(t *testing.T) {
	r := newRig(t, 1, sandbox.Config{})
	cfg := engineConfig()
	cfg.FlushInterval = time.Second // the three events, read as one batch, share a window
	ctx := context.Background()

	// The earlier owner's traces: its fence and its upload.
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	compact := "compact"
	changelog := cfg.Group + ".changelog"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, changelog); err != nil {
		t.Fatal(err)
	}
	fence := &kgo.Record{Topic: changelog, Partition: 0, Key: []byte(topic + "\x01fence"), Value: binary.BigEndian.AppendUint64(nil, 100_000)}
	if err := cl.ProduceSync(ctx, fence).FirstErr(); err != nil {
		t.Fatal(err)
	}
	h, err := ident.OfString(ident.Email, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := r.client(prometheus.NewRegistry())
	if _, err := pin.CreateCustomerList(ctx, sandbox.DefaultAdAccountID, listName("vip", ident.Email), ident.Email, []ident.Hash{h}); err != nil {
		t.Fatal(err)
	}

	recs := []stream.Record{
		{Key: []byte("p1"), Value: []byte(`{"type":"identify","profile":"p1","identifiers":{"email":["a@example.com"]}}`)},
		{Key: []byte("p1"), Value: []byte(`{"type":"membership","profile":"p1","audience":"vip","member":true}`)},
		{Key: []byte("p1"), Value: []byte(`{"type":"membership","profile":"p1","audience":"vip","member":false}`)},
	}
	r.produce(recs)
	m := r.start(cfg)
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(30 * time.Second)
	for {
		offs, err := adm.FetchOffsets(ctx, cfg.Group)
		if o, ok := offs.Lookup(topic, 0); err == nil && ok && o.At == int64(len(recs)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("offsets not committed within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.stop(t)
	if d := stream.Diff(map[stream.ListKey]stream.Set{}, r.actual()); !d.OK() {
		t.Fatalf("the record the earlier owner uploaded is still listed: %s", d)
	}
}
