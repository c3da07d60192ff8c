package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// misKeyedLog is the line a replica logs once per partition at its first
// record not keyed by its profile id.
const misKeyedLog = "input records not keyed by their profile id"

func fnv32a(b []byte) uint32 {
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32()
}

// keyStates counts the records, as the decoder reads them, whose key is
// missing and whose key is not their profile id.
func keyStates(t *testing.T, recs []*kgo.Record) (missing, notProfile int) {
	t.Helper()
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var ev schemas.Event
	for _, r := range recs {
		err := dec.Decode(r.Key, r.Value, &ev)
		var de *schemas.DecodeError
		switch {
		case errors.As(err, &de) && de.Reason == schemas.ReasonKeyMismatch:
			notProfile++
		case err != nil:
		case ev.Key == schemas.KeyMissing:
			missing++
		case ev.Key == schemas.KeyNotProfile:
			notProfile++
		}
	}
	return missing, notProfile
}

// TestMisKeyedInputIsCountedAndShown: pinsync needs all of a profile's
// events on one partition, by any partitioner used consistently. A stream
// keyed by profile id converges exactly and shows no mis-keyed record
// whether the producer partitions with murmur2 (franz-go's and the Java
// client's default) or FNV-1a (kafka-go's ReferenceHash and Sarama's
// NewReferenceHashPartitioner; Sarama's default). The same stream
// produced without keys, or keyed by messageId, is counted by
// pinsync_miskeyed_records_total{key}, shown per partition in /status
// (mis_keyed) and logged once per partition.
func TestMisKeyedInputIsCountedAndShown(t *testing.T) {
	const partitions = 3
	scfg := stream.Config{Profiles: 300, Audiences: 4, Events: 3000, Seed: 31, AudiencePrefix: "keys-",
		MalformedFraction: stream.None, NativeFraction: stream.None, MeanGap: time.Millisecond}
	gen := generate(t, scfg)
	want, _ := expected(t, gen)

	byProfile := func(r stream.Record) []byte { return r.Key }
	for _, tc := range []struct {
		name        string
		key         func(stream.Record) []byte
		partitioner kgo.Partitioner // nil: franz-go's default (murmur2 of the key; sticky without a key)
		hasher      kgo.PartitionerHasher
		misKeyed    bool
	}{
		{name: "keyed by profile, murmur2", key: byProfile},
		{name: "keyed by profile, FNV-1a reference hash", key: byProfile,
			partitioner: kgo.StickyKeyPartitioner(kgo.KafkaHasher(fnv32a)), hasher: kgo.KafkaHasher(fnv32a)},
		{name: "keyed by profile, FNV-1a as Sarama", key: byProfile,
			partitioner: kgo.StickyKeyPartitioner(kgo.SaramaCompatHasher(fnv32a)), hasher: kgo.SaramaCompatHasher(fnv32a)},
		{name: "unkeyed", key: func(stream.Record) []byte { return nil }, misKeyed: true},
		{name: "keyed by messageId", key: func(r stream.Record) []byte {
			var m struct{ MessageID string }
			if json.Unmarshal(r.Value, &m) != nil || m.MessageID == "" {
				t.Fatalf("a record without messageId: %s", r.Value)
			}
			return []byte(m.MessageID)
		}, misKeyed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.hasher != nil {
				// The test proves something only if FNV-1a places many
				// profiles elsewhere than murmur2 would.
				moved, seen := 0, map[string]bool{}
				for _, r := range gen {
					if !seen[string(r.Key)] {
						seen[string(r.Key)] = true
						if int32(tc.hasher(r.Key, partitions)) != stream.Partition(r.Key, partitions) {
							moved++
						}
					}
				}
				if moved < len(seen)/3 {
					t.Fatalf("FNV-1a places only %d of %d profiles elsewhere than murmur2", moved, len(seen))
				}
			}
			f := newFleet(t, partitions)
			rep := f.start(1)
			opts := []kgo.Opt{kgo.SeedBrokers(f.brokers...), kgo.DefaultProduceTopic(replicaTopic)}
			if tc.partitioner != nil {
				opts = append(opts, kgo.RecordPartitioner(tc.partitioner))
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			recs := make([]*kgo.Record, len(gen))
			for i, r := range gen {
				recs[i] = &kgo.Record{Key: tc.key(r), Value: r.Value}
				cl.Produce(t.Context(), recs[i], func(_ *kgo.Record, err error) {
					if err != nil {
						t.Errorf("produce: %v", err)
					}
				})
			}
			if err := cl.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			if tc.hasher != nil {
				for _, r := range recs {
					if want := int32(tc.hasher(r.Key, partitions)); r.Partition != want {
						t.Fatalf("record of %s on partition %d, the hasher says %d", r.Key, r.Partition, want)
					}
				}
			}
			wantMissing, wantNotProfile := keyStates(t, recs)
			if tc.misKeyed != (wantMissing+wantNotProfile > 0) {
				t.Fatalf("the stream has %d records without a key and %d keyed otherwise than their profile", wantMissing, wantNotProfile)
			}
			f.waitLagZero(90 * time.Second)

			missing, err1 := metricWith(rep.addr, "pinsync_miskeyed_records_total", `key="missing"`)
			notProfile, err2 := metricWith(rep.addr, "pinsync_miskeyed_records_total", `key="not_profile"`)
			if err := errors.Join(err1, err2); err != nil {
				t.Fatal(err)
			}
			if int(missing) != wantMissing || int(notProfile) != wantNotProfile {
				t.Errorf("pinsync_miskeyed_records_total: missing %v, not_profile %v; want %d, %d", missing, notProfile, wantMissing, wantNotProfile)
			}
			var st struct {
				MisKeyed []consumer.MisKeyed `json:"mis_keyed"`
			}
			_, body := httpGet(t, "http://"+rep.addr+"/status")
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatal(err)
			}
			var statusMissing, statusNotProfile int64
			byPartition := map[int32]bool{}
			for _, p := range st.MisKeyed {
				statusMissing += p.Missing
				statusNotProfile += p.NotProfile
				byPartition[p.Partition] = true
			}
			if int(statusMissing) != wantMissing || int(statusNotProfile) != wantNotProfile {
				t.Errorf("/status mis_keyed %+v: missing %d, not_profile %d; want %d, %d", st.MisKeyed, statusMissing, statusNotProfile, wantMissing, wantNotProfile)
			}
			_, page := httpGet(t, "http://"+rep.addr+"/")
			if shown := strings.Contains(page, `id="mis-keyed"`); shown != tc.misKeyed {
				t.Errorf("the status page shows mis-keyed records: %v, want %v", shown, tc.misKeyed)
			}
			if !tc.misKeyed {
				f.exact(want)
			}
			f.stop(1)
			logs, err := os.ReadFile(filepath.Join(f.dir, "replica-1.log"))
			if err != nil {
				t.Fatal(err)
			}
			lines := map[int32]int{}
			for line := range strings.Lines(string(logs)) {
				if strings.Contains(line, misKeyedLog) {
					var l struct{ Partition int32 }
					if err := json.Unmarshal([]byte(line), &l); err != nil {
						t.Fatal(err)
					}
					lines[l.Partition]++
				}
			}
			if len(lines) != len(byPartition) {
				t.Errorf("mis-keyed lines logged for partitions %v, want one for each of %v", lines, byPartition)
			}
			for p, n := range lines {
				if n != 1 {
					t.Errorf("partition %d: %d mis-keyed lines, want 1", p, n)
				}
			}
			for _, r := range recs {
				if len(r.Key) > 0 && bytes.Contains(logs, r.Key) {
					t.Fatalf("a record's key (%s) is in the log", r.Key)
				}
			}
		})
	}
}
