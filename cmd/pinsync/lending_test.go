package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestIdleReplicasLendTheirWriteBudget syncs a backlog of one audience
// (three lists, so at most three of the six changes partitions have work)
// with three replicas at a budget of 45 writes a minute for the group,
// which the sandbox enforces per fixed minute, and enough writes to last
// more than one minute of it. Each replica owns two partitions: a third of
// the budget. The replicas whose partitions hold no list (or whose lists
// are done) lend their thirds: a replica borrows, and may spend more than
// its third at some point; Pinterest never answers 429; the lists end
// exact. PINSYNC_LENDING_PROFILES sets the audience's size (default 6,000
// profiles).
func TestIdleReplicasLendTheirWriteBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const perMinute = 45
	settings := fleetSettings{writesPerMinute: fmt.Sprint(perMinute), maxRecords: "100", flushInterval: "1s",
		budgetLease: os.Getenv("PINSYNC_LENDING_LEASE")}
	f := newFleetWith(t, 6, sandbox.Config{WritesPerMinute: perMinute, ReadsPerMinute: sandbox.Unlimited}, settings)
	profiles := envInt("PINSYNC_LENDING_PROFILES", 6_000)
	recs := generate(t, stream.Config{Profiles: profiles, Audiences: 1, Events: profiles, Seed: 47, MembershipRate: 0.5,
		Start: time.Unix(1_800_000_000, 0), MeanGap: time.Millisecond})
	want, _ := expected(t, recs)
	var ids []string
	for id := range 3 {
		f.start(id)
		ids = append(ids, fmt.Sprintf("replica-%d", id))
	}
	f.waitSpread(time.Minute, ids...)

	// Watch each replica's share of the budget while the backlog drains.
	var mu sync.Mutex
	maxShare := map[int]float64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, r := range f.running() {
				if v, err := metric(r.addr, "pinsync_write_share"); err == nil {
					mu.Lock()
					maxShare[r.id] = max(maxShare[r.id], v)
					mu.Unlock()
				}
			}
		}
	}()
	f.produce(recs)
	f.waitLagZero(5 * time.Minute)
	close(stop)
	wg.Wait()
	f.exact(want)

	_, requests, limited := f.writes()
	t.Logf("%d write requests at %d a minute; highest shares %v", requests, perMinute, maxShare)
	if requests <= perMinute {
		t.Fatalf("%d write requests: the test needs more than a minute of the budget (%d) to say anything", requests, perMinute)
	}
	if limited != 0 {
		t.Errorf("Pinterest answered 429 %d times: the replicas spent more than the group's budget", limited)
	}
	borrowers := 0
	for _, r := range f.running() {
		borrowed, err := metricWith(r.addr, "pinsync_write_loans_total", `direction="borrowed"`)
		if err != nil {
			t.Fatal(err)
		}
		if borrowed == 0 {
			continue
		}
		borrowers++
		if s := maxShare[r.id]; s <= 1.0/3 {
			t.Errorf("replica-%d borrowed %g times but never held more than its partitions' third of the budget (highest %.3f)", r.id, borrowed, s)
		}
	}
	if borrowers == 0 {
		t.Errorf("no replica borrowed write budget; highest shares %v", maxShare)
	}
}
