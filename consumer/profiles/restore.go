package profiles

import (
	"context"
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/member"
)

// learnCommitted reads the group's committed offset of the partition: what
// an ownership check commits, and where reading resumes when the changelog
// keeps no position.
func (w *worker) learnCommitted(ctx context.Context) error {
	resp, err := kadm.NewClient(w.d.client()).FetchOffsets(ctx, w.d.cfg.Group)
	if err != nil {
		return fmt.Errorf("reading the group's committed offsets: %w", err)
	}
	if o, ok := resp.Lookup(w.key.topic, w.key.partition); ok && o.Err == nil && o.At >= 0 {
		w.committed.CompareAndSwap(-1, o.At)
	}
	return nil
}

// resumeAt is where reading resumes after a start: the restored position;
// without one (no changelog, or none of its transactions ever committed)
// after the newest transaction this worker committed, else at the group's
// committed offset, else at the partition's log start (a partition its
// group never consumed: what the log no longer holds was never pinsync's
// to read). Never where the fetch happens to be: after a failed
// transaction that is past the records it lost. The client never moves a
// position by itself: a position the log no longer holds halts the
// partition (see lost).
func (w *worker) resumeAt(ctx context.Context) (int64, error) {
	if w.next >= 0 {
		return w.next, nil
	}
	if e, ok := w.epochs.newest(); ok {
		return e.Next, nil
	}
	if c := w.committed.Load(); c >= 0 {
		return c, nil
	}
	starts, err := kadm.NewClient(w.d.client()).ListStartOffsets(ctx, w.key.topic)
	if err != nil {
		return 0, fmt.Errorf("input start offsets: %w", err)
	}
	o, ok := starts.Lookup(w.key.topic, w.key.partition)
	if !ok || o.Err != nil {
		return 0, fmt.Errorf("input start offset of %s/%d: %v", w.key.topic, w.key.partition, o.Err)
	}
	return o.Offset, nil
}

// lost is the member's Handler.Gap: records of the partition were deleted
// before the profile stage read them (the log start passed its position
// while it ran: a retention shorter than its lag, kafka-delete-records) or
// the log was truncated under it. The partition halts there: what was
// applied before is committed, nothing past it.
func (w *worker) lost(err error) {
	w.halt(member.HaltGap, fmt.Errorf("records of %s/%d were deleted before the profile stage read them (%w): their changes never reach the lists",
		w.key.topic, w.key.partition, err))
}

// restore rebuilds the state from the changelog and sets where reading
// resumes. An epoch standing for the restored position waits for the list
// stage to pass everything in the changes topic now, so that its commit
// covers the changes the earlier owner wrote.
func (w *worker) restore(ctx context.Context) error {
	d := w.d
	w.state.clear()
	w.next, w.leaderEpoch = -1, -1
	if d.cfg.ChangelogTopic == "" {
		w.vouchFrom = math.MaxInt64 // no durable state: nothing is vouched
		return nil
	}
	d.m.restoring.Inc()
	defer d.m.restoring.Dec()
	res, err := restore(ctx, d.kopts, d.cfg.ChangelogTopic, w.key, w.state, d.codec, func(off int64) {
		d.log.Warn("skipping malformed changelog record", "partition", w.key.partition, "offset", off)
	})
	if err != nil {
		w.state.clear()
		return fmt.Errorf("restoring state: %w", err)
	}
	d.m.restored.Add(float64(res.profiles))
	w.lowerIDFA = res.lowerIDFA
	if len(res.lowerIDFA) > 0 {
		d.log.Warn("the restored state holds IDFAs an earlier pinsync hashed in lower case, which Pinterest matches nobody by: "+
			"they are dropped and removed from the lists; the lists gain each IDFA again when an event carries it",
			"topic", w.key.topic, "partition", w.key.partition, "removals", len(res.lowerIDFA))
	}
	if res.next < 0 && res.profiles == 0 && w.committed.Load() > 0 {
		// Vouching for every list as if the state were new would cancel
		// removals against a state that was lost: only a partition its
		// group never consumed is known to be new.
		w.state.clear()
		return &halting{reason: member.HaltStateLost, err: fmt.Errorf("the changelog %s holds no state for input %s/%d, which its group has consumed up to %d: "+
			"the state was lost (the changelog deleted, created again or emptied); taking it as new would drop the lists' removals "+
			"(see PinsyncPartitionHalted, state_lost, in the README)", d.cfg.ChangelogTopic, w.key.topic, w.key.partition, w.committed.Load())}
	}
	w.txn.restored(res.legacy, res.audiences)
	switch {
	case res.next >= 0:
		if err := w.checkPosition(ctx, res.next); err != nil {
			w.state.clear()
			return err
		}
		w.next, w.leaderEpoch, w.vouchFrom = res.next, res.leaderEpoch, -1
		marks, err := w.changesEnd(ctx)
		if err != nil {
			w.state.clear()
			return err
		}
		w.epochs.push(commit.Epoch{Next: res.next, LeaderEpoch: res.leaderEpoch, Marks: marks})
	case res.empty:
		// Nobody ever wrote this partition's state, and its group never
		// consumed it: the state is new, and the lists hold nothing of
		// it.
		w.vouchFrom = -1
	default:
		// State of a version that kept no position: the lists may be
		// ahead of it up to what was in the partition.
		end, err := kadm.NewClient(d.client()).ListEndOffsets(ctx, w.key.topic)
		if err != nil {
			w.state.clear()
			return fmt.Errorf("input end offsets: %w", err)
		}
		o, _ := end.Lookup(w.key.topic, w.key.partition)
		w.vouchFrom = o.Offset
	}
	d.log.Info("state restored", "topic", w.key.topic, "partition", w.key.partition, "profiles", w.state.t.len(),
		"next", w.next)
	return nil
}

