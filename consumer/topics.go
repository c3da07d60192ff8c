package consumer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/profiles"
	"github.com/pinsync/pinsync/control"
)

// topicLayout is the partition counts the stages work with, and the ids
// (KIP-516; zero when the broker reports none) of the topics they started
// with: what the topic watch holds them to (see watchTopics).
type topicLayout struct {
	input     int
	changes   int
	changelog int
	dlq       int32
	// maxRecord bounds the records the profile stage writes to the
	// changelog and the dead-letter topic (see checkRecordSizes).
	maxRecord int

	inputID, changesID, changelogID kadm.TopicID
}

// prepareTopics checks the input topic and creates the internal topics
// that are missing: the changelog (compacted, co-partitioned with the
// input), the changes topic (kept until the list stage has read it: no
// time or size retention) and the dead-letter topic. It refuses, naming the
// topic and the setting, an existing internal topic that could lose a
// record before pinsync has read it: a changelog not compacted, or with
// another partition count than the input; a changes topic compacted, with a
// retention, or with another partition count than kafka.changes_partitions
// or than the deployment's layout (see checkLayout); an internal topic with
// fewer replicas than the input.
func (e *Engine) prepareTopics(ctx context.Context, layout LayoutStore) (topicLayout, error) {
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
	if topicOn(c.ControlTopic) {
		names = append(names, c.ControlTopic)
	}
	if c.Rekey {
		names = append(names, c.RekeyTopic())
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
	tl.input, tl.inputID = in, details[c.Topics[0]].ID
	inputRF := replicas(details[c.Topics[0]])
	for _, t := range names[1:] {
		if _, ok := partitions(t); ok && t != c.DLQTopic && replicas(details[t]) < inputRF {
			return tl, fmt.Errorf("kafka: topic %q has %d replicas but the input %q has %d; losing a broker would lose what it holds (recreate it with replication factor %d)",
				t, replicas(details[t]), c.Topics[0], inputRF, inputRF)
		}
	}
	if topicOn(c.ChangelogTopic) {
		if n, ok := partitions(c.ChangelogTopic); ok && n != in {
			return tl, fmt.Errorf("kafka: changelog topic %q has %d partitions but the input has %d; it must be co-partitioned with the input (recreate it with %d partitions)",
				c.ChangelogTopic, n, in, in)
		} else if ok {
			if err := checkTopicConfig(ctx, adm, c.ChangelogTopic, "the changelog", true); err != nil {
				return tl, err
			}
			tl.changelog, tl.changelogID = n, details[c.ChangelogTopic].ID
		} else {
			id, err := e.createTopic(ctx, adm, c.ChangelogTopic, in, map[string]string{"cleanup.policy": "compact"})
			if err != nil {
				return tl, err
			}
			tl.changelog, tl.changelogID = in, id
		}
	}
	if c.Rekey {
		if err := e.prepareRekeyed(ctx, adm, in, partitions); err != nil {
			return tl, err
		}
	}
	if err := e.checkMode(ctx, adm); err != nil {
		return tl, err
	}
	want := c.ChangesPartitions
	if want == 0 {
		want = in
	}
	var changesID kadm.TopicID
	switch n, ok := partitions(c.ChangesTopic); {
	case ok && c.ChangesPartitions != 0 && n != c.ChangesPartitions:
		return tl, fmt.Errorf("kafka: changes topic %q has %d partitions but kafka.changes_partitions is %d; a list's partition depends on the count, so it cannot change under running replicas (stop them, let the list stage drain, and recreate the topic)",
			c.ChangesTopic, n, c.ChangesPartitions)
	case ok:
		if err := checkTopicConfig(ctx, adm, c.ChangesTopic, "the changes topic", false); err != nil {
			return tl, err
		}
		tl.changes, changesID = n, details[c.ChangesTopic].ID
	default:
		// No time retention: the list stage may be behind by an outage's
		// worth. It deletes what its group has committed past itself
		// (DeleteRecords), so the topic holds only what is not uploaded.
		id, err := e.createTopic(ctx, adm, c.ChangesTopic, want, map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"})
		if err != nil {
			return tl, err
		}
		tl.changes, changesID = want, id
	}
	tl.changesID = changesID
	if err := e.checkLayout(ctx, layout, tl.changes, changesID, tl.inputID); err != nil {
		return tl, err
	}
	if n, ok := partitions(c.DLQTopic); ok {
		tl.dlq = int32(n)
	} else {
		if _, err := e.createTopic(ctx, adm, c.DLQTopic, 1, nil); err != nil {
			return tl, err
		}
		tl.dlq = 1
	}
	maxRecord, err := e.checkRecordSizes(ctx, adm)
	if err != nil {
		return tl, err
	}
	tl.maxRecord = maxRecord
	return tl, nil
}

// The smallest max.message.bytes each topic pinsync writes needs: a
// changes record at its largest (changes.MaxChanges changes, an audience
// name of its longest), a profile record of a few audiences, a dead
// letter of a malformed record's head.
const (
	minChangesMessageBytes   = 64 << 10
	minChangelogMessageBytes = 64 << 10
	minDLQMessageBytes       = 16 << 10
)

// producerMaxBytes is the producer's limit of a batch (franz-go's default
// of ProducerBatchMaxBytes): no record past it is ever sent.
const producerMaxBytes = 1_000_012

// checkRecordSizes reads max.message.bytes of the topics the profile
// stage writes and refuses one too small for what pinsync writes there,
// naming the topic and the setting. It returns the bound of a changelog
// record or dead letter (see profiles.Config.MaxRecordBytes): the least
// of the three topics' limits (a batch of the profile stage's producer may
// go to any of them) and the producer's, less a batch's overhead.
func (e *Engine) checkRecordSizes(ctx context.Context, adm *kadm.Client) (int, error) {
	c := e.cfg
	type topicMin struct {
		name string
		min  int
	}
	ts := []topicMin{{c.ChangesTopic, minChangesMessageBytes}, {c.DLQTopic, minDLQMessageBytes}}
	if topicOn(c.ChangelogTopic) {
		ts = append(ts, topicMin{c.ChangelogTopic, minChangelogMessageBytes})
	}
	bound := producerMaxBytes
	for _, t := range ts {
		conf, err := topicConfigs(ctx, adm, t.name)
		if err != nil {
			return 0, err
		}
		v, ok := conf["max.message.bytes"]
		if !ok {
			continue // not reported: the broker's default
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("kafka: topic %q has max.message.bytes=%s", t.name, v)
		}
		if n < t.min {
			return 0, fmt.Errorf("kafka: topic %q has max.message.bytes=%d; pinsync writes records of up to %d bytes there (set max.message.bytes to at least %d, the broker's default of 1048588 is right)",
				t.name, n, t.min, t.min)
		}
		bound = min(bound, n)
	}
	return bound - profiles.RecordOverhead, nil
}

// topicConfigs returns a topic's settings as the broker reports them,
// defaults included.
func topicConfigs(ctx context.Context, adm *kadm.Client, topic string) (map[string]string, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe topic %q: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe topic %q: %w", topic, err)
	}
	conf := map[string]string{}
	for _, c := range rc.Configs {
		if c.Value != nil {
			conf[c.Key] = *c.Value
		}
	}
	return conf, nil
}

// prepareRekeyed checks the re-keyed topic of kafka.rekey, or creates it:
// as many partitions as the input (a record the re-key stage cannot
// decode keeps its partition number), kept until the profile stage has
// passed it, as the changes topic.
func (e *Engine) prepareRekeyed(ctx context.Context, adm *kadm.Client, in int, partitions func(string) (int, bool)) error {
	t := e.cfg.RekeyTopic()
	n, ok := partitions(t)
	switch {
	case ok && n != in:
		return fmt.Errorf("kafka: re-keyed topic %q has %d partitions but the input has %d; it must have as many (recreate it with %d partitions under a new kafka.group)",
			t, n, in, in)
	case ok:
		return checkTopicConfig(ctx, adm, t, "the re-keyed topic", false)
	}
	_, err := e.createTopic(ctx, adm, t, in, map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"})
	return err
}

// checkMode refuses to start a group in the other mode than the one it
// committed in: with kafka.rekey the group kafka.group commits on the
// re-keyed topic, without it on the input; switching would read the input
// again from the start or skip it, so it takes a new kafka.group.
func (e *Engine) checkMode(ctx context.Context, adm *kadm.Client) error {
	c := e.cfg
	resp, err := adm.FetchOffsets(ctx, c.Group)
	if err == nil {
		err = resp.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil // a new group
	}
	if err != nil {
		return fmt.Errorf("kafka: reading the commits of group %q: %w", c.Group, err)
	}
	other, mode := c.RekeyTopic(), "without kafka.rekey"
	if c.Rekey {
		other, mode = c.Topics[0], "with kafka.rekey"
	}
	var found bool
	resp.Each(func(o kadm.OffsetResponse) { found = found || (o.Topic == other && o.Err == nil && o.At >= 0) })
	if found {
		return fmt.Errorf("kafka: group %q has committed offsets on %q: it ran in the other mode than this one (%s); "+
			"kafka.rekey cannot change for a group (the profile stage's state and position are those of the other topic): "+
			"set a new kafka.group to switch, and rebuild its lists from the new group's state", c.Group, other, mode)
	}
	return nil
}

// replicas is a topic's replication factor: its first partition's.
func replicas(d kadm.TopicDetail) int {
	for _, p := range d.Partitions.Sorted() {
		return len(p.Replicas)
	}
	return 0
}

// Formats is the newest format generation of the changes and changelog
// records this pinsync reads, and the one it writes (changes.Version,
// profiles.StateVersion). A version that brings a new generation keeps
// writing the one before until the deployment's layout (control.Layout)
// says the new one: an operator raises it once every replica runs a
// version that reads it, and from then on an older replica refuses to
// start. A reader that meets a record of a generation it does not know
// halts its partition (member.HaltUnknownVersion) rather than skip it.
const Formats = 1

// LayoutStore keeps the deployment's layout (see control.Layout): fixed by
// the first process that starts, checked by every later one.
// *control.Topic implements it.
type LayoutStore interface {
	Layout(ctx context.Context) (control.Layout, bool, error)
	RecordLayout(ctx context.Context, l control.Layout) error
}

// checkLayout refuses a changes topic other than the one the deployment
// placed its lists for: more partitions (added under running replicas, the
// lists of the new count would have second owners), or another topic of
// the same name (recreated: what the old one held is gone). The first start
// records the layout; without a store (kafka.control_topic "-") only
// kafka.changes_partitions is checked.
func (e *Engine) checkLayout(ctx context.Context, store LayoutStore, partitions int, id, inputID kadm.TopicID) error {
	if store == nil {
		return nil
	}
	t := e.cfg.ChangesTopic
	now := control.Layout{ChangesPartitions: partitions}
	if id != (kadm.TopicID{}) {
		now.ChangesTopicID = hex.EncodeToString(id[:])
	}
	if inputID != (kadm.TopicID{}) {
		now.InputTopicID = hex.EncodeToString(inputID[:])
	}
	fixed, ok, err := store.Layout(ctx)
	if err != nil {
		return fmt.Errorf("control topic: reading the layout: %w", err)
	}
	switch {
	case !ok:
		if err := store.RecordLayout(ctx, now); err != nil {
			return fmt.Errorf("control topic: recording the layout: %w", err)
		}
		e.log.Info("deployment layout recorded", "changes_topic", t, "partitions", partitions)
		return nil
	case fixed.Formats > Formats:
		return fmt.Errorf("kafka: this deployment's records are of format generation %d (the layout in the control topic %q), and this pinsync reads up to %d: "+
			"it would stop at the first record it cannot read. Run a version that reads generation %d", fixed.Formats, e.cfg.ControlTopic, Formats, fixed.Formats)
	case fixed.ChangesPartitions != now.ChangesPartitions:
		return fmt.Errorf("kafka: changes topic %q has %d partitions but this deployment placed its lists for %d (the layout in the control topic): "+
			"replicas placing lists with two counts give a list two owners. Restore the count, or stop every replica, let the list stage drain, "+
			"recreate the topic and run `pinsync layout --reset`", t, now.ChangesPartitions, fixed.ChangesPartitions)
	case fixed.ChangesTopicID != "" && now.ChangesTopicID != "" && fixed.ChangesTopicID != now.ChangesTopicID:
		return fmt.Errorf("kafka: changes topic %q is not the topic this deployment wrote its changes to (it was deleted and created again; the changes it held and the list stage had not uploaded are gone). "+
			"If it was recreated on purpose after the list stage drained, run `pinsync layout --reset`; otherwise rebuild the lists (`pinsync resync`)", t)
	case fixed.InputTopicID != "" && now.InputTopicID != "" && fixed.InputTopicID != now.InputTopicID:
		return fmt.Errorf("kafka: input topic %q is not the topic this deployment's profile state was read from (it was deleted and created again): "+
			"the state's positions are offsets of the old topic, and reading the new one from them would drop every record below them as already applied. "+
			"To start over deliberately, see PinsyncPartitionHalted (topic_reset) in the README", e.cfg.Topics[0])
	case fixed.InputTopicID == "" && now.InputTopicID != "":
		// Recorded by a version that kept no input id: this check
		// starts now.
		fixed.InputTopicID = now.InputTopicID
		if err := store.RecordLayout(ctx, fixed); err != nil {
			return fmt.Errorf("control topic: recording the layout: %w", err)
		}
	}
	return nil
}

// createTopic creates a topic and returns its id (zero when the broker
// reports none, or another process created it first).
func (e *Engine) createTopic(ctx context.Context, adm *kadm.Client, name string, partitions int, configs map[string]string) (kadm.TopicID, error) {
	cfg := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfg[k] = &v
	}
	resp, err := adm.CreateTopic(ctx, int32(partitions), -1, cfg, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return kadm.TopicID{}, fmt.Errorf("kafka: create topic %q: %w", name, err)
	}
	e.log.Info("created topic", "topic", name, "partitions", partitions)
	return resp.ID, nil
}

// checkTopicConfig refuses an existing internal topic whose settings (as
// the broker reports them, defaults included) could lose a record pinsync
// has not read: the changelog must be compacted only; the changes topic
// must not be compacted, nor delete by time or size.
func checkTopicConfig(ctx context.Context, adm *kadm.Client, topic, what string, changelog bool) error {
	conf, err := topicConfigs(ctx, adm, topic)
	if err != nil {
		return err
	}
	if _, ok := conf["cleanup.policy"]; !ok {
		conf["cleanup.policy"] = "delete"
	}
	policy := conf["cleanup.policy"]
	compacted := strings.Contains(policy, "compact")
	switch {
	case changelog && (!compacted || strings.Contains(policy, "delete")):
		return fmt.Errorf("kafka: topic %q has cleanup.policy=%s; the changelog must be compacted only (cleanup.policy=compact), or profiles are lost", topic, policy)
	case changelog:
		return nil
	case compacted:
		return fmt.Errorf("kafka: topic %q has cleanup.policy=%s; %s must not be compacted (cleanup.policy=delete with retention.ms=-1), or records are lost", topic, policy, what)
	}
	for _, k := range []string{"retention.ms", "retention.bytes"} {
		if v, ok := conf[k]; ok && v != "-1" {
			return fmt.Errorf("kafka: topic %q has %s=%s; %s must keep every record until pinsync has passed it "+
				"(retention.ms=-1 and retention.bytes=-1; pinsync deletes what it has passed), or records are lost", topic, k, v, what)
		}
	}
	return nil
}
