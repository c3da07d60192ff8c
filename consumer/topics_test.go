package consumer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest/sandbox"
)

// TestStartRefusesTopicsThatWouldLoseData: an existing changelog that is
// not compacted, a compacted changes topic, a changelog with another
// partition count than the input and a control topic that is not
// compacted each stop the start with an error naming the topic and the
// setting.
func TestStartRefusesTopicsThatWouldLoseData(t *testing.T) {
	for _, tc := range []struct {
		name, suffix string
		partitions   int32
		policy       string
		want         string
	}{
		{"changelog deleted by time", ".changelog", 2, "delete", "cleanup.policy=delete"},
		{"changelog compacted and deleted", ".changelog", 2, "compact,delete", "must be compacted only"},
		{"changelog not co-partitioned", ".changelog", 3, "compact", "co-partitioned"},
		{"changes topic compacted", ".changes", 2, "compact", "must not be compacted"},
		// Platform tooling pre-creates topics with the broker's retention.
		{"changes topic with the broker's retention", ".changes", 2, "", "retention.ms=604800000"},
		{"control topic deleted by time", ".control", 1, "delete", "control log must be compacted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 2, sandbox.Config{})
			cfg := engineConfig()
			name := cfg.Group + tc.suffix
			cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			configs := map[string]*string{"cleanup.policy": &tc.policy}
			if tc.policy == "" {
				configs = nil
			}
			resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), tc.partitions, -1, configs, name)
			if err == nil {
				err = resp.Err
			}
			if err != nil {
				t.Fatal(err)
			}
			wantRefused(t, r, cfg, name, tc.want)
		})
	}
}

// wantRefused runs an engine of cfg and wants its start refused with an
// error naming the topic and saying want.
func wantRefused(t *testing.T, r *rig, cfg consumer.Config, topic, want string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	pin, _ := r.client(reg)
	eng, err := consumer.New(cfg, consumer.Deps{Kafka: []kgo.Opt{kgo.SeedBrokers(r.brokers...)}, Pinterest: pin, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = eng.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), topic) || !strings.Contains(err.Error(), want) {
		t.Errorf("Run: %v; want an error naming %q and saying %q", err, topic, want)
	}
}

