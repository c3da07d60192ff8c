package profiles

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/membership"
	"github.com/pinsync/pinsync/schemas/ident"
)

// Status is a snapshot of what the profile stage's member is doing. It
// holds no identifier and no secret.
type Status struct {
	// Membership is the member's standing in the input topic's group.
	Membership  membership.Status
	FetchPaused bool
	// Pending is the changes written that the list stage has not committed
	// past.
	Pending    int64
	Partitions []PartitionStatus
	Audiences  []AudienceStatus
}

// PartitionStatus describes one owned partition.
type PartitionStatus = commit.PartitionStatus

// AudienceStatus describes one audience as this member's partitions see it.
type AudienceStatus struct {
	Key, Name, AdAccount string
	Synced               bool
	// Members is the profiles of this member's partitions in the audience.
	Members int64
	// Records is, by list type (EMAIL, IDFA, MAID), the identifiers those
	// members hold: the records of the audience's lists they account for.
	Records map[string]int64
}

// Status returns a snapshot of the stage.
func (s *Stage) Status() Status {
	st := Status{Membership: s.member.Status(), FetchPaused: s.paused.Load(), Pending: s.pending.Load()}
	s.mu.Lock()
	for k, w := range s.workers {
		hw, c := w.highWater.Load(), w.committed.Load()
		ps := PartitionStatus{Topic: k.topic, Partition: k.partition, Committed: c, HighWatermark: hw}
		if hw > 0 {
			ps.Lag = hw - max(c, 0)
		}
		st.Partitions = append(st.Partitions, ps)
	}
	s.mu.Unlock()
	sort.Slice(st.Partitions, func(i, j int) bool {
		a, b := st.Partitions[i], st.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	for _, a := range s.auds.all() {
		h := s.auds.header(a.id)
		as := AudienceStatus{Key: a.key, Name: h.Name, AdAccount: h.AdAccount,
			Synced: a.selected, Members: a.members.Load(), Records: make(map[string]int64, ident.NumTypes)}
		for _, t := range ident.Types {
			as.Records[t.String()] = a.records[t].Load()
		}
		st.Audiences = append(st.Audiences, as)
	}
	return st
}

// Membership is the member's standing in its group.
func (s *Stage) Membership() membership.Status { return s.member.Status() }

// Paused reports whether fetching is paused at the cap.
func (s *Stage) Paused() bool { return s.paused.Load() }

// Unhealthy reports the partitions whose start (fencing the earlier owner,
// restoring the state) has been failing for longer than limit; nil when
// there is none.
func (s *Stage) Unhealthy(limit time.Duration) error {
	now := s.now()
	var stuck []string
	s.mu.Lock()
	for k, w := range s.workers {
		if since := w.failingSince.Load(); since != 0 && now.Sub(time.Unix(0, since)) > limit {
			stuck = append(stuck, fmt.Sprintf("%s/%d for %s", k.topic, k.partition, now.Sub(time.Unix(0, since)).Round(time.Second)))
		}
	}
	s.mu.Unlock()
	if len(stuck) == 0 {
		return nil
	}
	sort.Strings(stuck)
	return fmt.Errorf("profile stage: partitions failing to start (restore or fencing): %s", strings.Join(stuck, ", "))
}
