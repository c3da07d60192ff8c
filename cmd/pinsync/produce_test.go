package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
	"github.com/pinsync/pinsync/schemas/stream"
)

func produceIO() (*stdio, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &stdio{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) string { return "" }}, &out, &errb
}

// consumeAll reads n records from topic.
func consumeAll(t *testing.T, ctx context.Context, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(recs), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

func TestProduceWritesTheStreamByMurmur2Partition(t *testing.T) {
	const topic, partitions = "engage", 5
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	start := "2026-03-01T00:00:00Z"
	io, out, errb := produceIO()
	code := runProduce(ctx, io, []string{"--brokers", c.ListenAddrs()[0], "--topic", topic,
		"--profiles", "300", "--audiences", "5", "--events", "3000", "--seed", "9", "--start", start,
		"--malformed", "0.01", "--audience-prefix", "t_"})
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	if !strings.Contains(out.String(), "produced 3000 of 3000 records to engage") {
		t.Errorf("summary: %s", out)
	}

	// The same stream, generated here: on each partition the records must
	// come in generation order.
	st, _ := time.Parse(time.RFC3339, start)
	want, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 5, Events: 3000, Seed: 9,
		Start: st, MeanGap: time.Microsecond, MalformedFraction: 0.01, AudiencePrefix: "t_"})
	if err != nil {
		t.Fatal(err)
	}
	var wantBy [partitions][]stream.Record
	for _, r := range want {
		p := stream.Partition(r.Key, partitions)
		wantBy[p] = append(wantBy[p], r)
	}

	got := consumeAll(t, ctx, c.ListenAddrs()[0], topic, len(want))
	if len(got) != len(want) {
		t.Fatalf("consumed %d records, want %d", len(got), len(want))
	}
	var gotBy [partitions][]*kgo.Record
	for _, r := range got {
		if p := stream.Partition(r.Key, partitions); r.Partition != p {
			t.Fatalf("key %s on partition %d, murmur2 says %d", r.Key, r.Partition, p)
		}
		gotBy[r.Partition] = append(gotBy[r.Partition], r)
	}
	for p := range partitions {
		if len(gotBy[p]) != len(wantBy[p]) {
			t.Fatalf("partition %d: %d records, want %d", p, len(gotBy[p]), len(wantBy[p]))
		}
		for i, r := range gotBy[p] {
			if !bytes.Equal(r.Key, wantBy[p][i].Key) || !bytes.Equal(r.Value, wantBy[p][i].Value) {
				t.Fatalf("partition %d record %d:\n got %s %s\nwant %s %s", p, i, r.Key, r.Value, wantBy[p][i].Key, wantBy[p][i].Value)
			}
		}
	}
}

func TestProduceCreatesTheTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := []string{"--brokers", c.ListenAddrs()[0], "--topic", "fresh", "--create-topic", "--partitions", "3",
		"--profiles", "50", "--events", "400", "--rate", "100000"}
	for run := range 2 { // the second run finds the topic there
		io, out, errb := produceIO()
		if code := runProduce(ctx, io, args); code != 0 {
			t.Fatalf("run %d: exit %d\nstdout: %s\nstderr: %s", run, code, out, errb)
		}
		if wantMsg := []string{"created topic fresh with 3 partitions", "already exists"}[run]; !strings.Contains(errb.String(), wantMsg) {
			t.Errorf("run %d: stderr %q lacks %q", run, errb, wantMsg)
		}
	}
	recs := consumeAll(t, ctx, c.ListenAddrs()[0], "fresh", 800)
	parts := make(map[int32]int)
	for _, r := range recs {
		if p := stream.Partition(r.Key, 3); r.Partition != p {
			t.Fatalf("key %s on partition %d, murmur2 says %d", r.Key, r.Partition, p)
		}
		parts[r.Partition]++
	}
	if len(recs) != 800 || len(parts) != 3 {
		t.Errorf("%d records on %d partitions, want 800 on 3", len(recs), len(parts))
	}
}

func TestProduceRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},                                   // no topic
		{"--topic", "t", "--nope"},           // unknown flag
		{"--topic", "t", "--rate", "-1"},     // negative rate
		{"--topic", "t", "--profiles", "-5"}, // invalid stream config
		{"--topic", "t", "--start", "yesterday"},
		{"--topic", "t", "extra"},
	} {
		io, _, errb := produceIO()
		if code := runProduce(t.Context(), io, args); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errb)
		}
		if errb.Len() == 0 {
			t.Errorf("%v: nothing said on stderr", args)
		}
	}
	io, _, _ := produceIO()
	if code := runProduce(t.Context(), io, []string{"-h"}); code != 0 {
		t.Errorf("-h: exit %d, want 0", code)
	}
}

