package consumer_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestOversizedMalformedRecordIsDeadLetteredAsItsHead: the input topic
// takes records of 4 MB, the dead-letter producer and topic about 1 MB. A
// malformed record of 2 MB is dead-lettered as its head with reason
// too_large and its source headers, and its partition goes on committing
// the records behind it, whose lists converge.
func TestOversizedMalformedRecordIsDeadLetteredAsItsHead(t *testing.T) {
	r := newRig(t, 1, sandbox.Config{})
	adm, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	big := "4194304"
	resps, err := kadm.NewClient(adm).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &big}}, topic)
	if err == nil {
		_, err = resps.On(topic, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	huge := append([]byte(`{"type":"track","event":"Audience Entered","userId":"p","properties":{"audience_key":"x","junk":"`),
		bytes.Repeat([]byte("z"), 2<<20)...) // never closed: malformed
	prod, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.ProducerBatchMaxBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("p"), Value: huge}).FirstErr(); err != nil {
		t.Fatalf("producing the oversized record: %v", err)
	}
	recs, _, err := stream.Collect(stream.Config{Profiles: 50, Audiences: 2, Events: 300, Seed: 5, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	r.produce(recs)
	want, _ := oracle(t, recs)

	m := r.start(engineConfig())
	r.converge(want, 30*time.Second)
	end := endOffsets(t, r.brokers)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed("pinsync-test") == end })
	m.stop(t)

	dlq := readAll(t, r.brokers, "pinsync-test.dlq", 1, 10*time.Second)
	if len(dlq) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dlq))
	}
	d := dlq[0]
	h := map[string]string{}
	for _, kv := range d.Headers {
		h[kv.Key] = string(kv.Value)
	}
	if h["pinsync.reason"] != "too_large" || h["pinsync.decode_reason"] == "" ||
		h["pinsync.original_bytes"] != strconv.Itoa(len(huge)+1) ||
		h["pinsync.source.topic"] != topic || h["pinsync.source.partition"] != "0" || h["pinsync.source.offset"] != "0" {
		t.Errorf("dead letter headers: %v", h)
	}
	if len(d.Value) >= len(huge) || !bytes.HasPrefix(huge, d.Value) || len(d.Value) == 0 {
		t.Errorf("dead letter value: %d bytes, want the record's head", len(d.Value))
	}
}
