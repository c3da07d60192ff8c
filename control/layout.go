package control

import (
	"context"
	"encoding/json"
	"fmt"
)

// Layout is what a deployment fixes once about its topics: the changes
// topic's partition count, on which every list's partition (its owner)
// depends, and the topic's id (KIP-516), which changes when the topic is
// recreated. Replicas that placed lists with two counts would give one
// list two owners.
type Layout struct {
	ChangesPartitions int `json:"changes_partitions"`
	// ChangesTopicID is the changes topic's id, hex; empty when the
	// broker reports none.
	ChangesTopicID string `json:"changes_topic_id,omitempty"`
	// InputTopicID is the input topic's id, hex, when the layout was
	// recorded (or first checked by a version that records it); empty
	// when the broker reports none. The profile state's positions are
	// offsets of that topic.
	InputTopicID string `json:"input_topic_id,omitempty"`
	// Formats is the format generation of the changes and changelog
	// records the deployment's writers may write (0 stands for 1). It is
	// raised only once every replica reads the new generation; a replica
	// that does not refuses to start.
	Formats int `json:"formats,omitempty"`
}

// layoutKey is the control topic's key of the deployment's Layout.
const layoutKey = "layout"

// applyLayout folds a layout record into the topic's state; it reports
// whether r was one. Called with t.mu held.
func (t *Topic) applyLayout(r Record) bool {
	if r.Key != layoutKey {
		return false
	}
	if r.Value == nil {
		t.layout = nil
		return true
	}
	var l Layout
	if err := json.Unmarshal(r.Value, &l); err != nil || l.ChangesPartitions < 1 {
		t.logger.Warn("skipping a malformed layout record", "offset", r.Offset)
		return true
	}
	t.layout = &l
	return true
}

// Layout returns the deployment's layout, having read every record written
// before the call; false when none is recorded yet.
func (t *Topic) Layout(ctx context.Context) (Layout, bool, error) {
	if err := t.log.CatchUp(ctx); err != nil {
		return Layout{}, false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.layout == nil {
		return Layout{}, false, nil
	}
	return *t.layout, true, nil
}

// RecordLayout writes the deployment's layout and returns once it is
// durable and applied.
func (t *Topic) RecordLayout(ctx context.Context, l Layout) error {
	if l.ChangesPartitions < 1 {
		return fmt.Errorf("control: layout with %d changes partitions", l.ChangesPartitions)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	off, err := t.log.Append(ctx, layoutKey, b)
	if err != nil {
		return err
	}
	return t.log.WaitApplied(ctx, off)
}

// ResetLayout forgets the deployment's layout (a tombstone): the next
// process to start records the changes topic as it is then. It is for an
// operator who recreated the changes topic on purpose.
func (t *Topic) ResetLayout(ctx context.Context) error {
	off, err := t.log.Append(ctx, layoutKey, nil)
	if err != nil {
		return err
	}
	return t.log.WaitApplied(ctx, off)
}