func TestProduceFailsWhenKafkaIsUnreachable(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	addr := c.ListenAddrs()[0]
	c.Close() // nothing listens there any more
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	io, _, errb := produceIO()
	if code := runProduce(ctx, io, []string{"--brokers", addr, "--topic", "t", "--events", "10"}); code != 1 {
		t.Errorf("exit %d, want 1 (stderr %q)", code, errb)
	}
}

// TestProduceWritesEachFormat: the stream produce writes in each format
// decodes, record by record on each partition, to the events the plain
// stream decodes to; a registry format's schema is registered first.
func TestProduceWritesEachFormat(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fake := srfake.New()
	defer fake.Close()
	reg, err := format.NewRegistry(format.RegistryConfig{URL: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	events, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const start, partitions = "2026-03-01T00:00:00Z", 3
	for _, tc := range []struct {
		name string
		args []string
		cfg  format.Config
	}{
		{"connect-json", []string{"--format", "connect-json"}, format.Config{Kind: format.ConnectJSON}},
		{"cloudevents-binary", []string{"--format", "cloudevents"}, format.Config{Kind: format.CloudEvents}},
		{"cloudevents-structured", []string{"--format", "cloudevents", "--cloudevents-mode", "structured"}, format.Config{Kind: format.CloudEvents}},
		{"avro", []string{"--format", "avro", "--registry", fake.URL()}, format.Config{Kind: format.Avro}},
		{"protobuf", []string{"--format", "protobuf", "--registry", fake.URL(), "--schema-id", "header"},
			format.Config{Kind: format.Protobuf, SchemaID: format.SchemaIDInHeader}},
		{"json-schema", []string{"--format", "json-schema", "--registry", fake.URL(), "--subject", "engage-json"}, format.Config{Kind: format.JSONSchema}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			topic := "t-" + tc.name
			io, out, errb := produceIO()
			args := append([]string{"--brokers", c.ListenAddrs()[0], "--topic", topic, "--create-topic", "--partitions", "3",
				"--profiles", "80", "--audiences", "4", "--events", "600", "--seed", "4", "--start", start, "--malformed", "0.02"}, tc.args...)
			if code := runProduce(ctx, io, args); code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errb)
			}
			registered := tc.cfg.Kind.Registered()
			nativeOnly := tc.cfg.Kind == format.Avro || tc.cfg.Kind == format.Protobuf
			st, _ := time.Parse(time.RFC3339, start)
			scfg := stream.Config{Profiles: 80, Audiences: 4, Events: 600, Seed: 4, Start: st, MeanGap: time.Microsecond, MalformedFraction: 0.02}
			if nativeOnly {
				scfg.NativeFraction = 1
			}
			gen, _, err := stream.Collect(scfg)
			if err != nil {
				t.Fatal(err)
			}
			// What each partition must hold, in order: an event, or a
			// rejection ("" for a Segment record the native schema
			// cannot carry, which produce leaves out).
			var want [partitions][]string
			var ev schemas.Event
			for _, r := range gen {
				p := stream.Partition(r.Key, partitions)
				err := events.Decode(r.Key, r.Value, &ev)
				var top map[string]json.RawMessage
				segment := json.Unmarshal(r.Value, &top) == nil && top["profile"] == nil
				switch {
				case err != nil:
					want[p] = append(want[p], "rejected")
				case nativeOnly && segment:
				default:
					want[p] = append(want[p], fmt.Sprintf("%+v", ev))
				}
			}
			n := 0
			for _, w := range want {
				n += len(w)
			}
			if registered && !fake.SubjectExists(map[bool]string{true: "engage-json", false: topic + "-value"}[tc.cfg.Kind == format.JSONSchema]) {
				t.Fatal("the schema was not registered")
			}
			d, err := format.NewDecoder(tc.cfg, reg, events)
			if err != nil {
				t.Fatal(err)
			}
			var got [partitions][]string
			for _, r := range consumeAll(t, ctx, c.ListenAddrs()[0], topic, n) {
				err := d.Decode(ctx, format.Record{Key: r.Key, Value: r.Value, Headers: r.Headers}, &ev)
				if errors.Is(err, format.ErrRegistryUnavailable) {
					t.Fatal(err)
				}
				if err != nil {
					got[r.Partition] = append(got[r.Partition], "rejected")
				} else {
					got[r.Partition] = append(got[r.Partition], fmt.Sprintf("%+v", ev))
				}
			}
			for p := range partitions {
				if !slices.Equal(got[p], want[p]) {
					t.Fatalf("partition %d: %d records decoded, want %d; first difference at %d", p, len(got[p]), len(want[p]), firstDiff(got[p], want[p]))
				}
			}
		})
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
