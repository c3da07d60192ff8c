package consumer_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// errorLog is a slog handler that keeps the messages of the records at
// error level, with their attributes, for tests that want one clear line.
type errorLog struct {
	min   slog.Level
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newErrorLog() (*slog.Logger, func() []string) { return newLevelLog(slog.LevelError) }

// newLevelLog is newErrorLog for the records at min or above, their level
// first.
func newLevelLog(min slog.Level) (*slog.Logger, func() []string) {
	h := errorLog{min: min, mu: &sync.Mutex{}, lines: &[]string{}}
	return slog.New(h), func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]string(nil), *h.lines...)
	}
}

func (h errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h errorLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	if h.min < slog.LevelError {
		b.WriteString(r.Level.String() + " ")
	}
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.lines = append(*h.lines, b.String())
	return nil
}

func (h errorLog) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return h
}

func (h errorLog) WithGroup(string) slog.Handler { return h }

// deleteAll deletes every record of topic, as a retention or an operator's
// DeleteRecords would, and returns the partitions' ends.
func deleteAll(t *testing.T, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		out[o.Partition] = o.Offset
		if o.Offset > 0 {
			offs.Add(kadm.Offset{Topic: topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
		}
	})
	resps, err := adm.DeleteRecords(ctx, offs)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// written sums the last stable offsets of topic's partitions: what
// committed transactions wrote there.
func written(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	lso, err := adm.ListCommittedOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	lso.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// stopAnyway stops an engine that cannot commit everything at its
// shutdown (what it holds waits for the next owner), and waits for it.
func (m *member) stopAnyway() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	<-m.done
}

// wantHalted waits until the engine is not ready for a halted partition of
// topic with reason, and until pinsync_partitions_halted counts it; it
// returns the halted partitions' count.
func wantHalted(t *testing.T, m *member, stage, topic, reason string) float64 {
	t.Helper()
	waitFor(t, 60*time.Second, "the engine not ready for a halted partition of "+topic, func() bool {
		err := m.eng.Ready()
		return err != nil && strings.Contains(err.Error(), topic+"/") && strings.Contains(err.Error(), "("+reason+":")
	})
	n := seriesWhere(t, m.reg, "pinsync_partitions_halted", map[string]string{"stage": stage, "reason": reason},
		func(mm *dto.Metric) float64 { return mm.GetGauge().GetValue() })
	if n < 1 {
		t.Errorf("pinsync_partitions_halted{stage=%q,reason=%q} = %v while the engine reports %v", stage, reason, n, m.eng.Ready())
	}
	return n
}

// wantAllHalted waits until n partitions of stage are halted for reason
// (pinsync_partitions_halted), and until the engine is not ready for them.
func wantAllHalted(t *testing.T, m *member, stage, topic, reason string, n float64) {
	t.Helper()
	wantHalted(t, m, stage, topic, reason)
	waitFor(t, 60*time.Second, "every partition halted", func() bool {
		return seriesWhere(t, m.reg, "pinsync_partitions_halted", map[string]string{"stage": stage, "reason": reason},
			func(mm *dto.Metric) float64 { return mm.GetGauge().GetValue() }) == n
	})
}

// TestChangesDeletedBeforeTheListStageReadThemHaltThePartition: the list
// stage is behind (Pinterest is down and the replica stops) when the
// changes it has not read are deleted, as a retention would. The next
// start finds the group's committed offset below the log start: the
// partition halts there, not ready with the partition named, a metric and
// one error log line per partition; nothing is committed past the gap, by
// the list stage nor, through the commit rule, by the profile stage.
func TestChangesDeletedBeforeTheListStageReadThemHaltThePartition(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 4, Events: 3000, Seed: 31, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	changesTopic := cfg.Group + ".changes"
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })
	m.stop(t)
	listsBefore := r.committed(cfg.Group + ".lists")

	// Pinterest is down: the profile stage writes the second half's
	// changes, the list stage cannot upload them.
	if err := r.sb.SetFaults(sandbox.Faults{Outage: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r.produce(rest)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	writtenBefore := written(t, adm, changesTopic)
	m = r.start(cfg)
	waitFor(t, 30*time.Second, "the second half's changes written", func() bool {
		return written(t, adm, changesTopic) > writtenBefore
	})
	m.stopAnyway()
	if got := r.committed(cfg.Group + ".lists"); got != listsBefore {
		t.Fatalf("the list stage committed %d during the outage; want %d", got, listsBefore)
	}
	ends := deleteAll(t, adm, changesTopic)
	if err := r.sb.SetFaults(sandbox.Faults{}); err != nil {
		t.Fatal(err)
	}

	log, errs := newErrorLog()
	m = r.startWithLog(cfg, log)
	halted := wantHalted(t, m, "lists", changesTopic, "gap")
	m.stopAnyway()
	if got := r.committed(cfg.Group + ".lists"); got != listsBefore {
		t.Errorf("the list stage committed %d, past the gap; want %d", got, listsBefore)
	}
	if got := r.committed(cfg.Group); got != int64(len(first)) {
		t.Errorf("the profile stage committed %d, past changes that were never uploaded; want %d", got, len(first))
	}
	var lines int
	for _, l := range errs() {
		if strings.Contains(l, "changes partition stopped") && strings.Contains(l, "reason=gap") {
			lines++
		}
	}
	if float64(lines) != halted {
		t.Errorf("%d error lines for %v halted partitions; want one each:\n%s", lines, halted, strings.Join(errs(), "\n"))
	}
	var lost int64
	for _, end := range ends {
		lost += end
	}
	if lost <= listsBefore {
		t.Fatalf("nothing was deleted past the list stage's commit (%d): the fault was not injected", listsBefore)
	}
}

// TestChangesDeletedUnderTheReaderHaltThePartition: while the list stage
// runs, its fetches of the changes topic fail for a while (a slow or
// unreachable leader) and the changes it has not read meanwhile are
// deleted. When fetching works again the offset it reads at is below the
// log start: the partition halts there, and nothing is committed past it.
func TestChangesDeletedUnderTheReaderHaltThePartition(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 4, Events: 3000, Seed: 37, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	changesTopic := cfg.Group + ".changes"
	first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })
	listsBefore := r.committed(cfg.Group + ".lists")

	id := r.topicID(changesTopic)
	var failing atomic.Bool
	failing.Store(true)
	r.cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.cluster.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		hit := false
		for _, tp := range fr.Topics {
			hit = hit || tp.Topic == changesTopic || tp.TopicID == id
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
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	writtenBefore := written(t, adm, changesTopic)
	r.produce(rest)
	waitFor(t, 30*time.Second, "the second half's changes written", func() bool {
		return written(t, adm, changesTopic) > writtenBefore
	})
	ends := deleteAll(t, adm, changesTopic)
	failing.Store(false)

	wantHalted(t, m, "lists", changesTopic, "gap")
	m.stopAnyway()
	committed := fetchCommitted(t, cl, cfg.Group+".lists")
	var deleted int64
	for p, end := range ends {
		deleted += end
		if committed[p] > end {
			t.Errorf("changes partition %d committed at %d, past what was deleted (%d)", p, committed[p], end)
		}
	}
	if deleted <= listsBefore {
		t.Fatalf("nothing was deleted past the list stage's commit (%d): the fault was not injected", listsBefore)
	}
	if got := r.committed(cfg.Group); got != int64(len(first)) {
		t.Errorf("the profile stage committed %d, past changes that were never uploaded; want %d", got, len(first))
	}
}
