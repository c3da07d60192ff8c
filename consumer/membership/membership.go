// Package membership follows one consumer group member's standing in its
// group: whether it holds the group's current generation, and since when
// it has not.
//
// A member is out of its group from the moment its client sends a
// JoinGroup (a rebalance began, it is new, or it lost its session and
// joins again) or gives its partitions up as lost, until its next
// assignment arrives. A member that gives up partitions at the start of a
// cooperative session still holds that session's generation; the JoinGroup
// that follows is when it leaves.
//
// Both stages keep a Tracker, as a kgo hook and from their group callbacks;
// the engine reports a member out for longer than the session and
// rebalance timeouts together: a rebalance ends within the rebalance
// timeout, and a member that died is noticed within the session timeout,
// so such a member is not in a rebalance that is getting anywhere. It does
// not talk to Kafka itself.
package membership

import (
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Tracker follows one member. It is safe for concurrent use.
type Tracker struct {
	group string
	now   func() time.Time

	mu     sync.Mutex
	member bool
	joined bool
	since  time.Time
}

// New returns the tracker of a member of group that has not joined yet: it
// is out of its group from now.
func New(group string, now func() time.Time) *Tracker {
	return &Tracker{group: group, now: now, since: now()}
}

var _ kgo.HookBrokerWrite = (*Tracker)(nil)

// OnBrokerWrite implements kgo.HookBrokerWrite: a JoinGroup written means
// the member is joining, out of its group until it is assigned.
func (t *Tracker) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, _ error) {
	if key == int16(kmsg.JoinGroup) {
		t.leave()
	}
}

// Assigned records an assignment (kgo.OnPartitionsAssigned, which runs at
// the start of every session, even when nothing new is assigned).
func (t *Tracker) Assigned() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.member, t.joined, t.since = true, true, time.Time{}
}

// Lost records that the member's partitions were lost
// (kgo.OnPartitionsLost): its session ended.
func (t *Tracker) Lost() { t.leave() }

// Left records that the member left its group (it is closing).
func (t *Tracker) Left() { t.leave() }

func (t *Tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.member {
		t.member, t.since = false, t.now()
	}
}

// Status is a snapshot of a member's standing.
type Status struct {
	Group string
	// Member reports that the member holds its group's current
	// generation; Joined that it has held one since it started.
	Member, Joined bool
	// OutSince is when it left its group (or started, before it first
	// joined); zero while it is a member.
	OutSince time.Time
}

// Status returns the member's standing.
func (t *Tracker) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Status{Group: t.group, Member: t.member, Joined: t.joined, OutSince: t.since}
}

// Out returns how long the member has been out of its group at now; 0
// while it is a member.
func (s Status) Out(now time.Time) time.Duration {
	if s.Member {
		return 0
	}
	return max(now.Sub(s.OutSince), 0)
}

// Ready reports why the member is not ready at now, or nil: it has joined
// its group, and has not been out of it for longer than limit since (a
// short rebalance leaves it ready).
func (s Status) Ready(now time.Time, limit time.Duration) error {
	out := s.Out(now).Round(time.Second)
	switch {
	case !s.Joined && out <= limit:
		return fmt.Errorf("not yet a member of consumer group %q", s.Group)
	case !s.Joined:
		return fmt.Errorf("not yet a member of consumer group %q after %s, longer than the session and rebalance timeouts together (%s)", s.Group, out, limit)
	case out > limit:
		return fmt.Errorf("out of consumer group %q for %s, longer than the session and rebalance timeouts together (%s): its rebalances are not completing", s.Group, out, limit)
	}
	return nil
}
