package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/format"
	"github.com/pinsync/pinsync/schemas/stream"
)

// The partitioners of the producers in the README's "Set-up, per
// producer", each as the number of the partition a key goes to among n.
var (
	// kafkajs's DefaultPartitioner (Segment's Kafka destination): murmur2
	// of the key as the Java client, sign bit cleared, modulo n.
	kafkajsPartition = func(key []byte, n int) int32 { return stream.Partition(key, n) }
	// kafka-go's ReferenceHash (RudderStack): FNV-1a, sign bit cleared.
	referenceHashPartition = func(key []byte, n int) int32 { return int32(kgo.KafkaHasher(fnv32a)(key, n)) }
	// Sarama's default NewHashPartitioner (Snowbridge's Kafka target):
	// FNV-1a, its own sign rule.
	saramaHashPartition = func(key []byte, n int) int32 { return int32(kgo.SaramaCompatHasher(fnv32a)(key, n)) }
	// The Java client's default for a keyed record (Kafka Connect,
	// Debezium): murmur2.
	javaPartition = kafkajsPartition
)

// TestKafkajsDefaultPartitionerIsMurmur2: the partition kafkajs's
// DefaultPartitioner gives a keyed record is the one the Java client and
// franz-go give (stream.Partition): kafkajs's own murmur2 test vectors
// (src/producer/partitioners/default/murmur2.spec.js), sign bit cleared,
// modulo n.
func TestKafkajsDefaultPartitionerIsMurmur2(t *testing.T) {
	for key, h := range map[string]int32{
		"0": 971027396, "1": -1993445489, "128": -326012175, "2187": -1508407203, "16384": -325739742,
		"78125": -1654490814, "279936": 1462227128, "823543": -2014198330, "2097152": 607668903,
		"4782969": -1182699775, "10000000": -1830336757, "19487171": -1603849305, "35831808": -857013643,
		"62748517": -1167431028, "105413504": -381294639, "170859375": -1658323481, "100:48069": 1009543857,
	} {
		for _, n := range []int{1, 3, 7, 12, 1 << 20, math.MaxInt32} {
			if got, want := stream.Partition([]byte(key), n), int32(int(uint32(h)&0x7fffffff)%n); got != want {
				t.Errorf("key %q among %d partitions: %d, kafkajs %d", key, n, got, want)
			}
		}
	}
}

// alternate partitions the records by a and b in turn: two producers of
// one topic, each with its own partitioner.
func alternate(a, b func([]byte, int) int32) func([]byte, int) int32 {
	i := 0
	return func(key []byte, n int) int32 {
		i++
		if i%2 == 0 {
			return b(key, n)
		}
		return a(key, n)
	}
}

// segmentProfileKey is the key the README maps in Segment's destination
// (Message Key: userId if it exists, else anonymousId), which is also the
// key RudderStack sets.
func segmentProfileKey(t *testing.T, v []byte) []byte {
	t.Helper()
	var m struct{ UserID, AnonymousID *string }
	if err := json.Unmarshal(v, &m); err != nil {
		t.Fatalf("a Segment record that is not JSON: %s", v)
	}
	switch {
	case m.UserID != nil:
		return []byte(*m.UserID)
	case m.AnonymousID != nil:
		return []byte(*m.AnonymousID)
	}
	t.Fatalf("a Segment record with neither userId nor anonymousId: %s", v)
	return nil
}

// withAnonymousProfiles turns a third of the profiles anonymous: their
// Segment records carry their id as anonymousId, without userId.
func withAnonymousProfiles(recs []stream.Record) []stream.Record {
	out := make([]stream.Record, len(recs))
	for i, r := range recs {
		r = r.Clone()
		if fnv32a(r.Key)%3 == 0 {
			r.Value = bytes.Replace(r.Value, []byte(`,"userId":`), []byte(`,"anonymousId":`), 1)
		}
		out[i] = r
	}
	return out
}

// connectNativeSchema is the Connect schema of a native event as
// JsonConverter writes it with schemas.enable=true: a struct of the native
// members.
const connectNativeSchema = `{"type":"struct","name":"pinsync.NativeEvent","optional":false,"fields":[` +
	`{"field":"type","type":"string","optional":false},{"field":"profile","type":"string","optional":false},` +
	`{"field":"audience","type":"string","optional":true},{"field":"audience_name","type":"string","optional":true},` +
	`{"field":"ad_account_id","type":"string","optional":true},{"field":"member","type":"boolean","optional":true},` +
	`{"field":"identifiers","type":"struct","optional":true,"fields":[` +
	`{"field":"email","type":"array","items":{"type":"string","optional":false},"optional":true},` +
	`{"field":"idfa","type":"array","items":{"type":"string","optional":false},"optional":true},` +
	`{"field":"maid","type":"array","items":{"type":"string","optional":false},"optional":true}]},` +
	`{"field":"timestamp","type":"string","optional":true}]}`

