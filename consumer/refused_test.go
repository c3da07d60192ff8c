package consumer_test

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestRefusedRecordsAloneAreDeadLettered: Pinterest refuses (400) every
// request, list creation or update, that carries one of two records. Each
// such batch is bisected: only those records are dead-lettered (reason
// pinterest_rejected, the hash as the value, once per list that would hold
// it); every other record is uploaded and everything is committed.
func TestRefusedRecordsAloneAreDeadLettered(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 3, Events: 3000, Seed: 4, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	// Two records the final lists hold, of two different lists.
	var refused []ident.Hash
	var hexes []string
	for _, set := range want {
		if len(refused) == 2 || len(set) < 10 {
			continue
		}
		for h := range set {
			refused = append(refused, h)
			hexes = append(hexes, hex.EncodeToString(h[:]))
			break
		}
	}
	// Pinterest refuses a record in every list that would hold it.
	for _, set := range want {
		for _, h := range refused {
			delete(set, h)
		}
	}
	if len(refused) != 2 {
		t.Fatal("the stream has too few lists")
	}
	if err := r.sb.SetFaults(sandbox.Faults{RefuseRecords: hexes}); err != nil {
		t.Fatal(err)
	}
	r.produce(recs)
	cfg := engineConfig()
	m := r.start(cfg)
	r.converge(want, 30*time.Second)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(recs)) })
	m.stop(t)

	dlq := readAll(t, r.brokers, cfg.Group+".dlq", 2, 10*time.Second)
	got := map[string]int{}
	for _, d := range dlq {
		got[string(d.Value)]++
		for _, h := range d.Headers {
			if h.Key == "pinsync.reason" && string(h.Value) != "pinterest_rejected" {
				t.Errorf("dead letter reason %q", h.Value)
			}
		}
	}
	for _, h := range hexes {
		if got[h] == 0 {
			t.Errorf("refused record %s not dead-lettered", h)
		}
	}
	if len(dlq) < 2 || len(got) != 2 {
		t.Errorf("dead letters %v; want exactly the two refused records", got)
	}
}
