package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// backlogTime is the timestamp of the test's records: written an hour
// before pinsync reads them, as a backlog is.
var backlogTime = time.Now().Add(-time.Hour)

// rekeyBurst is a run of records produced together: the re-key stage reads
// a burst before the next is produced, so that a profile's events reach
// the re-keyed topic in the stream's order even when they are on several
// input partitions (a stream not keyed by profile has no order between
// partitions; see the README, Re-keying).
type rekeyBurst []*kgo.Record

// unkeyedBursts produces the stream without keys, as a sticky partitioner
// does: each burst of size records to one partition, the next burst to the
// next partition, so a profile's events are spread over every partition.
func unkeyedBursts(recs []stream.Record, partitions, size int) []rekeyBurst {
	var out []rekeyBurst
	for lo := 0; lo < len(recs); lo += size {
		var b rekeyBurst
		for _, r := range recs[lo:min(lo+size, len(recs))] {
			b = append(b, &kgo.Record{Topic: replicaTopic, Value: r.Value, Partition: int32(len(out) % partitions), Timestamp: backlogTime})
		}
		out = append(out, b)
	}
	return out
}

// messageIDBursts produces the stream keyed by each record's messageId
// (a record without one, native or malformed, by a unique id of its own),
// partitioned by murmur2 of the key. A burst ends before a record whose
// profile has an event of the burst on another partition.
func messageIDBursts(t *testing.T, recs []stream.Record, partitions int) []rekeyBurst {
	var out []rekeyBurst
	var b rekeyBurst
	seen := map[string]int32{}
	for i, r := range recs {
		var m struct{ MessageID string }
		key := []byte(fmt.Sprintf("record-%d", i))
		if json.Unmarshal(r.Value, &m) == nil && m.MessageID != "" {
			key = []byte(m.MessageID)
		}
		p := stream.Partition(key, partitions)
		if at, ok := seen[string(r.Key)]; ok && at != p {
			out, b, seen = append(out, b), nil, map[string]int32{}
		}
		seen[string(r.Key)] = p
		b = append(b, &kgo.Record{Topic: replicaTopic, Key: key, Value: r.Value, Partition: p, Timestamp: backlogTime})
	}
	if len(out) < 10 {
		t.Fatalf("only %d bursts: the stream does not spread profiles over partitions", len(out))
	}
	return append(out, b)
}

// groupLag is what group has not committed of topic: the sum over its
// partitions of the end offset minus the commit.
func (f *fleet) groupLag(ctx context.Context, group, topic string) (int64, error) {
	adm := kadm.NewClient(f.kcl)
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	committed := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			committed[o.Partition] = o.At
		}
	})
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) { lag += max(o.Offset-max(committed[o.Partition], 0), 0) })
	return lag, nil
}

// waitGroupLagZero waits until group has committed topic to its end.
func (f *fleet) waitGroupLagZero(group, topic string, within time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		lag, err := f.groupLag(f.t.Context(), group, topic)
		if err == nil && lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, r := range f.running() {
				b, _ := os.ReadFile(filepath.Join(f.dir, fmt.Sprintf("replica-%d.log", r.id)))
				f.t.Logf("the end of replica %d's log:\n%s", r.id, b[max(0, len(b)-6000):])
			}
			f.t.Fatalf("group %s: lag on %s still %d after %s (err %v)", group, topic, lag, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRekeyedInputConvergesExactly: a producer that does not key by
// profile id spreads each profile's events over the input partitions, and
// the profile stage, which holds a profile's state on one partition, gets
// the lists wrong. With kafka.rekey the same stream, produced (a) without
// keys and (b) keyed by messageId into 3 partitions, goes through the
// re-keyed topic; two replicas, one killed with kill -9 mid-stream and
// restarted, leave the lists exactly as the oracle says, and the
// dead-letter topic holds exactly the records a stream keyed by profile
// would have left there.
func TestRekeyedInputConvergesExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const partitions = 3
	recs := generate(t, stream.Config{Profiles: 600, Audiences: 4, Events: 3000, Seed: 53, AudiencePrefix: "rekey-",
		MeanGap: time.Millisecond})
	want, _ := expected(t, recs)
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0 // by a stream keyed by profile
	var ev schemas.Event
	for _, r := range recs {
		if dec.Decode(r.Key, r.Value, &ev) != nil {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("the stream has no record the decoder refuses")
	}
	for _, tc := range []struct {
		name   string
		bursts func(t *testing.T) []rekeyBurst
	}{
		{"unkeyed", func(*testing.T) []rekeyBurst { return unkeyedBursts(recs, partitions, 100) }},
		{"keyed by messageId", func(t *testing.T) []rekeyBurst { return messageIDBursts(t, recs, partitions) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settings := fastSettings
			settings.kafka = "  rekey: true\n"
			f := newFleetWith(t, partitions, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited}, settings)
			f.start(1)
			f.start(2)
			bursts := tc.bursts(t)
			rekeyGroup, rekeyed := replicaGroup+".rekey", replicaGroup+".rekeyed"
			for i, b := range bursts {
				if err := f.kcl.ProduceSync(t.Context(), b...).FirstErr(); err != nil {
					t.Fatal(err)
				}
				if i == len(bursts)/2 {
					// Mid-stream, with the burst just produced in flight.
					f.kill9(2)
					f.start(2)
				}
				f.waitGroupLagZero(rekeyGroup, replicaTopic, time.Minute)
			}
			f.waitGroupLagZero(replicaGroup, rekeyed, 2*time.Minute)
			f.exact(want)
			if n := len(f.committedRecords(replicaGroup + ".dlq")); n != refused {
				t.Errorf("%d records dead-lettered; a stream keyed by profile leaves %d", n, refused)
			}
			// Each replica is a member of the three groups, and ready.
			for _, r := range f.running() {
				var st struct {
					Joined bool                   `json:"joined"`
					Groups []consumer.GroupStatus `json:"groups"`
				}
				_, body := httpGet(t, "http://"+r.addr+"/status")
				if err := json.Unmarshal([]byte(body), &st); err != nil {
					t.Fatal(err)
				}
				stages := map[string]bool{}
				for _, g := range st.Groups {
					stages[g.Stage+" "+g.Group] = g.Member
				}
				if !st.Joined || len(stages) != 3 || !stages["rekey "+rekeyGroup] || !stages["profiles "+replicaGroup] {
					t.Errorf("replica %d: /status joined %v, groups %+v; want a member of the profile, list and re-key groups", r.id, st.Joined, st.Groups)
				}
				if code, body := httpGet(t, "http://"+r.addr+"/readyz"); code != 200 {
					t.Errorf("replica %d: /readyz %d %s", r.id, code, body)
				}
			}
		})
	}
}