// TestStartRefusesInternalTopicsLessReplicatedThanTheInput: on a cluster
// of three brokers with the input replicated three times, a changelog with
// one replica would lose profiles with its broker.
func TestStartRefusesInternalTopicsLessReplicatedThanTheInput(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	cfg := engineConfig()
	compact := "compact"
	for _, tt := range []struct {
		name string
		rf   int16
		cfg  map[string]*string
	}{{topic, 3, nil}, {cfg.Group + ".changelog", 1, map[string]*string{"cleanup.policy": &compact}}} {
		resp, err := adm.CreateTopic(context.Background(), 2, tt.rf, tt.cfg, tt.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	r := newRig(t, 2, sandbox.Config{})
	r.brokers = c.ListenAddrs()
	wantRefused(t, r, cfg, cfg.Group+".changelog", "has 1 replicas but the input")
}

// TestChangesTopicLayoutIsFixedOnce: the first start records the changes
// topic's partition count and id in the control topic; partitions added
// under the deployment, or the topic deleted and created again, refuse the
// next start with the reason, until the layout is reset on purpose.
func TestChangesTopicLayoutIsFixedOnce(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	cfg := engineConfig()
	changesTopic := cfg.Group + ".changes"
	m := r.start(cfg)
	waitFor(t, 20*time.Second, "the engine to join", func() bool { return m.eng.Ready() == nil })
	m.stop(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()

	// Partitions added under the deployment.
	if _, err := adm.CreatePartitions(ctx, 1, changesTopic); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, r, cfg, changesTopic, "has 3 partitions but this deployment placed its lists for 2")

	// The topic deleted and created again, with the count of the layout.
	if _, err := adm.DeleteTopics(ctx, changesTopic); err != nil {
		t.Fatal(err)
	}
	minusOne := "-1"
	waitFor(t, 10*time.Second, "the changes topic to be created again", func() bool {
		resp, err := adm.CreateTopic(ctx, 2, -1, map[string]*string{"retention.ms": &minusOne, "retention.bytes": &minusOne}, changesTopic)
		return err == nil && resp.Err == nil
	})
	wantRefused(t, r, cfg, changesTopic, "deleted and created again")

	// Reset on purpose: the next start records the new topic.
	ct, err := control.Open(ctx, control.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(r.brokers...)}, Topic: cfg.Group + ".control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.ResetLayout(ctx); err != nil {
		t.Fatal(err)
	}
	m = r.start(cfg)
	waitFor(t, 20*time.Second, "the engine to join after the reset", func() bool { return m.eng.Ready() == nil })
	m.stop(t)
	l, ok, err := ct.Layout(ctx)
	if err != nil || !ok || l.ChangesPartitions != 2 || l.ChangesTopicID == "" {
		t.Fatalf("layout after the reset: %+v, %v, %v", l, ok, err)
	}
}

// TestStartRefusesTopicsTooSmallForTheirRecords: a topic pinsync writes
// whose max.message.bytes is below the largest record pinsync writes there
// (a changes record of its most changes, a dead letter's head) stops the
// start, naming the topic and the setting, instead of failing every
// transaction that holds such a record.
func TestStartRefusesTopicsTooSmallForTheirRecords(t *testing.T) {
	for _, tc := range []struct {
		suffix, policy string
	}{{".changes", "delete"}, {".changelog", "compact"}, {".dlq", "delete"}} {
		t.Run(tc.suffix, func(t *testing.T) {
			r := newRig(t, 2, sandbox.Config{})
			cfg := engineConfig()
			name := cfg.Group + tc.suffix
			cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			small, minusOne := "1000", "-1"
			configs := map[string]*string{"cleanup.policy": &tc.policy, "max.message.bytes": &small}
			if tc.suffix == ".changes" {
				configs["retention.ms"], configs["retention.bytes"] = &minusOne, &minusOne
			}
			resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), 2, -1, configs, name)
			if err == nil {
				err = resp.Err
			}
			if err != nil {
				t.Fatal(err)
			}
			wantRefused(t, r, cfg, name, "max.message.bytes=1000")
		})
	}
}

// TestRekeyedTopicIsCheckedAsTheChangesTopic: with kafka.rekey, an existing
// re-keyed topic with another partition count than the input, or one
// deleting by time, stops the start with an error naming the topic and the
// setting.
func TestRekeyedTopicIsCheckedAsTheChangesTopic(t *testing.T) {
	for _, tc := range []struct {
		name       string
		partitions int32
		want       string
	}{
		{"another partition count", 3, "must have as many"},
		{"the broker's retention", 2, "retention.ms=604800000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 2, sandbox.Config{})
			cfg := engineConfig()
			cfg.Rekey = true
			cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), tc.partitions, -1, nil, cfg.RekeyTopic())
			if err == nil {
				err = resp.Err
			}
			if err != nil {
				t.Fatal(err)
			}
			wantRefused(t, r, cfg, cfg.RekeyTopic(), tc.want)
		})
	}
}

// TestRekeyModeIsFixedForTheGroup: a group that committed on the input
// refuses to start with kafka.rekey, and one that committed on the
// re-keyed topic refuses to start without it, each naming the topic.
func TestRekeyModeIsFixedForTheGroup(t *testing.T) {
	for _, rekey := range []bool{true, false} {
		t.Run(fmt.Sprintf("rekey %v", rekey), func(t *testing.T) {
			r := newRig(t, 2, sandbox.Config{})
			cfg := engineConfig()
			cfg.Rekey = rekey
			committedOn := topic // by the default mode
			cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			if !rekey {
				committedOn = cfg.RekeyTopic()
				resp, err := adm.CreateTopic(context.Background(), 2, -1,
					map[string]*string{"retention.ms": new("-1"), "retention.bytes": new("-1")}, committedOn)
				if err == nil {
					err = resp.Err
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			offs := kadm.Offsets{}
			offs.Add(kadm.Offset{Topic: committedOn, Partition: 0, At: 0, LeaderEpoch: -1})
			resp, err := adm.CommitOffsets(context.Background(), cfg.Group, offs)
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				t.Fatal(err)
			}
			wantRefused(t, r, cfg, committedOn, "kafka.rekey cannot change for a group")
		})
	}
}