// checkPosition halts the partition (member.HaltTopicReset) when the input
// partition cannot hold the restored position next: it ends before it (the
// topic was deleted and created again, or truncated), so that reading
// from there would drop every record below it as already applied; or it
// starts after it (records deleted before the profile stage read them).
func (w *worker) checkPosition(ctx context.Context, next int64) error {
	adm := kadm.NewClient(w.d.client())
	t, p := w.key.topic, w.key.partition
	var bounds [2]int64
	for i, list := range []func(context.Context, ...string) (kadm.ListedOffsets, error){adm.ListStartOffsets, adm.ListEndOffsets} {
		offs, err := list(ctx, t)
		if err != nil {
			return fmt.Errorf("input offsets: %w", err)
		}
		o, ok := offs.Lookup(t, p)
		if !ok || o.Err != nil {
			return fmt.Errorf("input offsets of %s/%d: %v", t, p, o.Err)
		}
		bounds[i] = o.Offset
	}
	start, end := bounds[0], bounds[1]
	switch {
	case end < next:
		return &halting{reason: member.HaltTopicReset, err: fmt.Errorf("input %s/%d ends at %d but the state restored from the changelog stands at %d: "+
			"the topic was deleted and created again, or truncated, and reading it from there would drop every record below %d as already applied "+
			"(see PinsyncPartitionHalted, topic_reset, in the README)", t, p, end, next, next)}
	case start > next:
		return &halting{reason: member.HaltTopicReset, err: fmt.Errorf("input %s/%d starts at %d but the state restored from the changelog stands at %d: "+
			"records %d to %d were deleted before the profile stage read them (a retention shorter than its lag, kafka-delete-records), "+
			"and their changes never reach the lists (see PinsyncPartitionHalted, topic_reset, in the README)", t, p, start, next, next, start-1)}
	}
	return nil
}

// changesEnd returns the last stable offset of every changes partition
// (-1 for an empty one): the marks of an epoch that covers everything
// written so far.
func (w *worker) changesEnd(ctx context.Context) ([]int64, error) {
	cfg := w.d.cfg
	ends, err := kadm.NewClient(w.d.client()).ListCommittedOffsets(ctx, cfg.ChangesTopic)
	if err != nil {
		return nil, fmt.Errorf("changes end offsets: %w", err)
	}
	marks := make([]int64, cfg.ChangesPartitions)
	for i := range marks {
		marks[i] = -1
		if o, ok := ends.Lookup(cfg.ChangesTopic, int32(i)); ok && o.Err == nil && o.Offset > 0 {
			marks[i] = o.Offset
		}
	}
	return marks, nil
}
