package consumer_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// toolPath returns the path of a Debian tool, skipping the test when it is
// missing (failing it in CI, where it must be installed).
func toolPath(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (%v): CI must install Debian package %s", name, err, pkg)
	}
	t.Skipf("%s not found: install Debian package %s to run this test", name, pkg)
	return ""
}

// TestKcatProducedEventsAreConsumed: records produced by kcat (librdkafka)
// with partitioner=murmur2_random land on the partition pinsync and
// franz-go expect for their key, and the lists converge to the oracle.
func TestKcatProducedEventsAreConsumed(t *testing.T) {
	kcat := toolPath(t, "kcat", "kcat")
	const partitions = 5
	r := newRig(t, partitions, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 4, Events: 3000, Seed: 21, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)

	var in bytes.Buffer
	for i, rec := range recs {
		if bytes.ContainsAny(rec.Key, "\t\n") || bytes.ContainsAny(rec.Value, "\t\n") || len(rec.Key) == 0 {
			t.Fatalf("record %d cannot be fed to kcat as one key\\tvalue line: key %q", i, rec.Key)
		}
		in.Write(rec.Key)
		in.WriteByte('\t')
		in.Write(rec.Value)
		in.WriteByte('\n')
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-P", "-q", "-b", strings.Join(r.brokers, ","), "-t", topic,
		"-K", "\t", "-X", "partitioner=murmur2_random")
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, stderr.String())
	}

	// Read everything back: each record sits on its key's partition, and
	// each key's records keep their order.
	got := readAll(t, r.brokers, topic, len(recs), 30*time.Second)
	if len(got) != len(recs) {
		t.Fatalf("read back %d of %d records", len(got), len(recs))
	}
	wantOrder := map[string][]string{}
	for _, rec := range recs {
		wantOrder[string(rec.Key)] = append(wantOrder[string(rec.Key)], string(rec.Value))
	}
	gotOrder := map[string][]string{}
	used := map[int32]bool{}
	for _, g := range got {
		if p := stream.Partition(g.Key, partitions); g.Partition != p {
			t.Fatalf("key %q on partition %d, want %d (murmur2)", g.Key, g.Partition, p)
		}
		used[g.Partition] = true
		gotOrder[string(g.Key)] = append(gotOrder[string(g.Key)], string(g.Value))
	}
	if len(used) != partitions {
		t.Fatalf("records on %d of %d partitions", len(used), partitions)
	}
	for k, vs := range wantOrder {
		if g := gotOrder[k]; len(g) != len(vs) || strings.Join(g, "\n") != strings.Join(vs, "\n") {
			t.Fatalf("records of key %q out of order or missing (%d of %d)", k, len(g), len(vs))
		}
	}

	m := r.start(engineConfig())
	r.converge(want, 60*time.Second)
	end := endOffsets(t, r.brokers)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed("pinsync-test") == end })
	m.stop(t)
}
