package consumer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestAChangelogEmptiedIsNotTakenAsNewState: the changelog loses every
// record (deleted, as a retention or kafka-delete-records would) under a
// deployment whose group has consumed the input. A state restored empty is
// taken as new only where the group never consumed the partition: here
// both partitions halt (state_lost) instead of vouching for every list as
// if it started empty, and nothing more is committed or uploaded.
func TestAChangelogEmptiedIsNotTakenAsNewState(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 67, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m := r.start(cfg)
	want, _ := oracle(t, first)
	r.converge(want, 30*time.Second)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })
	m.stop(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deleteAll(t, kadm.NewClient(cl), cfg.Group+".changelog")
	r.produce(rest)

	log, errs := newErrorLog()
	m = r.startWithLog(cfg, log)
	wantAllHalted(t, m, "profiles", topic, "state_lost", 2)
	m.stopAnyway()
	if got := r.committed(cfg.Group); got != int64(len(first)) {
		t.Errorf("committed %d over a lost state; want %d", got, len(first))
	}
	if d := stream.Diff(want, r.actual()); !d.OK() {
		t.Errorf("the lists changed while the state was lost: %s", d)
	}
	var lines int
	for _, l := range errs() {
		if strings.Contains(l, "input partition stopped") && strings.Contains(l, "reason=state_lost") {
			lines++
		}
	}
	if lines != 2 {
		t.Errorf("%d error lines; want one per partition:\n%s", lines, strings.Join(errs(), "\n"))
	}
}
