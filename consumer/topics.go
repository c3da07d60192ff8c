package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicLayout is the partition counts the stages work with.
type topicLayout struct {
	input   int
	changes int
	dlq     int32
}

// prepareTopics checks the input topic and creates the internal topics
// that are missing: the changelog (compacted, co-partitioned with the
// input), the changes topic (kept until the list stage has read it: no
// time retention) and the dead-letter topic. It refuses a changelog whose
// partition count differs from the input's, and a changes topic whose
// count differs from kafka.changes_partitions when that is set.
func (e *Engine) prepareTopics(ctx context.Context) (topicLayout, error) {
	var tl topicLayout
	acl, err := kgo.NewClient(e.deps.Kafka...)
	if err != nil {
		return tl, fmt.Errorf("kafka client: %w", err)
	}
	defer acl.Close()
	adm := kadm.NewClient(acl)
	c := e.cfg
	names := []string{c.Topics[0], c.ChangesTopic, c.DLQTopic}
	if topicOn(c.ChangelogTopic) {
		names = append(names, c.ChangelogTopic)
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return tl, fmt.Errorf("kafka: list topics: %w", err)
	}
	partitions := func(t string) (int, bool) {
		d, ok := details[t]
		if !ok || d.Err != nil {
			return 0, false
		}
		return len(d.Partitions), true
	}
	in, ok := partitions(c.Topics[0])
	if !ok {
		return tl, fmt.Errorf("kafka: input topic %q does not exist", c.Topics[0])
	}
	tl.input = in
	if topicOn(c.ChangelogTopic) {
		if n, ok := partitions(c.ChangelogTopic); ok && n != in {
			return tl, fmt.Errorf("kafka: changelog topic %q has %d partitions but the input has %d; it must be co-partitioned with the input (recreate it with %d partitions)",
				c.ChangelogTopic, n, in, in)
		} else if ok {
			if err := checkCleanup(ctx, adm, c.ChangelogTopic, true); err != nil {
				return tl, err
			}
		} else {
			if err := e.createTopic(ctx, adm, c.ChangelogTopic, in, map[string]string{"cleanup.policy": "compact"}); err != nil {
				return tl, err
			}
		}
	}
	want := c.ChangesPartitions
	if want == 0 {
		want = in
	}
	switch n, ok := partitions(c.ChangesTopic); {
	case ok && c.ChangesPartitions != 0 && n != c.ChangesPartitions:
		return tl, fmt.Errorf("kafka: changes topic %q has %d partitions but kafka.changes_partitions is %d; a list's partition depends on the count, so it cannot change under running replicas (stop them, let the list stage drain, and recreate the topic)",
			c.ChangesTopic, n, c.ChangesPartitions)
	case ok:
		if err := checkCleanup(ctx, adm, c.ChangesTopic, false); err != nil {
			return tl, err
		}
		tl.changes = n
	default:
		// No time retention: the list stage may be behind by an outage's
		// worth. It deletes what its group has committed past itself
		// (DeleteRecords), so the topic holds only what is not uploaded.
		if err := e.createTopic(ctx, adm, c.ChangesTopic, want, map[string]string{"cleanup.policy": "delete", "retention.ms": "-1"}); err != nil {
			return tl, err
		}
		tl.changes = want
	}
	if n, ok := partitions(c.DLQTopic); ok {
		tl.dlq = int32(n)
	} else {
		if err := e.createTopic(ctx, adm, c.DLQTopic, 1, nil); err != nil {
			return tl, err
		}
		tl.dlq = 1
	}
	return tl, nil
}

func (e *Engine) createTopic(ctx context.Context, adm *kadm.Client, name string, partitions int, configs map[string]string) error {
	cfg := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfg[k] = &v
	}
	resp, err := adm.CreateTopic(ctx, int32(partitions), -1, cfg, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafka: create topic %q: %w", name, err)
	}
	e.log.Info("created topic", "topic", name, "partitions", partitions)
	return nil
}

// checkCleanup refuses an existing topic whose cleanup.policy would lose
// what pinsync needs: the changelog must be compacted (its latest record
// per profile is the state; deletion by time would lose profiles), the
// changes topic must not be (a list's changes share a key: compaction
// would keep only the last record of each list).
func checkCleanup(ctx context.Context, adm *kadm.Client, topic string, compact bool) error {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("kafka: describe topic %q: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return fmt.Errorf("kafka: describe topic %q: %w", topic, err)
	}
	policy := "delete"
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil {
			policy = *c.Value
		}
	}
	compacted := strings.Contains(policy, "compact")
	switch {
	case compact && (!compacted || strings.Contains(policy, "delete")):
		return fmt.Errorf("kafka: topic %q has cleanup.policy=%s; the changelog must be compacted only (cleanup.policy=compact), or profiles are lost", topic, policy)
	case !compact && compacted:
		return fmt.Errorf("kafka: topic %q has cleanup.policy=%s; the changes topic must not be compacted (cleanup.policy=delete with retention.ms=-1), or changes are lost", topic, policy)
	}
	return nil
}
