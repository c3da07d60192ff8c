package lists

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/membership"
)

// Status is a snapshot of what the list stage's member is doing. It holds
// no identifier and no secret.
type Status struct {
	// Membership is the member's standing in the list stage's group.
	Membership  membership.Status
	FetchPaused bool
	Buffered    int
	// BufferedBytes is what the windows hold, counted against
	// Config.MaxBufferedBytes.
	BufferedBytes int64
	Flights       int
	LastError     string
	Partitions    []PartitionStatus
	// Lists are the lists of the partitions this member owns, each with
	// figures of the whole list: its owner alone writes to it.
	Lists []ListStatus
}

// PartitionStatus describes one owned partition.
type PartitionStatus = commit.PartitionStatus

// Status returns a snapshot of the stage.
func (s *Stage) Status() Status {
	st := Status{FetchPaused: s.Paused()}
	st.Buffered, st.BufferedBytes = s.ws.Buffered(), s.ws.Bytes()
	perWindow := s.ws.Stats()
	st.Membership = s.member.Status()
	flights, lastErr := s.disp.status()
	st.Flights = flights
	if lastErr != nil {
		st.LastError = lastErr.Error()
	}
	st.Partitions = s.partitionStatus()
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	st.Lists = s.sink.Lists(perWindow)
	return st
}

// Membership is the member's standing in its group.
func (s *Stage) Membership() membership.Status { return s.member.Status() }

// Paused reports whether reading is paused at a cap: fetching at
// MaxBuffered records, or a worker waiting for room under
// MaxBufferedBytes.
func (s *Stage) Paused() bool { return s.paused.Load() || s.waitingRoom.Load() > 0 }

// Unhealthy reports the partitions whose start (learning where the
// partition ends) has been failing for longer than limit; nil when there
// is none.
func (s *Stage) Unhealthy(limit time.Duration) error {
	now := s.now()
	var stuck []string
	s.mu.Lock()
	for p, w := range s.workers {
		if since := w.failingSince.Load(); since != 0 && now.Sub(time.Unix(0, since)) > limit {
			stuck = append(stuck, fmt.Sprintf("%s/%d for %s", s.cfg.Topic, p, now.Sub(time.Unix(0, since)).Round(time.Second)))
		}
	}
	s.mu.Unlock()
	if len(stuck) == 0 {
		return nil
	}
	sort.Strings(stuck)
	return fmt.Errorf("list stage: partitions failing to start: %s", strings.Join(stuck, ", "))
}
