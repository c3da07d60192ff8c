package rekey

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPartitionIsTheDefaultPartitioners: a re-keyed record goes where
// franz-go's default partitioner (and so the Java client's) puts its key.
func TestPartitionIsTheDefaultPartitioners(t *testing.T) {
	def := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for _, n := range []int{1, 3, 12, 100} {
		for i := range 2000 {
			key := fmt.Appendf(nil, "p%d%s", i, strings.Repeat("x", i%7)) // lengths with every remainder of 4
			if got, want := Partition(key, n), int32(def.Partition(&kgo.Record{Key: key}, n)); got != want {
				t.Fatalf("%q of %d partitions: %d, franz-go's default %d", key, n, got, want)
			}
		}
	}
}
