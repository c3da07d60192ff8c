package lists

import (
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
	st.Membership = s.member.Membership()
	flights, lastErr := s.disp.status()
	st.Flights = flights
	if lastErr != nil {
		st.LastError = lastErr.Error()
	}
	st.Partitions = s.member.Partitions()
	st.Lists = s.sink.Lists(perWindow)
	return st
}

// Membership is the member's standing in its group.
func (s *Stage) Membership() membership.Status { return s.member.Membership() }

// Paused reports whether reading is paused: fetching at MaxBuffered
// records or while Pinterest refuses the credentials, or a worker waiting
// for room under MaxBufferedBytes.
func (s *Stage) Paused() bool {
	return s.capped.Load() || s.member.Held() || s.waitingRoom.Load() > 0
}

// Unhealthy reports the partitions whose start (learning where the
// partition ends) has been failing for longer than limit; nil when there
// is none.
func (s *Stage) Unhealthy(limit time.Duration) error {
	return s.member.Unhealthy(limit, "list stage: partitions failing to start")
}

// UnhealthyCount is how many partitions Unhealthy would name.
func (s *Stage) UnhealthyCount(limit time.Duration) int { return s.member.UnhealthyCount(limit) }
