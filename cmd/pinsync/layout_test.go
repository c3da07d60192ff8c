package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

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
