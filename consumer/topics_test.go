package consumer_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer"
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
			resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), tc.partitions, -1, map[string]*string{"cleanup.policy": &tc.policy}, name)
			if err == nil {
				err = resp.Err
			}
			if err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			pin, _ := r.client(reg)
			eng, err := consumer.New(cfg, consumer.Deps{Kafka: []kgo.Opt{kgo.SeedBrokers(r.brokers...)}, Pinterest: pin, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			err = eng.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: %v; want an error naming %q and saying %q", err, name, tc.want)
			}
		})
	}
}
