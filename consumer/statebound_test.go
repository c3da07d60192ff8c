package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestAProfileInMoreAudiencesThanItsRecordHoldsIsDeadLettered: the
// changelog takes records of 64 KiB (its max.message.bytes) and one
// profile enters 150 audiences of the longest keys, more than its
// changelog record can hold. The record that would take the profile past
// it is dead-lettered with reason state_too_large, unapplied; the
// partition never writes a record it cannot write, so it goes on: every
// input record is committed, every entry is either in its list or
// dead-lettered, and another profile's lists are exact.
func TestAProfileInMoreAudiencesThanItsRecordHoldsIsDeadLettered(t *testing.T) {
	r := newRig(t, 1, sandbox.Config{})
	cfg := engineConfig()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	compact, limit := "compact", "65536"
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, -1,
		map[string]*string{"cleanup.policy": &compact, "max.message.bytes": &limit}, cfg.Group+".changelog")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	record := func(profile string, msg map[string]any) stream.Record {
		b, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		return stream.Record{Key: []byte(profile), Value: b}
	}
	entered := func(p, aud string) stream.Record {
		return record(p, map[string]any{
			"type": "track", "event": "Audience Entered", "userId": p,
			"properties": map[string]any{"audience_key": aud},
			"context":    map[string]any{"traits": map[string]any{"email": p + "@example.com"}},
		})
	}
	const n = 150
	var recs []stream.Record
	auds := make([]string, n)
	for i := range auds {
		// 150 characters of 4 bytes: the longest key the decoder takes.
		auds[i] = fmt.Sprintf("%04d", i) + strings.Repeat("\U0001F600", 146)
		recs = append(recs, entered("heavy", auds[i]))
	}
	recs = append(recs, entered("light", "vip"), entered("light2", "vip"))
	r.produce(recs)
	m := r.start(cfg)
	waitFor(t, 60*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(recs)) })

	heavy, err := ident.OfString(ident.Email, "heavy@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var in int
	for _, set := range r.actual() {
		if _, ok := set[heavy]; ok {
			in++
		}
	}
	want, _ := oracle(t, recs[n:])
	for k, set := range want {
		if got := r.actual()[k]; !stream.Diff(map[stream.ListKey]stream.Set{k: set}, map[stream.ListKey]stream.Set{k: got}).OK() {
			t.Errorf("list %s: %d records, want %d", k, len(got), len(set))
		}
	}
	dead := int(seriesWhere(t, m.reg, "pinsync_dead_letters_total", map[string]string{"reason": "state_too_large"},
		func(mm *dto.Metric) float64 { return mm.GetCounter().GetValue() }))
	m.stop(t)
	if dlq := readAll(t, r.brokers, cfg.Group+".dlq", dead, 10*time.Second); len(dlq) != dead {
		t.Errorf("%d dead letters in the topic; the metric counts %d", len(dlq), dead)
	}
	if in == 0 || in == n || in+dead != n {
		t.Errorf("the heavy profile is in %d lists and %d entries were dead-lettered; want each of %d entries in one or the other, some in each", in, dead, n)
	}
}
