package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/control"
)

// TestLayoutShowsTheRecordAndTheTopicAndResets: pinsync layout prints the
// layout the deployment recorded beside the changes topic as it is (here
// grown by a partition), and --reset forgets the record.
func TestLayoutShowsTheRecordAndTheTopicAndResets(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events", "pinsync.changes"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	ct, err := control.Open(ctx, control.Config{Kafka: opts, Topic: "pinsync.control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.RecordLayout(ctx, control.Layout{ChangesPartitions: 2, ChangesTopicID: "00ff"}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreatePartitions(ctx, 1, "pinsync.changes"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pinsync.yaml")
	conf := fmt.Sprintf("kafka:\n  brokers: [%q]\n  topics: [events]\npinterest:\n  ad_account_id: \"549755885175\"\n  app_id: \"1234\"\n  app_secret: s\n", c.ListenAddrs()[0])
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runWith(t, runLayout, "", "--config", path)
	if code != 0 || !strings.Contains(out, "recorded: pinsync.changes has 2 partitions, topic id 00ff") ||
		!strings.Contains(out, "now:      pinsync.changes has 3 partitions") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, errOut = runWith(t, runLayout, "", "--config", path, "--reset")
	if code != 0 || !strings.Contains(out, "reset:") {
		t.Fatalf("--reset: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, ok, err := ct.Layout(ctx); err != nil || ok {
		t.Fatalf("layout after --reset: recorded %v, %v", ok, err)
	}
}

// TestLayoutFormatsRaisesTheGenerationOnly: --formats records a format
// generation this pinsync reads, refuses one it does not read or one that
// would go back, and the layout says it.
func TestLayoutFormatsRaisesTheGenerationOnly(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events", "pinsync.changes"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	ct, err := control.Open(ctx, control.Config{Kafka: opts, Topic: "pinsync.control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.RecordLayout(ctx, control.Layout{ChangesPartitions: 2}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pinsync.yaml")
	conf := fmt.Sprintf("kafka:\n  brokers: [%q]\n  topics: [events]\npinterest:\n  ad_account_id: \"549755885175\"\n  app_id: \"1234\"\n  app_secret: s\n", c.ListenAddrs()[0])
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	newest := strconv.Itoa(consumer.Formats)
	if code, out, errOut := runWith(t, runLayout, "", "--config", path, "--formats", strconv.Itoa(consumer.Formats+1)); code != 2 || !strings.Contains(errOut, "reads format generations up to "+newest) {
		t.Fatalf("--formats past this pinsync's: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if code, out, errOut := runWith(t, runLayout, "", "--config", path, "--formats", newest); code != 0 || !strings.Contains(out, "writers write generation "+newest) {
		t.Fatalf("--formats %s: exit %d\nstdout:\n%s\nstderr:\n%s", newest, code, out, errOut)
	}
	if l, ok, err := ct.Layout(ctx); err != nil || !ok || l.Formats != consumer.Formats || l.ChangesPartitions != 2 {
		t.Fatalf("layout after --formats: %+v, %v, %v", l, ok, err)
	}
	if code, out, errOut := runWith(t, runLayout, "", "--config", path, "--formats", "0"); code != 0 || !strings.Contains(out, "format generation "+newest) {
		t.Fatalf("layout: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
