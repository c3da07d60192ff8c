package main

// Scale-down of static members: a replica that stops for good leaves both
// groups, and its partitions are owned again at once; a replica that
// restarts keeps its partitions for its instance id.

import (
	"fmt"
	"maps"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// owners returns the owner (instance id) of each partition of topic in
// group, the group's members' instance ids, and whether it is Stable.
func (f *fleet) owners(group, topic string) (owner map[int32]string, members []string, stable bool) {
	f.t.Helper()
	groups, err := kadm.NewClient(f.kcl).DescribeGroups(f.t.Context(), group)
	if err != nil {
		return nil, nil, false
	}
	g, ok := groups[group]
	if !ok || g.Err != nil {
		return nil, nil, false
	}
	owner = map[int32]string{}
	for _, m := range g.Members {
		id := "(dynamic)"
		if m.InstanceID != nil {
			id = *m.InstanceID
		}
		members = append(members, id)
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, tp := range a.Topics {
			if tp.Topic == topic {
				for _, p := range tp.Partitions {
					owner[p] = id
				}
			}
		}
	}
	slices.Sort(members)
	return owner, members, g.State == "Stable"
}

// stageGroups are the fleet's two groups and the topic each consumes.
var stageGroups = [][2]string{{replicaGroup, replicaTopic}, {replicaGroup + ".lists", replicaGroup + ".changes"}}

// ownedBy reports whether both groups are Stable with exactly the members
// instances, every partition of their topics owned by one of them.
func (f *fleet) ownedBy(instances ...string) bool {
	for _, gt := range stageGroups {
		owner, members, stable := f.owners(gt[0], gt[1])
		if !stable || !slices.Equal(members, instances) || len(owner) != f.partitions {
			return false
		}
	}
	return true
}

// TestScaleDownLeavesTheGroupsAtOnce runs three replicas as static members
// (kafka.instance_id) with a session timeout of five minutes. It restarts
// replica-1 (kafka.leave_on_shutdown never, the default): once its process
// has exited, both groups still hold its partitions for its instance id,
// and it gets the same partitions back when it starts again. Then it
// scales replica-2 away (kafka.leave_on_shutdown always, what the
// statefulset mode answers for a pod scaled away): SIGTERM, and both
// groups assign its partitions to the two others within a minute, well
// before the five minutes after which the broker would have expired it.
// The lists end exact.
func TestScaleDownLeavesTheGroupsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const session = 5 * time.Minute
	settings := fastSettings
	settings.sessionTimeout = session.String()
	// A rebalance in flight evicts a member that does not rejoin within
	// the rebalance timeout: a long one keeps such a rebalance from
	// freeing replica-2's partitions within the wait below.
	settings.rebalanceTimeout = "2m"
	f := newFleetWith(t, 6, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited}, settings)
	recs := generate(t, stream.Config{Profiles: 300, Audiences: 4, Events: 3000, Seed: 24, AudiencePrefix: "down"})
	want, _ := expected(t, recs)
	half := len(recs) / 2
	f.produce(recs[:half])
	f.start(0)
	f.start(1)
	f.start(2, "PINSYNC_KAFKA_LEAVE_ON_SHUTDOWN=always")
	all := []string{"replica-0", "replica-1", "replica-2"}
	waitFor(t, 2*time.Minute, "both groups Stable over the three replicas, every partition owned", func() bool {
		if !f.ownedBy(all...) {
			return false
		}
		// Each replica owns partitions of both groups.
		for _, gt := range stageGroups {
			owner, _, _ := f.owners(gt[0], gt[1])
			if len(slices.Compact(slices.Sorted(maps.Values(owner)))) != 3 {
				return false
			}
		}
		return true
	})

	// A restart: the process exits without leaving (the leave of a static
	// member, when it happens, is sent before the process exits), so both
	// groups still hold replica-1 and its partitions; started again, it
	// gets them back.
	before := map[string]map[int32]string{}
	for _, gt := range stageGroups {
		before[gt[0]], _, _ = f.owners(gt[0], gt[1])
	}
	f.stop(1)
	for _, gt := range stageGroups {
		owner, members, _ := f.owners(gt[0], gt[1])
		if !slices.Equal(members, all) || !maps.Equal(owner, before[gt[0]]) {
			t.Fatalf("group %s after replica-1's restart stop: members %v, owners %v; want members %v and owners %v kept for the instance id",
				gt[0], members, owner, all, before[gt[0]])
		}
	}
	f.start(1)
	waitFor(t, time.Minute, "replica-1 back with its partitions", func() bool {
		for _, gt := range stageGroups {
			owner, _, stable := f.owners(gt[0], gt[1])
			if !stable || !maps.Equal(owner, before[gt[0]]) {
				return false
			}
		}
		return true
	})

	// A scale-down: replica-2 leaves both groups as it stops.
	gone := map[string][]int32{}
	for _, gt := range stageGroups {
		for p, id := range before[gt[0]] {
			if id == "replica-2" {
				gone[gt[0]] = append(gone[gt[0]], p)
			}
		}
	}
	f.mu.Lock()
	r := f.procs[2]
	delete(f.procs, 2)
	f.mu.Unlock()
	signalled := time.Now()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("replica-2 did not stop within 30s of SIGTERM")
	}
	exited := time.Since(signalled)
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("replica-2 exited with status %d after SIGTERM", code)
	}
	// Bounded well under the session timeout: without the leave, the
	// broker keeps replica-2's partitions for it until then.
	waitFor(t, time.Minute, fmt.Sprintf("replica-2's partitions %v owned by the others (session timeout %s)", gone, session), func() bool {
		return f.ownedBy("replica-0", "replica-1")
	})
	owned := time.Since(signalled)
	t.Logf("scale-down: replica-2's partitions %v owned again %s after SIGTERM (its process exited after %s); session timeout %s",
		gone, owned.Round(100*time.Millisecond), exited.Round(100*time.Millisecond), session)

	f.produce(recs[half:])
	f.waitLagZero(2 * time.Minute)
	f.exact(want)
}
