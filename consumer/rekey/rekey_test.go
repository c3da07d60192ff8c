package rekey

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestStaticMemberLeavesOnlyWhenItStopsForGood: a static member of the
// re-key group that closes for a restart stays in the group for its
// instance id; one that stops for good (Deps.Leave) leaves it.
func TestStaticMemberLeavesOnlyWhenItStopsForGood(t *testing.T) {
	for _, forGood := range []bool{false, true} {
		t.Run(fmt.Sprintf("for good %v", forGood), func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "in.rekeyed"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			kopts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.InstanceID("replica-0")}
			s, err := New(Config{Input: "in", Output: "in.rekeyed", Partitions: 2, Group: "g.rekey", ProfilesGroup: "g",
				TransactionalID: TransactionalID("g", "replica-0"), TransactionTimeout: 10 * time.Second},
				Deps{Kafka: kopts, Leave: func() bool { return forGood }})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			members := func() int {
				d, err := adm.DescribeGroups(t.Context(), "g.rekey")
				if err != nil {
					t.Fatal(err)
				}
				return len(d["g.rekey"].Members)
			}
			for members() == 0 {
				time.Sleep(20 * time.Millisecond) // joining
			}
			s.Close(t.Context())
			if got, want := members(), map[bool]int{false: 1, true: 0}[forGood]; got != want {
				t.Errorf("%d members after Close, want %d", got, want)
			}
		})
	}
}
