package consumer_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestUnwritableChangelogStopsCommitsAndShutdownEnds: while the broker
// refuses every write to the changelog (a retriable error, as from a
// partition without enough in-sync replicas), the profile stage's
// transactions fail within their timeout, nothing is committed past the
// records before the fault, and a shutdown ends within its grace. Once the
// topic takes writes again, a new member converges exactly.
func TestUnwritableChangelogStopsCommitsAndShutdownEnds(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 3, Events: 3000, Seed: 21, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	cfg := engineConfig()
	cfg.TransactionTimeout = 2 * time.Second
	cfg.ShutdownGrace = 5 * time.Second
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })

	changelog := cfg.Group + ".changelog"
	id := r.topicID(changelog)
	var refusing atomic.Bool
	var refused atomic.Int64
	refusing.Store(true)
	r.cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.cluster.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		hit := false
		for _, tp := range pr.Topics {
			hit = hit || tp.Topic == changelog || tp.TopicID == id
		}
		if !hit || !refusing.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.NotEnoughReplicas.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})

	r.produce(rest)
	waitFor(t, 60*time.Second, "two failed transactions", func() bool {
		return counterValue(t, m.reg, "pinsync_transactions_total", "outcome", "aborted") >= 2
	})
	if got := r.committed(cfg.Group); got != int64(len(first)) {
		t.Errorf("committed %d while the changelog refused writes; want %d (the records before the fault)", got, len(first))
	}
	if refused.Load() == 0 {
		t.Fatal("no write to the changelog was refused: the fault was not injected")
	}

	// A shutdown ends within its grace even though the last transaction
	// cannot be written; what it could not write stays uncommitted.
	m.cancel()
	m.cancel = nil
	select {
	case <-m.done:
	case <-time.After(cfg.ShutdownGrace + 2*cfg.TransactionTimeout + 10*time.Second):
		t.Fatal("the shutdown did not end while the changelog refused writes")
	}
	if got := r.committed(cfg.Group); got != int64(len(first)) {
		t.Errorf("committed %d at shutdown; want %d", got, len(first))
	}

	refusing.Store(false)
	r.start(cfg)
	r.converge(want, 60*time.Second)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(recs)) })
}
