package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
)

// TestPartitionThatComesBackWritesToTheLiveList: member A owns a list, the
// list's partition moves to B, B rebuilds the list (a new customer list
// the audience follows, the old one retired), and the partition comes back
// to A. Every later write goes to the live list: A takes the list's ids
// from the registry as they stand when it is assigned the list again, so
// the list campaigns target misses nothing and the retired one gets
// nothing.
func TestPartitionThatComesBackWritesToTheLiveList(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	first, all, wantFirst, wantAll := rebuildStream(t)
	cfg := engineConfig()
	r.produce(first)
	a := r.start(cfg)
	r.converge(wantFirst, 30*time.Second)

	b := r.start(cfg)
	var aud string
	var lt ident.Type
	waitFor(t, 30*time.Second, "B to own a changes partition with a list", func() bool {
		part := changes.NewPartitioner(2)
		for _, p := range b.eng.Status().ListPartitions {
			for k := range wantFirst {
				l := changes.List{Audience: k.Audience, Type: k.Type}
				if part.Partition(l.AppendKey(nil)) == p.Partition {
					aud, lt = k.Audience, k.Type
					return true
				}
			}
		}
		return false
	})
	ctx := context.Background()
	ct, err := control.Open(ctx, control.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(r.brokers...)}, Topic: cfg.Group + ".control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	before, err := ct.Registry().RequestRebuild(ctx, aud, lt)
	if err != nil || len(before) != 1 {
		t.Fatalf("RequestRebuild: %v, %v", before, err)
	}
	var key control.ListKey
	var old control.ListEntry
	for k, e := range before {
		key, old = k, e
	}
	waitFor(t, 30*time.Second, "B to rebuild the list", func() bool {
		e := ct.Registry().Entries()[key]
		return e.Rebuild == "" && e.Generation == old.Generation+1 && e.CustomerListID != old.CustomerListID
	})
	live := ct.Registry().Entries()[key].CustomerListID
	retired, ok := r.sb.CustomerList(old.CustomerListID)
	if !ok {
		t.Fatal("the retired list is gone")
	}

	b.stop(t) // the partition comes back to A
	waitFor(t, 30*time.Second, "A to own every changes partition again", func() bool {
		return len(a.eng.Status().ListPartitions) == 2
	})
	r.produce(all[len(first):])
	r.converge(wantAll, 60*time.Second)
	if after, _ := r.sb.CustomerList(old.CustomerListID); after.NumBatches != retired.NumBatches {
		t.Errorf("the retired list %s was written %d times after the rebuild", old.CustomerListID, after.NumBatches-retired.NumBatches)
	}
	followed := false
	for _, au := range r.sb.State().Audiences {
		followed = followed || au.CustomerListID == live
	}
	if !followed {
		t.Errorf("no audience follows the live list %s", live)
	}
}
