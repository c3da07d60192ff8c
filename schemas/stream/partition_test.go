package stream_test

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/schemas/stream"
)

func TestPartitionAgreesWithKgo(t *testing.T) {
	tp := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for _, n := range []int{1, 2, 3, 7, 12, 64, 1000} {
		for i := range 5000 {
			key := []byte(fmt.Sprintf("usr_%07d", i))
			if i%7 == 0 { // all remainders of the 4-byte blocks, and odd bytes
				key = append(key, byte(i), 0xff, byte(i>>8))[:len(key)+i%4]
			}
			want := tp.Partition(&kgo.Record{Key: key}, n)
			if got := stream.Partition(key, n); int(got) != want {
				t.Fatalf("Partition(%q, %d) = %d, kgo says %d", key, n, got, want)
			}
		}
	}
}

// TestPartitionMatchesJavaClient checks murmur2 against the values of the
// Java client's own test (UtilsTest.testMurmur2), through the partition
// each maps to.
func TestPartitionMatchesJavaClient(t *testing.T) {
	for key, javaHash := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		want := int32(int(javaHash&0x7fffffff) % 1009)
		if got := stream.Partition([]byte(key), 1009); got != want {
			t.Errorf("Partition(%q, 1009) = %d, want %d", key, got, want)
		}
	}
}
