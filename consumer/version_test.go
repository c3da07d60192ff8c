package consumer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/profiles"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// writeRecord writes one record to partition p of topic, as a newer
// pinsync would, and returns its offset.
func writeRecord(t *testing.T, r *rig, topic string, p int32, key string, value []byte) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec, err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: p, Key: []byte(key), Value: value}).First()
	if err != nil {
		t.Fatal(err)
	}
	return rec.Offset
}

// TestChangesOfANewerFormatHaltTheirPartition: a record of the changes
// topic of a format version this pinsync does not read (a newer replica
// wrote it) is neither counted as malformed nor committed past: its
// partition halts there, not ready with the reason, and nothing of it is
// committed past the record. A malformed record on the other partition
// (version 0) is skipped and counted, and that partition goes on.
func TestChangesOfANewerFormatHaltTheirPartition(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 43, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	changesTopic := cfg.Group + ".changes"
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })

	newer := append([]byte{changes.Version + 1}, make([]byte, 40)...)
	at := writeRecord(t, r, changesTopic, 0, "EMAIL:from-a-newer-pinsync", newer)
	writeRecord(t, r, changesTopic, 1, "EMAIL:malformed", []byte{0})
	r.produce(rest)
	wantHalted(t, m, "lists", changesTopic, "unknown_version")
	malformed := func() float64 {
		return seriesWhere(t, m.reg, "pinsync_changes_malformed_total", nil, func(mm *dto.Metric) float64 { return mm.GetCounter().GetValue() })
	}
	waitFor(t, 30*time.Second, "the malformed record counted", func() bool { return malformed() == 1 })
	if err := m.eng.Ready(); !strings.Contains(err.Error(), "version 2, this pinsync reads up to 1") {
		t.Errorf("Ready: %v; want the version named", err)
	}
	m.stopAnyway()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := fetchCommitted(t, cl, cfg.Group+".lists")[0]; got > at {
		t.Errorf("the list stage committed partition 0 at %d, past the record of a newer format at %d", got, at)
	}
	if got := malformed(); got != 1 {
		t.Errorf("pinsync_changes_malformed_total = %v; want 1: a record of a newer format is not malformed", got)
	}
}

// TestChangelogOfANewerFormatHaltsItsPartition: a changelog record of a
// format version this pinsync does not read is neither skipped at restore
// (its profile would be lost) nor taken for a tombstone: the input
// partition halts before reading anything, with the reason, one error
// line, and no commit of it; the other partition goes on.
func TestChangelogOfANewerFormatHaltsItsPartition(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 47, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })
	m.stop(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	before := fetchCommitted(t, cl, cfg.Group)

	newer := append([]byte{profiles.StateVersion + 1}, make([]byte, 40)...)
	writeRecord(t, r, cfg.Group+".changelog", 0, topic+"\x02"+strings.Repeat("k", 12), newer)
	r.produce(rest)
	log, errs := newErrorLog()
	m = r.startWithLog(cfg, log)
	wantHalted(t, m, "profiles", topic, "unknown_version")
	waitFor(t, 30*time.Second, "partition 1 to go on", func() bool {
		return fetchCommitted(t, cl, cfg.Group)[1] > before[1]
	})
	m.stopAnyway()
	if got := fetchCommitted(t, cl, cfg.Group)[0]; got != before[0] {
		t.Errorf("input partition 0 committed at %d over a state it could not read; want %d", got, before[0])
	}
	var lines int
	for _, l := range errs() {
		if strings.Contains(l, "input partition stopped") && strings.Contains(l, "reason=unknown_version") {
			lines++
		}
	}
	if lines != 1 {
		t.Errorf("%d error lines for the halted partition; want one:\n%s", lines, strings.Join(errs(), "\n"))
	}
}

// TestANewerFormatGenerationRefusesTheStart: once the deployment's layout
// says its writers write a format generation this pinsync does not read
// (raised after every replica was upgraded), this pinsync refuses to start
// rather than halt at the first record it cannot read.
func TestANewerFormatGenerationRefusesTheStart(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	cfg := engineConfig()
	m := r.start(cfg)
	waitFor(t, 20*time.Second, "the engine to join", func() bool { return m.eng.Ready() == nil })
	m.stop(t)
	ctx := context.Background()
	ct, err := control.Open(ctx, control.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(r.brokers...)}, Topic: cfg.Group + ".control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	l, ok, err := ct.Layout(ctx)
	if err != nil || !ok {
		t.Fatalf("layout: %+v, %v, %v", l, ok, err)
	}
	l.Formats = consumer.Formats + 1
	if err := ct.RecordLayout(ctx, l); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, r, cfg, cfg.Group+".control", "format generation 2")
}
