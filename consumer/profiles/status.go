package profiles

import (
	"time"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/member"
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
	// RegistryWaits are the partitions paused for the schema registry.
	RegistryWaits []RegistryWait
	// MisKeyed are, by partition, the records not keyed by their profile
	// id this member has read.
	MisKeyed []MisKeyed
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
	st := Status{Membership: s.member.Membership(), FetchPaused: s.Paused(), Pending: s.pending.load()}
	st.Partitions = s.member.Partitions()
	st.RegistryWaits = s.waits.list()
	st.MisKeyed = s.misKeyed.list()
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
func (s *Stage) Membership() membership.Status { return s.member.Membership() }

// Paused reports whether fetching is paused: at the cap of pending
// changes, or while Pinterest refuses the credentials.
func (s *Stage) Paused() bool { return s.pending.capped.Load() || s.member.Held() }

// Unhealthy reports the partitions whose start (fencing the earlier owner,
// restoring the state) or whose transactions have been failing for longer
// than limit; nil when there is none.
func (s *Stage) Unhealthy(limit time.Duration) error {
	return s.member.Unhealthy(limit, "profile stage: partitions failing to start (restore or fencing) or to commit their transactions")
}

// UnhealthyCount is how many partitions Unhealthy would name.
func (s *Stage) UnhealthyCount(limit time.Duration) int { return s.member.UnhealthyCount(limit) }

// Halts returns why each owned partition that halted did (see
// member.Halt), by partition.
func (s *Stage) Halts() map[int32]*member.Halted { return s.member.Halts() }

// Halted reports the owned partitions that halted, with their reasons; nil
// when none did.
func (s *Stage) Halted() error { return s.member.HaltError("profile stage: partitions halted") }
