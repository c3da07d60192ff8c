package consumer_test

import (
	"sync"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestReplicasStoppedTogetherLeaveListsExact: three members stopped at the
// same moment, right after they applied a backlog (the group was still
// settling, partitions of both stages moving), each shut down cleanly
// within its grace, and the lists hold exactly what they must: every list
// stage keeps flushing until it leaves, and the last one takes over what
// the others left.
func TestReplicasStoppedTogetherLeaveListsExact(t *testing.T) {
	r := newRig(t, 6, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 5000, Audiences: 12, Events: 60000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	r.produce(recs)
	cfg := engineConfig()
	cfg.FlushInterval = 10 * time.Second // only the shutdown flushes
	cfg.ShutdownGrace = 20 * time.Second
	cfg.CommitInterval = 200 * time.Millisecond
	var ms []*member
	for range 3 {
		ms = append(ms, r.start(cfg))
	}
	waitFor(t, 30*time.Second, "every event applied", func() bool {
		n := 0.0
		for _, m := range ms {
			n += counterSum(t, m.reg, "pinsync_events_total")
		}
		return n >= float64(len(recs))
	})
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); m.stop(t) }()
	}
	wg.Wait()
	if d := stream.Diff(want, r.actual()); !d.OK() {
		t.Fatalf("after every member stopped, the sandbox differs from the oracle: %s", d)
	}
}
