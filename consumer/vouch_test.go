package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestReplayBelowTheAssignmentCancelsNothing: an earlier owner of a changes
// partition read a record's add, uploaded it, and died before it committed.
// The next owner reads the add again, then its remove, in one window: from
// the changes alone the pair cancels (the record was never in), but the
// list holds the record. Below the end of the partition at its assignment
// a new owner vouches for nothing, so it sends the remove.
func TestReplayBelowTheAssignmentCancelsNothing(t *testing.T) {
	r := newRig(t, 1, sandbox.Config{})
	cfg := engineConfig()
	cfg.FlushInterval = time.Second // both changes, read as one batch, share a window
	ctx := context.Background()
	h, err := ident.OfString(ident.Email, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	// The earlier owner's upload.
	pin, _ := r.client(prometheus.NewRegistry())
	if _, err := pin.CreateCustomerList(ctx, sandbox.DefaultAdAccountID, listName("vip", ident.Email), ident.Email, []ident.Hash{h}); err != nil {
		t.Fatal(err)
	}
	// What it read: a vouched add, then a vouched remove, of the record.
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	changesTopic := cfg.Group + ".changes"
	keep := "-1" // as pinsync requires of a changes topic it did not create
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, map[string]*string{"retention.ms": &keep}, changesTopic); err != nil {
		t.Fatal(err)
	}
	list := changes.List{Audience: "vip", Type: ident.Email}
	hdr := changes.Header{AdAccount: sandbox.DefaultAdAccountID}
	for _, op := range []changes.Op{changes.Add, changes.Remove} {
		rec := &kgo.Record{Topic: changesTopic, Partition: 0, Key: list.AppendKey(nil),
			Value: changes.AppendValue(nil, hdr, []changes.Change{{Hash: h, Op: op, Vouched: true}})}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	m := r.start(cfg)
	adm := kadm.NewClient(cl)
	waitFor(t, 30*time.Second, "the list stage committed both changes", func() bool {
		offs, err := adm.FetchOffsets(ctx, cfg.Group+".lists")
		o, ok := offs.Lookup(changesTopic, 0)
		return err == nil && ok && o.At >= 2
	})
	m.stop(t)
	if d := stream.Diff(map[stream.ListKey]stream.Set{}, r.actual()); !d.OK() {
		t.Fatalf("the record the earlier owner uploaded is still listed: %s", d)
	}
}
