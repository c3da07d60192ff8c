package consumer_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestRestoreFailureIsRetriedAndStallsOnlyItsPartition: the broker fails
// every fetch of one changelog partition when a new member restores it.
// The restore is retried (never taken as an empty changelog); the other
// partition restores and commits; Healthy reports the stuck partition
// once it has failed for UnhealthyAfter. When the fetches succeed again
// the partition restores, the lists end exact and Healthy is nil.
func TestRestoreFailureIsRetriedAndStallsOnlyItsPartition(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 3, Events: 4000, Seed: 17, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	cfg := engineConfig()
	cfg.UnhealthyAfter = time.Second
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m1 := r.start(cfg)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })
	m1.stop(t)

	adm, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	ctx := context.Background()
	changelog := cfg.Group + ".changelog"
	id := r.topicID(changelog)
	var failing atomic.Bool
	var failed atomic.Int64
	failing.Store(true)
	r.cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.cluster.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		hit := false
		for _, tp := range fr.Topics {
			if tp.Topic == changelog || tp.TopicID == id {
				for _, p := range tp.Partitions {
					hit = hit || p.Partition == 0
				}
			}
		}
		if !hit || !failing.Load() {
			return nil, nil, false
		}
		failed.Add(1)
		resp := fr.ResponseKind().(*kmsg.FetchResponse)
		for _, tp := range fr.Topics {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.UnknownServerError.Code
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})

	before := fetchCommitted(t, adm, cfg.Group)
	r.produce(rest)
	ends, err := ka.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end1, _ := ends.Lookup(topic, 1)
	m2 := r.start(cfg)
	waitFor(t, 60*time.Second, "partition 1 committed to its end", func() bool {
		return fetchCommitted(t, adm, cfg.Group)[1] == end1.Offset
	})
	waitFor(t, 30*time.Second, "Healthy to name the stuck partition", func() bool {
		err := m2.eng.Healthy()
		return err != nil && strings.Contains(err.Error(), topic+"/0")
	})
	if got := fetchCommitted(t, adm, cfg.Group)[0]; got != before[0] {
		t.Errorf("partition 0 committed %d while its state could not be restored; want %d", got, before[0])
	}
	if n := failed.Load(); n < 2 {
		t.Errorf("the changelog partition was fetched %d times while failing; want retries", n)
	}

	failing.Store(false)
	waitFor(t, 60*time.Second, "Healthy again", func() bool { return m2.eng.Healthy() == nil })
	r.converge(want, 60*time.Second)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(recs)) })
}
