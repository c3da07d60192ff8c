package lists

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinsync/pinsync/consumer/lists/lending"
	"github.com/pinsync/pinsync/consumer/lists/sink"
	"github.com/pinsync/pinsync/consumer/member"
)

// Config configures the list stage. Every field is required unless its
// comment says otherwise; package consumer fills them from its Config.
type Config struct {
	// Topic is the changes topic and Partitions its partition count.
	Topic      string
	Partitions int
	// Group is the list stage's consumer group.
	Group string
	// DLQTopic receives the records Pinterest refused for good, and
	// DLQPartitions is its partition count.
	DLQTopic      string
	DLQPartitions int32
	// FlushInterval is the longest a change waits in a window.
	FlushInterval time.Duration
	// CommitInterval is how often epochs are sealed and committed.
	CommitInterval time.Duration
	// RevokeTimeout bounds the flush of revoked partitions.
	RevokeTimeout time.Duration
	// MaxRecords is the per-request maximum of records.
	MaxRecords int
	// MaxBuffered caps the records waiting in windows; fetching pauses at
	// the cap.
	MaxBuffered int
	// MaxBufferedBytes caps the memory the windows hold for their records
	// (their tables, and room for each record in a flight); reading pauses
	// at the cap. 0: no cap but MaxBuffered.
	MaxBufferedBytes int64
	// MaxFlights bounds concurrent uploads.
	MaxFlights int
	// ListNameTemplate names a Pinterest list (and its audience).
	ListNameTemplate string
	// AudiencePollInterval is how often each list's audience size and
	// status are read; negative disables.
	AudiencePollInterval time.Duration
	// ParkedRetry is how often a parked list's ad account is checked
	// again (the role may be back), and the longest wait between attempts
	// to rebuild a list.
	ParkedRetry time.Duration
	// BudgetLease is how long a loan of write budget between members
	// lasts (package lending); 0: no lending, each member spends the share
	// its partitions give it.
	BudgetLease time.Duration
}

// Validate reports a missing or impossible field.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string) { errs = append(errs, fmt.Errorf("lists: Config.%s is required", f)) }
	if c.Topic == "" {
		bad("Topic")
	}
	if c.Partitions < 1 {
		bad("Partitions")
	}
	if c.Group == "" {
		bad("Group")
	}
	if c.DLQTopic == "" {
		bad("DLQTopic")
	}
	if c.DLQPartitions < 1 {
		bad("DLQPartitions")
	}
	if c.FlushInterval <= 0 {
		bad("FlushInterval")
	}
	if c.CommitInterval <= 0 {
		bad("CommitInterval")
	}
	if c.RevokeTimeout <= 0 {
		bad("RevokeTimeout")
	}
	if c.MaxRecords < 1 {
		bad("MaxRecords")
	}
	if c.MaxBuffered < c.MaxRecords {
		errs = append(errs, errors.New("lists: Config.MaxBuffered must be at least MaxRecords"))
	}
	if c.MaxFlights < 1 {
		bad("MaxFlights")
	}
	if c.MaxBufferedBytes < 0 {
		errs = append(errs, errors.New("lists: Config.MaxBufferedBytes must not be negative"))
	}
	if c.ParkedRetry <= 0 {
		bad("ParkedRetry")
	}
	if err := (lending.Config{Lease: c.BudgetLease}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("lists: Config.BudgetLease: %w", err))
	}
	if err := sink.CheckListNameTemplate(c.ListNameTemplate); err != nil {
		errs = append(errs, fmt.Errorf("lists: Config.ListNameTemplate: %w", err))
	}
	return errors.Join(errs...)
}

// Budget is one category of the app's Pinterest budget as this member
// spends it. *pinterest.Budget implements it.
type Budget = lending.Budget

// Loans is the control topic as the members lend each other write
// budget through it. *control.Topic implements it.
type Loans = lending.Exchange

// Pinterest is what the list stage needs from the Pinterest API client.
// *pinterest.Client implements it.
type Pinterest = sink.Pinterest

// Registry keeps each list's Pinterest ids across owners.
// *control.Registry implements it.
type Registry = sink.Registry

// Members opens a reader of lists' members in the profile state, to
// rebuild them.
type Members = sink.Members

// MemberReader reads lists' members from the profile state.
// *profiles.MemberReader implements it.
type MemberReader = sink.MemberReader

// ListStatus describes one Pinterest list.
type ListStatus = sink.ListStatus

// DefaultListNameTemplate is the default Pinterest list name.
const DefaultListNameTemplate = sink.DefaultListNameTemplate

// CheckListNameTemplate reports what is wrong with a list name template:
// a syntax error, a field it does not know, or names that two lists would
// share.
func CheckListNameTemplate(s string) error { return sink.CheckListNameTemplate(s) }

// Deps are the stage's collaborators.
type Deps struct {
	// Member is what the stage's group member is handed; the stage adds
	// its group.
	Member member.Deps
	// Pinterest uploads.
	Pinterest Pinterest
	// Writes is the ads_write budget the scheduler reads, and Reads the
	// ads_read one. The stage sets each one's share to the fraction of the
	// changes topic's partitions it owns; with Loans, the write budget's
	// share then follows where the work is (package lending). Nil means no
	// budget.
	Writes, Reads Budget
	// Loans is the control topic the members lend each other write budget
	// through; nil means no lending.
	Loans Loans
	// Registry keeps list ids across owners; nil means lists are found by
	// name (and cannot be rebuilt).
	Registry Registry
	// Members reads a list's members from the profile state, to rebuild
	// it; nil means lists cannot be rebuilt (they stay parked).
	Members Members
	// Registerer receives the stage's own metrics; DeadLetters is a
	// series the caller shares between the stages.
	Registerer  prometheus.Registerer
	DeadLetters *prometheus.CounterVec
}
