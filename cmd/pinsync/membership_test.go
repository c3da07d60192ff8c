package main

// Tests of group membership: replicas killed in quick succession, without
// static membership, still converge exactly.

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// waitStable waits until both of the fleet's groups are Stable with n
// members each.
func (f *fleet) waitStable(within time.Duration, n int) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		groups, err := kadm.NewClient(f.kcl).DescribeGroups(f.t.Context(), replicaGroup, replicaGroup+".lists")
		stable := err == nil && len(groups) == 2
		for _, g := range groups {
			stable = stable && g.Err == nil && g.State == "Stable" && len(g.Members) == n
		}
		if stable {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the groups were not Stable with %d members within %s", n, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRapidKillsConvergeExactly runs three replicas as dynamic group members
// (no kafka.instance_id) with a 10s session timeout and the default 60s
// rebalance timeout and revoke timeout, at Pinterest's budget (400 writes a
// minute for the app), on a backlog; kills one at random with SIGKILL and
// starts it again at once, several times five seconds apart; then checks at
// lag 0 that the lists equal the oracle. A restarted replica joins both
// groups as a new member while the group still counts the dead one, which
// rebalances them again and again: each must still form within the
// rebalance timeout (see third_party/kfake/PATCH.md).
//
// The defaults are small; the scale is PINSYNC_KILLS_PROFILES=20000
// PINSYNC_KILLS_AUDIENCES=120 PINSYNC_KILLS=8, and PINSYNC_KILLS_SEED picks
// other victims.
func TestRapidKillsConvergeExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	profiles := envInt("PINSYNC_KILLS_PROFILES", 2000)
	audiences := envInt("PINSYNC_KILLS_AUDIENCES", 12)
	kills := envInt("PINSYNC_KILLS", 4)
	seed := uint64(envInt("PINSYNC_KILLS_SEED", 1))
	settings := fleetSettings{writesPerMinute: "400", maxRecords: "5000", flushInterval: "10s",
		dynamic: true, sessionTimeout: "10s", rebalanceTimeout: "60s", revokeTimeout: "10s"}
	f := newFleetWith(t, 12, sandbox.Config{}, settings)
	// Twenty events a profile: the backfill then puts members in every list.
	recs := generate(t, stream.Config{Profiles: profiles, Audiences: audiences, Events: 20 * profiles, Seed: seed})
	want, _ := expected(t, recs)
	f.produce(recs)
	for id := range 3 {
		f.start(id)
	}
	f.waitStable(time.Minute, 3)
	rng := rand.New(rand.NewPCG(seed, 19))
	var victims []int
	for range kills {
		time.Sleep(5 * time.Second)
		v := rng.IntN(3)
		victims = append(victims, v)
		f.kill9(v)
		f.start(v)
	}
	last := time.Now()
	f.waitLagZero(6 * time.Minute)
	took := time.Since(last)
	f.exact(want)
	calls, requests, limited := f.writes()
	t.Logf("kills: %d lists, %d profiles, %d events; replicas %v killed and restarted 5s apart; lag 0 and exact %s after the last kill; %d list writes, %d write requests, %d 429s",
		len(want), profiles, len(recs), victims, took.Round(time.Second), calls, requests, limited)
	if limited > 0 {
		t.Errorf("Pinterest answered 429 %d times", limited)
	}
}
