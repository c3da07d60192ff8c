package consumer_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestTopicChangedUnderRunningStagesStopsThem: partitions are added to the
// changes topic (a list's partition, so its owner, follows the count), or
// to the input topic (a profile's events move away from its state), or the
// input topic is deleted and created again (the state's positions are
// offsets of the old one), while the stages run. The topic watch finds it: both stages stop fetching,
// the engine is not ready naming the topic, pinsync_topic_changed says
// which, one error line is logged; records produced afterwards are
// neither applied, written as changes, nor committed.
func TestTopicChangedUnderRunningStagesStopsThem(t *testing.T) {
	for _, tc := range []struct {
		name, role, suffix string
		recreate, delete   bool
	}{
		{"changes partitions", "changes", ".changes", false, false},
		{"input partitions", "input", "", false, false},
		{"input recreated", "input", "", true, false},
		{"changelog deleted", "changelog", ".changelog", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 2, sandbox.Config{})
			recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 41, MalformedFraction: stream.None})
			if err != nil {
				t.Fatal(err)
			}
			cfg := engineConfig()
			cfg.ShutdownGrace = 2 * time.Second
			cfg.TopicCheckInterval = 50 * time.Millisecond
			changesTopic, name := cfg.Group+".changes", topic
			if tc.suffix != "" {
				name = cfg.Group + tc.suffix
			}
			first, rest := recs[:len(recs)/2], recs[len(recs)/2:]
			r.produce(first)
			log, lines := newLevelLog(slog.LevelWarn)
			m := r.startWithLog(cfg, log)
			want, _ := oracle(t, first)
			r.converge(want, 30*time.Second)
			waitFor(t, 30*time.Second, "the first half committed", func() bool { return r.committed(cfg.Group) == int64(len(first)) })

			cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			reason := `"` + name + `" has 3 partitions but this process started with 2`
			switch {
			case tc.delete:
				reason = `"` + name + `" was deleted while this process ran`
				if _, err := adm.DeleteTopics(context.Background(), name); err != nil {
					t.Fatal(err)
				}
			case tc.recreate:
				// The watch may see it gone before it is back: either says so.
				reason = `"` + name + `" was deleted`
				if _, err := adm.DeleteTopics(context.Background(), name); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 10*time.Second, "the topic to be created again", func() bool {
					resp, err := adm.CreateTopic(context.Background(), 2, -1, nil, name)
					return err == nil && resp.Err == nil
				})
			default:
				if _, err := adm.CreatePartitions(context.Background(), 1, name); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 30*time.Second, "the engine not ready for the "+tc.role+" topic", func() bool {
				err := m.eng.Ready()
				return err != nil && strings.Contains(err.Error(), reason)
			})
			if got := m.eng.Status().TopicChanged; !strings.Contains(got, name) {
				t.Errorf("status topic_changed = %q; want it to name %s", got, name)
			}
			if v := seriesWhere(t, m.reg, "pinsync_topic_changed", map[string]string{"topic": tc.role},
				func(mm *dto.Metric) float64 { return mm.GetGauge().GetValue() }); v != 1 {
				t.Errorf("pinsync_topic_changed{topic=%q} = %v; want 1", tc.role, v)
			}
			// Both stages' poll loops wait on the hold before they poll.
			waitFor(t, 30*time.Second, "both stages paused", func() bool {
				n := 0
				for _, l := range lines() {
					if strings.HasPrefix(l, "WARN fetching paused") {
						n++
					}
				}
				return n == 2
			})
			writtenBefore := written(t, adm, changesTopic)
			r.produce(rest)
			m.stopAnyway()
			wantCommitted := int64(len(first))
			if tc.recreate {
				wantCommitted = 0 // the broker dropped the old topic's offsets; none of the new one's
			}
			if got := r.committed(cfg.Group); got != wantCommitted {
				t.Errorf("the profile stage committed %d after the change; want %d", got, wantCommitted)
			}
			if got := written(t, adm, changesTopic); got != writtenBefore {
				t.Errorf("%d changes written after the change; want none", got-writtenBefore)
			}
			var errs int
			for _, l := range lines() {
				if strings.HasPrefix(l, "ERROR ") {
					errs++
					if !strings.Contains(l, "topic changed") || !strings.Contains(l, name) {
						t.Errorf("error line %q; want the topic change named", l)
					}
				}
			}
			if errs != 1 {
				t.Errorf("%d error lines; want one:\n%s", errs, strings.Join(lines(), "\n"))
			}
		})
	}
}
