package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The topics the watch follows, by their part in the deployment: the
// values of the topic label of pinsync_topic_changed, a closed set.
const (
	watchInput     = "input"
	watchChanges   = "changes"
	watchChangelog = "changelog"
)

// watchedTopics are the label values of pinsync_topic_changed.
var watchedTopics = []string{watchInput, watchChanges, watchChangelog}

// topicChange is what the watch found: a topic is no longer the one the
// stages started with.
type topicChange struct {
	// role is one of the watch constants.
	role string
	err  error
}

// topicWatch keeps the first change the watch found; it does not end
// while the process runs (a partition count does not go down, a topic
// deleted does not come back), so it is kept until the process stops.
type topicWatch struct{ changed atomic.Pointer[topicChange] }

// found records a change; it reports whether it was the first.
func (w *topicWatch) found(c topicChange) bool { return w.changed.CompareAndSwap(nil, &c) }

// err is the change found, nil while there is none.
func (w *topicWatch) err() error {
	if c := w.changed.Load(); c != nil {
		return c.err
	}
	return nil
}

// is reports 1 while role's topic changed.
func (w *topicWatch) is(role string) float64 {
	if c := w.changed.Load(); c != nil && c.role == role {
		return 1
	}
	return 0
}

// hold is the stages' hold: a topic changed, then the caller's (refused
// credentials).
func (e *Engine) hold(ctx context.Context) error {
	if err := e.watch.err(); err != nil {
		return err
	}
	if e.deps.Hold != nil {
		return e.deps.Hold(ctx)
	}
	return nil
}

// watchTopics checks every Config.TopicCheckInterval, until ctx ends, that
// the input, changes and changelog topics are those the stages started
// with: the same partition counts (a list's partition follows the changes
// topic's count, a profile's the input's, and the changelog is
// co-partitioned with the input) and the same ids (a topic deleted and
// created again), and that none was deleted. On the first difference both stages stop fetching, the
// engine is not ready with the reason, pinsync_topic_changed names the
// topic and one error line is logged. A check that fails to reach the
// cluster is tried again at the next tick.
func (e *Engine) watchTopics(ctx context.Context, tl topicLayout) {
	cl, err := kgo.NewClient(e.deps.Kafka...)
	if err != nil {
		e.log.Error("topic watch: kafka client", "err", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	c := e.cfg
	type watched struct {
		role, name string
		partitions int
		id         kadm.TopicID
	}
	ws := []watched{{watchInput, c.Topics[0], tl.input, tl.inputID}, {watchChanges, c.ChangesTopic, tl.changes, tl.changesID}}
	if topicOn(c.ChangelogTopic) {
		ws = append(ws, watched{watchChangelog, c.ChangelogTopic, tl.changelog, tl.changelogID})
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.name
	}
	tick := time.NewTicker(c.TopicCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		details, err := adm.ListTopics(ctx, names...)
		if err != nil {
			continue
		}
		for i := range ws {
			w := &ws[i]
			d, ok := details[w.name]
			var change error
			switch {
			case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
				change = fmt.Errorf("kafka: the %s topic %q was deleted while this process ran: what the stages stand on is gone (see PinsyncTopicChanged in the README)", w.role, w.name)
			case d.Err != nil:
				continue // not answered now: asked again at the next tick
			case w.id != (kadm.TopicID{}) && d.ID != (kadm.TopicID{}) && d.ID != w.id:
				change = fmt.Errorf("kafka: the %s topic %q was deleted and created again while this process ran: what the stages stand on is gone (see PinsyncTopicChanged in the README)", w.role, w.name)
			case len(d.Partitions) != w.partitions:
				change = fmt.Errorf("kafka: the %s topic %q has %d partitions but this process started with %d: %s (see PinsyncTopicChanged in the README)",
					w.role, w.name, len(d.Partitions), w.partitions, partitionsChanged(w.role))
			}
			if w.id == (kadm.TopicID{}) {
				w.id = d.ID // created at the start: the first id seen
			}
			if change == nil {
				continue
			}
			if e.watch.found(topicChange{role: w.role, err: change}) {
				e.log.Error("a topic changed under the running stages: both stop fetching, nothing more is written, and the pod is not ready until it is dealt with",
					"topic", w.name, "reason", change)
			}
			return
		}
	}
}

// partitionsChanged says what a partition count changed under running
// replicas breaks.
func partitionsChanged(role string) string {
	switch role {
	case watchChanges:
		return "replicas placing lists with two counts give a list two owners"
	case watchInput:
		return "a profile's events move to another partition, away from its state"
	default:
		return "the changelog is no longer co-partitioned with the input, so profiles are restored on the wrong partition"
	}
}
