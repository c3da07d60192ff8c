package lists

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/member"
)

// purgeInterval is how often the changes topic is trimmed.
const purgeInterval = 30 * time.Second

// committer commits, for each partition of the changes topic the member
// owns, the next offset of its newest epoch whose changes all reached
// Pinterest (commit.Tracker), and answers the write guard's ownership
// check, which commits what was last committed: one of them at a time.
type committer struct {
	member   *member.Member[*worker]
	tr       *commit.Tracker
	topic    string
	interval time.Duration
	log      *slog.Logger

	// mu serialises commits: the periodic ones and the ownership checks.
	mu sync.Mutex
}

// run commits completed epochs every commit interval, and as soon as an
// epoch may have completed, so that a member that dies leaves as little as
// possible to read again; it trims the changes topic every purgeInterval.
func (c *committer) run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	purge := time.NewTicker(purgeInterval)
	defer purge.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.tr.Done():
		case <-purge.C:
			c.purge(ctx)
			continue
		}
		if err := c.commit(ctx, nil); err != nil && ctx.Err() == nil {
			c.log.Warn("commit failed", "err", err)
		}
	}
}

// purge deletes the records of the changes topic this member committed
// past, as Kafka Streams does with a repartition topic: the topic keeps no
// time retention (the list stage may be an outage behind), so what the list
// stage is done with goes this way.
func (c *committer) purge(ctx context.Context) {
	offs := kadm.Offsets{}
	for _, p := range c.tr.Partitions() {
		if at := p.Committed(); at > 0 {
			offs.Add(kadm.Offset{Topic: p.Topic, Partition: p.Partition, At: at, LeaderEpoch: -1})
		}
	}
	if len(offs) == 0 {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resps, err := kadm.NewClient(c.member.Client()).DeleteRecords(dctx, offs)
	if err == nil {
		err = resps.Error()
	}
	if err != nil && ctx.Err() == nil {
		c.log.Warn("trimming the changes topic failed; it is tried again", "err", err)
	}
}

// commit commits, for the given partitions (every tracked one when nil),
// the next offset of their newest completed epoch. parts' epochs are
// retained when the commit fails, for the next commit to retry.
func (c *committer) commit(ctx context.Context, parts map[*commit.Partition]bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var list []*commit.Partition
	if parts == nil {
		list = c.tr.Partitions()
	} else {
		for p := range parts {
			list = append(list, p)
		}
	}
	offsets := map[int32]kgo.EpochOffset{}
	var done []*commit.Partition
	var marks []*commit.Mark
	for _, p := range list {
		m := c.tr.Completed(p)
		if m == nil || m.Next <= p.Committed() {
			continue
		}
		offsets[p.Partition] = kgo.EpochOffset{Epoch: m.LeaderEpoch, Offset: m.Next}
		done = append(done, p)
		marks = append(marks, m)
	}
	if len(offsets) == 0 {
		return nil
	}
	err := c.member.Commit(ctx, offsets, func() {
		for i, p := range done {
			p.SetCommitted(marks[i].Next, marks[i].LeaderEpoch)
		}
	})
	if err != nil {
		// Keep the popped marks: the next commit retries them.
		for i, p := range done {
			c.tr.Retain(p, marks[i])
		}
		return err
	}
	return nil
}

// owns checks with the group coordinator that this member still owns
// changes partition p: it commits, as the member of its current
// generation, the offset it last committed there. The coordinator refuses
// the commit of a member it has expired (a member paused past its session
// timeout), which owns nothing any more. It is the sink's write guard.
func (c *committer) owns(ctx context.Context, p int32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.member.Owner(p)
	if !ok {
		return fmt.Errorf("%w %d: revoked", ErrNotOwner, p)
	}
	eo, ok := w.probeOffset()
	cl := c.member.Client()
	if !ok {
		// Nothing read nor committed here yet (a rebuild on a partition
		// without new changes): what the group had committed when this
		// member joined.
		eo, ok = cl.CommittedOffsets()[c.topic][p]
	}
	if !ok || eo.Offset < 0 {
		return fmt.Errorf("%w %d: nothing read or committed yet", ErrNotOwner, p)
	}
	err := commit.Owns(ctx, cl, c.topic, p, eo)
	if commit.Expired(err) {
		return fmt.Errorf("%w %d: %v", ErrNotOwner, p, err)
	}
	if err != nil {
		return fmt.Errorf("lists: checking ownership of partition %d: %w", p, err)
	}
	return nil
}