// roundRobinBursts assigns the records to partitions in turn, as kafkajs
// does records without a key, and cuts them into bursts: a burst ends
// before a record whose profile has an event of the burst on another
// partition, so that the re-key stage, reading a burst before the next is
// produced, keeps each profile's order (see the README, Re-keying, Order).
func roundRobinBursts(recs []stream.Record, values []*kgo.Record, n int) [][]*kgo.Record {
	var out [][]*kgo.Record
	var b []*kgo.Record
	seen := map[string]int32{}
	for i, r := range values {
		r.Topic, r.Partition = replicaTopic, int32(i%n)
		profile := string(recs[i].Key)
		if at, ok := seen[profile]; ok && at != r.Partition {
			out, b, seen = append(out, b), nil, map[string]int32{}
		}
		seen[profile] = r.Partition
		b = append(b, r)
	}
	return append(out, b)
}

// TestProducerRecipesConvergeExactly: each producer of the README's
// "Set-up, per producer", with the settings the README gives, writes one
// stream as that producer does (its value format, its key, its
// partitioner), and pinsync, configured as the README says, leaves the
// lists exactly as the oracle says with no record counted as mis-keyed.
// Segment's destination left at its default (no key: kafkajs spreads the
// records round-robin) converges with kafka.rekey. The last two cases
// must fail: Segment's default without kafka.rekey (every record counted
// as mis-keyed, the lists wrong), and Segment and RudderStack writing one
// topic, each keyed by profile but hashing its own way (no record
// counted, the lists wrong all the same).
func TestProducerRecipesConvergeExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const partitions = 3
	segment := withAnonymousProfiles(generate(t, stream.Config{Profiles: 300, Audiences: 4, Events: 2000, Seed: 67,
		AudiencePrefix: "prod-", MalformedFraction: stream.None, NativeFraction: stream.None, MeanGap: time.Millisecond}))
	// Without a key, kafkajs sends a profile's events sent together to
	// several partitions: the re-key case produces bursts small enough
	// to keep each profile's order, so its stream is shorter.
	unkeyed := withAnonymousProfiles(generate(t, stream.Config{Profiles: 300, Audiences: 4, Events: 1000, Seed: 73,
		AudiencePrefix: "prod-", MalformedFraction: stream.None, NativeFraction: stream.None, MeanGap: time.Millisecond}))
	native := generate(t, stream.Config{Profiles: 300, Audiences: 4, Events: 2000, Seed: 71,
		AudiencePrefix: "prod-", MalformedFraction: stream.None, NativeFraction: 1, MeanGap: time.Millisecond})
	for _, recs := range [][]stream.Record{segment, unkeyed, native} {
		if rejected(t, recs) != 0 {
			t.Fatal("the stream has records the decoder refuses")
		}
	}
	anonymous := 0
	for _, r := range segment {
		if bytes.Contains(r.Value, []byte(`"anonymousId":`)) {
			anonymous++
		}
	}
	if anonymous < len(segment)/5 {
		t.Fatalf("only %d of %d Segment records are anonymous", anonymous, len(segment))
	}

	script, err := os.ReadFile(filepath.Join("testdata", "snowbridge-transform.js"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, script) {
		t.Fatal("the README does not show testdata/snowbridge-transform.js as it is")
	}

	plain := func(r stream.Record) []byte { return r.Value }
	for _, tc := range []struct {
		name  string
		recs  []stream.Record
		kind  format.Kind // the input format pinsync reads (kafka.input_format.kind)
		rekey bool        // kafka.rekey
		key   func(t *testing.T, r stream.Record) []byte
		value func(stream.Record) []byte
		part  func(key []byte, n int) int32 // nil: round-robin, as kafkajs without a key
		// inexact: the case must fail, the lists not as the oracle says;
		// misKeyed: with every record counted as mis-keyed (else none).
		inexact, misKeyed bool
	}{
		{name: "segment-actions, Message Key userId else anonymousId", recs: segment, kind: format.JSON,
			key: func(t *testing.T, r stream.Record) []byte { return segmentProfileKey(t, r.Value) }, value: plain, part: kafkajsPartition},
		{name: "segment-actions, no key, kafka.rekey", recs: unkeyed, kind: format.JSON, rekey: true, value: plain},
		{name: "rudderstack JSON", recs: segment, kind: format.JSON,
			key: func(t *testing.T, r stream.Record) []byte { return segmentProfileKey(t, r.Value) }, value: plain, part: referenceHashPartition},
		{name: "snowbridge transform", recs: native, kind: format.JSON,
			key: func(_ *testing.T, r stream.Record) []byte { return r.Key }, value: plain, part: saramaHashPartition},
		{name: "kafka connect, ValueToKey and ExtractField, JsonConverter schemas.enable", recs: native, kind: format.ConnectJSON,
			key: func(_ *testing.T, r stream.Record) []byte { return r.Key },
			value: func(r stream.Record) []byte {
				return []byte(`{"schema":` + connectNativeSchema + `,"payload":` + string(r.Value) + `}`)
			}, part: javaPartition},
		{name: "debezium outbox event router, JsonConverter schemas.enable", recs: native, kind: format.ConnectJSON,
			key: func(_ *testing.T, r stream.Record) []byte { return r.Key },
			value: func(r stream.Record) []byte {
				b, _ := json.Marshal(string(r.Value))
				return []byte(`{"schema":{"type":"string","optional":true},"payload":` + string(b) + `}`)
			}, part: javaPartition},
		{name: "registry avro, confluent prefix, FNV-1a reference hash", recs: native, kind: format.Avro,
			key: func(_ *testing.T, r stream.Record) []byte { return r.Key }, part: referenceHashPartition},
		{name: "segment-actions, no key, without kafka.rekey: wrong", recs: segment, kind: format.JSON, value: plain,
			inexact: true, misKeyed: true},
		{name: "segment-actions and rudderstack into one topic: wrong", recs: segment, kind: format.JSON,
			key: func(t *testing.T, r stream.Record) []byte { return segmentProfileKey(t, r.Value) }, value: plain,
			part: alternate(kafkajsPartition, referenceHashPartition), inexact: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f *fleet
			var reg *formatRig
			if tc.rekey {
				settings := fastSettings
				settings.kafka = "  rekey: true\n"
				f = newFleetWith(t, partitions, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited}, settings)
			} else {
				reg = newFormatRig(t, format.Config{Kind: tc.kind})
				f = reg.fleet
			}
			if f.partitions != partitions {
				t.Fatalf("%d partitions, want %d", f.partitions, partitions)
			}
			recs := tc.recs
			var out []*kgo.Record
			if tc.kind.Registered() {
				out, recs = reg.encode(recs, "")
				// The published native schema carries most native records
				// (see formats_test.go); the oracle is built from those.
				if len(recs) < len(tc.recs)*9/10 {
					t.Fatalf("the registry format carries %d of %d records", len(recs), len(tc.recs))
				}
			} else {
				for _, r := range recs {
					out = append(out, &kgo.Record{Value: tc.value(r)})
				}
			}
			want, _ := expected(t, recs)
			if len(want) == 0 {
				t.Fatal("the stream fills no list")
			}
			for i, r := range out {
				r.Key = nil
				if tc.key != nil {
					r.Key = tc.key(t, recs[i])
				}
			}
			rep := f.start(1)
			if tc.part == nil {
				bursts := roundRobinBursts(recs, out, partitions)
				t.Logf("%d records in %d bursts", len(out), len(bursts))
				for _, b := range bursts {
					if err := f.kcl.ProduceSync(t.Context(), b...).FirstErr(); err != nil {
						t.Fatal(err)
					}
					if tc.rekey {
						f.waitGroupLagZero(replicaGroup+".rekey", replicaTopic, time.Minute)
					}
				}
			} else {
				for _, r := range out {
					r.Topic, r.Partition = replicaTopic, tc.part(r.Key, partitions)
				}
				if err := f.kcl.ProduceSync(t.Context(), out...).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.rekey {
				f.waitGroupLagZero(replicaGroup, replicaGroup+".rekeyed", time.Minute)
			} else {
				f.waitLagZero(time.Minute)
			}
			misKeyed, err := metric(rep.addr, "pinsync_miskeyed_records_total")
			if err != nil {
				t.Fatal(err)
			}
			if tc.inexact {
				if wantMisKeyed := map[bool]int{true: len(out)}[tc.misKeyed]; int(misKeyed) != wantMisKeyed {
					t.Errorf("pinsync_miskeyed_records_total = %v, want %d", misKeyed, wantMisKeyed)
				}
				if d := stream.Diff(want, f.actual()); d.OK() {
					t.Error("the lists are as the oracle says without re-keying; the recipes prove little")
				} else {
					t.Logf("as expected, %d records missing from the lists, %d extra", d.Missing, d.Extra)
				}
				return
			}
			if misKeyed != 0 {
				t.Errorf("pinsync_miskeyed_records_total = %v, want 0", misKeyed)
			}
			f.exact(want)
		})
	}
}
