package profiles

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinsync/pinsync/consumer/member"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
)

// Config configures the profile stage. Every field is required unless its
// comment says otherwise; package consumer fills them from its Config.
type Config struct {
	// Topic is the input topic.
	Topic string
	// Group is the input topic's consumer group.
	Group string
	// ChangesTopic is where list changes go, and ChangesPartitions its
	// partition count.
	ChangesTopic      string
	ChangesPartitions int
	// ListsGroup is the list stage's group: its commits of the changes
	// topic gate the input commits.
	ListsGroup string
	// ChangelogTopic holds the profile state, co-partitioned with the
	// input; empty means no durable state.
	ChangelogTopic string
	// DLQTopic receives records that cannot be decoded, and DLQPartitions
	// is its partition count.
	DLQTopic      string
	DLQPartitions int32
	// CommitInterval is how often each partition's transaction ends and
	// input offsets are committed.
	CommitInterval time.Duration
	// TransactionTimeout is the transaction timeout of each partition's
	// producer: an open transaction of a member that died is aborted by
	// the broker after it.
	TransactionTimeout time.Duration
	// RevokeTimeout bounds the end of a revoked partition's transaction.
	RevokeTimeout time.Duration
	// MaxPending caps the changes written to the changes topic that the
	// list stage has not committed past; fetching pauses at the cap.
	MaxPending int
	// MaxIdentifiersPerType bounds each profile's identifiers of one type.
	MaxIdentifiersPerType int
	// MaxRecordBytes bounds every record the stage writes to the
	// changelog and to the dead-letter topic (the least max.message.bytes
	// of the topics it writes and the producer's limit, less a batch's
	// overhead; its producers' batches stay within that limit): a profile whose
	// record an event would take past it is not changed, the event is
	// dead-lettered (ReasonStateTooLarge), and a dead letter is cut to
	// its head past it. Zero: DefaultMaxRecordBytes.
	MaxRecordBytes int
	// Allow and Deny select audiences by key glob; AdAccount,
	// AudienceAdAccounts and AllowAudienceSettings resolve each audience's
	// ad account (see consumer.Config).
	Allow, Deny           []string
	AdAccount             string
	AudienceAdAccounts    map[string]string
	AllowAudienceSettings bool
	// Decoder configures the event decoder.
	Decoder schemas.DecoderConfig
	// Format is the input topic's value format (the zero Config is
	// plain JSON); the registry formats need Deps.SchemaRegistry.
	Format format.Config
}

// Validate reports a missing or impossible field.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string) { errs = append(errs, fmt.Errorf("profiles: Config.%s is required", f)) }
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"Topic", c.Topic != ""}, {"Group", c.Group != ""}, {"ChangesTopic", c.ChangesTopic != ""},
		{"ChangesPartitions", c.ChangesPartitions > 0}, {"ListsGroup", c.ListsGroup != ""},
		{"DLQTopic", c.DLQTopic != ""}, {"DLQPartitions", c.DLQPartitions > 0},
		{"CommitInterval", c.CommitInterval > 0}, {"TransactionTimeout", c.TransactionTimeout > 0},
		{"RevokeTimeout", c.RevokeTimeout > 0}, {"MaxPending", c.MaxPending > 0},
		{"MaxIdentifiersPerType", c.MaxIdentifiersPerType > 0},
	} {
		if !f.ok {
			bad(f.name)
		}
	}
	if err := c.Format.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("profiles: Config.Format: %w", err))
	}
	if c.TransactionTimeout <= 2*c.CommitInterval {
		errs = append(errs, errors.New("profiles: Config.TransactionTimeout must exceed twice the CommitInterval"))
	}
	return errors.Join(errs...)
}

// Deps are the stage's collaborators.
type Deps struct {
	// Member is what the stage's group member is handed; the stage adds
	// its group, and its producers their transactional ids.
	Member member.Deps
	// Registerer receives the stage's own metrics; DeadLetters is a
	// series the caller shares between the stages.
	Registerer  prometheus.Registerer
	DeadLetters *prometheus.CounterVec
	// SchemaRegistry reads the schemas of the registry formats; nil for
	// the others.
	SchemaRegistry *format.Registry
}
