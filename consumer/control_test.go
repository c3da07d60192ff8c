package consumer_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// createdOnce fails unless every list and every audience of the sandbox
// was created by exactly one accepted request.
func createdOnce(t *testing.T, sb *sandbox.Server) {
	t.Helper()
	st := sb.State()
	lists, audiences := 0, 0
	for _, r := range sb.Requests() {
		if r.Status/100 != 2 {
			continue
		}
		switch r.Operation {
		case "customer_lists/create":
			lists++
		case "audiences/create":
			audiences++
		}
	}
	if lists != len(st.CustomerLists) || audiences != len(st.Audiences) {
		t.Errorf("%d list creations and %d audience creations for %d lists and %d audiences", lists, audiences, len(st.CustomerLists), len(st.Audiences))
	}
	perList := map[string]int{}
	for _, a := range st.Audiences {
		perList[a.CustomerListID]++
	}
	for _, l := range st.CustomerLists {
		if perList[l.ID] != 1 {
			t.Errorf("list %q has %d audiences, want 1", l.Name, perList[l.ID])
		}
	}
}

func TestControlReplicasCreateEachListOnce(t *testing.T) {
	r := newRig(t, 6, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 3000, Audiences: 40, Events: 12_000, Seed: 11, AudiencePrefix: "ctl_"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	var ms []*member
	for range 3 {
		ms = append(ms, r.start(engineConfig()))
	}
	waitFor(t, 30*time.Second, "every replica assigned partitions", func() bool {
		for _, m := range ms {
			if gauge(t, m.reg, "pinsync_assigned_partitions") == 0 {
				return false
			}
		}
		return true
	})
	// Every replica's window of a list fills at once: they all want to
	// create it in the same instant.
	r.produce(recs)
	r.converge(want, 60*time.Second)
	createdOnce(t, r.sb)
}

func TestControlStaleClaimIsTakenOver(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 500, Audiences: 2, Events: 2_000, Seed: 12, AudiencePrefix: "stale_"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	cfg := engineConfig()
	cfg.ClaimTimeout = 500 * time.Millisecond
	// A replica that died holding the claims of every list.
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), 1, -1, nil, cfg.Group+".control"); err != nil {
		t.Fatal(err)
	}
	for k := range want {
		v, _ := json.Marshal(map[string]string{"owner": "dead-replica"})
		rec := &kgo.Record{Topic: cfg.Group + ".control", Key: []byte("list/" + sandbox.DefaultAdAccountID + "/" + listName(k.Audience, k.Type)), Value: v}
		if err := cl.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	r.produce(recs)
	r.start(cfg)
	r.start(cfg)
	r.converge(want, 30*time.Second)
	createdOnce(t, r.sb)
}
