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

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestInputTopicRecreatedIsNotReadFromTheOldPosition: the input topic is
// deleted and created again under a stopped deployment, and the platform
// writes a few records to it. The next start is refused: the layout
// recorded the input's topic id. With the layout forgotten (without the
// runbook's other steps), each partition's restored position is past the
// new topic's end: the partition halts (topic_reset) instead of dropping
// every record below the position as already applied.
func TestInputTopicRecreatedIsNotReadFromTheOldPosition(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 53, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	first, rest := recs[:900], recs[900:]
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the first records committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })
	m.stop(t)

	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the input topic to be created again", func() bool {
		resp, err := adm.CreateTopic(ctx, 2, -1, nil, topic)
		return err == nil && resp.Err == nil
	})
	r.produce(rest)
	wantRefused(t, r, cfg, topic, "deleted and created again")

	ct, err := control.Open(ctx, control.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(r.brokers...)}, Topic: cfg.Group + ".control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.ResetLayout(ctx); err != nil {
		t.Fatal(err)
	}
	before := r.actual()
	m = r.start(cfg)
	wantHalted(t, m, "profiles", topic, "topic_reset")
	if err := m.eng.Ready(); !strings.Contains(err.Error(), "deleted and created again, or truncated") {
		t.Errorf("Ready: %v; want the reason", err)
	}
	m.stopAnyway()
	if got := fetchCommitted(t, cl, cfg.Group); got[0] > int64(len(first)) || got[1] > int64(len(first)) {
		t.Errorf("committed %v on the new topic", got)
	}
	if !mapsEqualSets(before, r.actual()) {
		t.Errorf("the lists changed while the partitions were halted")
	}
}

// TestInputDeletedBeforeItWasReadHaltsThePartition: records of the input
// the profile stage has not read are deleted (a retention shorter than its
// lag, kafka-delete-records) while it is stopped. At the next start the
// input starts past the restored position: the partition halts
// (topic_reset) naming the lost offsets, and nothing is committed past
// them.
func TestInputDeletedBeforeItWasReadHaltsThePartition(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 59, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })
	m.stop(t)
	r.produce(rest)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	before := fetchCommitted(t, cl, cfg.Group)
	deleteAll(t, kadm.NewClient(cl), topic)

	m = r.start(cfg)
	wantAllHalted(t, m, "profiles", topic, "topic_reset", 2)
	if err := m.eng.Ready(); !strings.Contains(err.Error(), "were deleted before the profile stage read them") {
		t.Errorf("Ready: %v; want the reason", err)
	}
	m.stopAnyway()
	after := fetchCommitted(t, cl, cfg.Group)
	for p, o := range before {
		if after[p] != o {
			t.Errorf("input partition %d committed at %d over deleted records; want %d", p, after[p], o)
		}
	}
}

// mapsEqualSets reports whether two readings of the sandbox hold the same
// lists.
func mapsEqualSets(a, b map[stream.ListKey]stream.Set) bool { return stream.Diff(a, b).OK() }

// TestInputDeletedUnderTheRunningReaderHaltsThePartition: while the
// profile stage runs, its fetches of the input fail for a while (a slow or
// unreachable leader) and the records it has not read meanwhile are
// deleted. When fetching works again its position is below the log start:
// the client does not move it to the log start by itself, the partition
// halts (gap) and nothing is committed past what was read.
func TestInputDeletedUnderTheRunningReaderHaltsThePartition(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 71, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })

	id := r.topicID(topic)
	var failing atomic.Bool
	failing.Store(true)
	r.cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.cluster.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		hit := false
		for _, tp := range fr.Topics {
			hit = hit || tp.Topic == topic || tp.TopicID == id
		}
		if !hit || !failing.Load() {
			return nil, nil, false
		}
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
	r.produce(rest)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends := deleteAll(t, kadm.NewClient(cl), topic)
	failing.Store(false)

	wantAllHalted(t, m, "profiles", topic, "gap", 2)
	m.stopAnyway()
	committed := fetchCommitted(t, cl, cfg.Group)
	var sum int64
	for p, c := range committed {
		sum += c
		if c >= ends[p] {
			t.Errorf("input partition %d committed at %d, over records deleted up to %d", p, c, ends[p])
		}
	}
	if sum != int64(len(first)) {
		t.Errorf("committed %d; want %d, what was read before the deletion", sum, len(first))
	}
}

// TestANewDeploymentStartsAtTheInputsLogStart: the input's first records
// were deleted before the deployment ever ran (its group never consumed
// it). Reading starts at each partition's log start, without a halt: what
// the log no longer holds was never the deployment's to read.
func TestANewDeploymentStartsAtTheInputsLogStart(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 73, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deleteAll(t, kadm.NewClient(cl), topic)
	r.produce(rest)
	cfg := engineConfig()
	m := r.start(cfg)
	want, _ := oracle(t, rest)
	r.converge(want, 30*time.Second)
	waitFor(t, 30*time.Second, "everything committed", func() bool { return r.committed(cfg.Group) == int64(len(recs)) })
	if err := m.eng.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	m.stop(t)
}
