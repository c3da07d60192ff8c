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

// ListStatus describes one Pinterest list.
type ListStatus struct {
	Audience       string    `json:"audience"`
	Name           string    `json:"audience_name,omitempty"`
	AdAccount      string    `json:"ad_account_id"`
	ListType       string    `json:"list_type"`
	ListName       string    `json:"name,omitempty"`
	CustomerListID string    `json:"customer_list_id,omitempty"`
	AudienceID     string    `json:"audience_id,omitempty"`
	Partition      int32     `json:"partition"`
	Pending        int       `json:"pending_records"`
	LastFlush      time.Time `json:"last_flush,omitzero"`
	PinterestSize  int64     `json:"pinterest_size"`
	PinterestState string    `json:"pinterest_status,omitempty"`
	// ListCreated is when Pinterest created the customer list (read by
	// the audience poll): its size is judged once it has had a day or two.
	ListCreated time.Time `json:"list_created,omitzero"`
	// UploadedAdds and UploadedRemoves count the records this member's
	// writes to the list took since it owns it.
	UploadedAdds    int64 `json:"uploaded_adds"`
	UploadedRemoves int64 `json:"uploaded_removes"`
	// Generation counts the list's rebuilds; Retired are the customer
	// lists earlier generations used.
	Generation int      `json:"generation,omitempty"`
	Retired    []string `json:"retired_customer_list_ids,omitempty"`
	// Parked, when set, says why the list waits for a rebuild, its
	// changes dropped: permission, not_found or requested (see
	// pinsync_list_parked). ParkedSince is since when, RebuildError what
	// the last attempt met.
	Parked       string    `json:"parked,omitempty"`
	ParkedSince  time.Time `json:"parked_since,omitzero"`
	RebuildError string    `json:"rebuild_error,omitempty"`
}

// Status returns a snapshot of the stage.
func (s *Stage) Status() Status {
	st := Status{FetchPaused: s.Paused()}
	st.Buffered, st.BufferedBytes = s.ws.Buffered(), s.ws.Bytes()
	perWindow := s.ws.Stats()
	st.Membership = s.member.Status()
	s.mu.Lock()
	st.Flights = s.flights
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	s.mu.Unlock()
	st.Partitions = s.partitionStatus()
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	for _, li := range s.ownedLists() {
		li.mu.Lock()
		ls := ListStatus{
			Audience: li.key.Audience, Name: li.header.Name, AdAccount: li.header.AdAccount, ListType: li.key.Type.String(),
			ListName: li.pids.name, CustomerListID: li.pids.listID, AudienceID: li.pids.audienceID, Partition: li.partition,
			PinterestSize: li.size, PinterestState: li.status, ListCreated: li.listCreated,
			UploadedAdds: li.added, UploadedRemoves: li.removed,
			Generation: li.rb.generation, Retired: li.rb.retired,
			Parked: li.rb.reason, ParkedSince: li.rb.since, RebuildError: li.rb.lastErr,
		}
		li.mu.Unlock()
		w := perWindow[li.id]
		ls.Pending, ls.LastFlush = w.Pending, w.Flushed
		if ls.CustomerListID == "" && ls.Pending == 0 && ls.Parked == "" {
			continue // nothing to add to a list that does not exist
		}
		st.Lists = append(st.Lists, ls)
	}
	sort.Slice(st.Lists, func(i, j int) bool {
		a, b := st.Lists[i], st.Lists[j]
		return a.Audience < b.Audience || a.Audience == b.Audience && a.ListType < b.ListType
	})
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
