package consumer

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pinsync/pinsync/consumer/glob"
	"github.com/pinsync/pinsync/consumer/lists"
	"github.com/pinsync/pinsync/consumer/lists/lending"
	"github.com/pinsync/pinsync/consumer/profiles"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
)

// Config is the sync engine's configuration. The zero value of a field
// means its default (see Defaults).
type Config struct {
	// Topics are the event topics to consume (one topic).
	Topics []string
	// Group is the input topic's consumer group (the profile stage). It
	// names the list stage's group ("<group>.lists") and the default
	// internal topics.
	Group string
	// DLQTopic receives records that cannot be decoded or that Pinterest
	// refused for good. Default "<group>.dlq".
	DLQTopic string
	// ChangelogTopic holds each partition's profile state, co-partitioned
	// with the input. Default "<group>.changelog". "-" disables it (and
	// with it the cancelling of returning changes).
	ChangelogTopic string
	// ChangesTopic joins the two stages: list changes keyed by list.
	// Default "<group>.changes".
	ChangesTopic string
	// ChangesPartitions is the partition count the changes topic is
	// created with (default: the input's). It bounds how many replicas
	// share the lists, and with them the write budget.
	ChangesPartitions int
	// ControlTopic is the single-partition compacted topic holding the list
	// registry and the shared token (package control). Default
	// "<group>.control". "-" disables it: lists are then found by name.
	ControlTopic string
	// FlushInterval is the longest a change waits in a window. Default 10s.
	FlushInterval time.Duration
	// MaxRecords is the per-request maximum of records. Default 5000.
	MaxRecords int
	// MaxBuffered caps the changes waiting in windows, and the changes
	// written to the changes topic that the list stage has not passed;
	// fetching pauses at the cap. Default 1,000,000.
	MaxBuffered int
	// MaxBufferedBytes caps the memory a list-stage member's windows hold
	// for the changes they wait to upload (their tables, and room for each
	// change in a flight): what grows while Pinterest is away. Reading
	// pauses at the cap. Default DefaultMaxBufferedBytes.
	MaxBufferedBytes int64
	// MaxIdentifiersPerType bounds each profile's identifiers of one type;
	// beyond it the oldest is dropped (and removed from the lists). Default 5.
	MaxIdentifiersPerType int
	// ListNameTemplate names a Pinterest list (and its audience) from
	// {{.Audience}} (key), {{.Name}} (display name, or the key) and
	// {{.ListType}} (EMAIL, IDFA, MAID). Default "pinsync {{.Audience}} {{.ListType}}".
	ListNameTemplate string
	// Allow and Deny select audiences by key glob (package glob: '*'
	// matches any characters, '/' included). Events of
	// audiences not selected change identifiers but upload nothing.
	Allow, Deny []string
	// AdAccount is the default ad account; AudienceAdAccounts overrides it
	// per audience key; AllowAudienceSettings lets an event's
	// audience_settings override it.
	AdAccount             string
	AudienceAdAccounts    map[string]string
	AllowAudienceSettings bool
	// SessionTimeout and RebalanceTimeout are the group timeouts both
	// stages join their groups with. A member out of its group for longer
	// than both together is not ready (see package membership). Defaults
	// 45s and 60s.
	SessionTimeout, RebalanceTimeout time.Duration
	// RevokeTimeout bounds the flush of revoked partitions, and again
	// their commit; both must end within the rebalance timeout, for the
	// member to rejoin in time. Default 10s.
	RevokeTimeout time.Duration
	// ShutdownGrace bounds the final flush and commit on shutdown.
	// Default 30s.
	ShutdownGrace time.Duration
	// MaxFlights bounds concurrent uploads. Default 8.
	MaxFlights int
	// CommitInterval is how often each input partition's transaction ends
	// and offsets are committed. Default 1s.
	CommitInterval time.Duration
	// TransactionTimeout is the profile stage's transaction timeout: the
	// broker aborts the open transaction of a member that died after it.
	// Default 10s.
	TransactionTimeout time.Duration
	// UnhealthyAfter is how long a partition may fail to start (fencing
	// its earlier owner, restoring its state) before Engine.Healthy
	// reports it, so that an orchestrator restarts the process. Default 5m.
	UnhealthyAfter time.Duration
	// AudiencePollInterval is how often each audience's size and status
	// are read from Pinterest. Default 15m; negative disables.
	AudiencePollInterval time.Duration
	// ParkedRetry is how often the ad account of a parked list (its role
	// lost) is checked again, and the longest wait between attempts to
	// rebuild a list. Default 1m.
	ParkedRetry time.Duration
	// BudgetLease is how long a loan of write budget from one list-stage
	// member to another lasts: the members lend what they do not use
	// through the control topic (package lists/lending), so that the
	// group spends its whole budget wherever the work is. Default 5s; at
	// most kafka.session_timeout (a partition moved away from a member
	// paused past its session carries no loan longer than that);
	// negative: no lending (as with no control topic), each member spends
	// the share its changes partitions give it.
	BudgetLease time.Duration
	// TopicCheckInterval is how often the engine checks that the changes
	// topic (partition count, id) and the input topic (id) are still the
	// ones its stages started with; both stages hold while they are not.
	// Default 30s.
	TopicCheckInterval time.Duration
	// RebuildMaxBytes bounds what a list rebuild holds of the profile
	// state at once: a changelog partition's members, or a key range of
	// them. Default DefaultRebuildMaxBytes.
	RebuildMaxBytes int64
	// Decoder configures the event decoder.
	Decoder schemas.DecoderConfig
	// InputFormat is the value format of the input topic (the zero Config
	// is plain JSON). The registry formats need Deps.SchemaRegistry.
	InputFormat format.Config
	// Rekey puts the re-key stage (package rekey) before the profile
	// stage: the group "<group>.rekey" writes the input to the re-keyed
	// topic "<group>.rekeyed", keyed and partitioned by the profile id of
	// each payload, and the profile stage consumes that topic instead of
	// the input. For producers that do not key by profile id. Off by
	// default; a group runs in one mode only (see checkMode).
	Rekey bool
}

// DefaultMaxBufferedBytes is the default of Config.MaxBufferedBytes: a
// quarter of a 512 MiB pod, leaving room for the profile state, Kafka's
// fetch buffers and the garbage collector's headroom.
const DefaultMaxBufferedBytes = 128 << 20

// DefaultRebuildMaxBytes is the default of Config.RebuildMaxBytes.
const DefaultRebuildMaxBytes = profiles.DefaultRebuildBytes

// minBufferedBytes is the smallest byte cap: a few windows' tables.
const minBufferedBytes = 1 << 20

// DefaultListNameTemplate is the default Pinterest list name.
const DefaultListNameTemplate = lists.DefaultListNameTemplate

// Defaults returns the configuration with every default that does not
// depend on the group: the one source of pinsync's sync defaults.
func Defaults() Config {
	return Config{
		FlushInterval:         10 * time.Second,
		MaxRecords:            5000,
		MaxBuffered:           1_000_000,
		MaxBufferedBytes:      DefaultMaxBufferedBytes,
		MaxIdentifiersPerType: 5,
		ListNameTemplate:      DefaultListNameTemplate,
		SessionTimeout:        45 * time.Second,
		RebalanceTimeout:      time.Minute,
		RevokeTimeout:         10 * time.Second,
		ShutdownGrace:         30 * time.Second,
		UnhealthyAfter:        5 * time.Minute,
		MaxFlights:            8,
		CommitInterval:        time.Second,
		TransactionTimeout:    10 * time.Second,
		AudiencePollInterval:  15 * time.Minute,
		ParkedRetry:           time.Minute,
		BudgetLease:           5 * time.Second,
		TopicCheckInterval:    30 * time.Second,
		RebuildMaxBytes:       DefaultRebuildMaxBytes,
	}
}

// WithDefaults returns c with every default filled in, those named after
// the group included (the internal topics).
func (c Config) WithDefaults() Config {
	d := Defaults()
	if c.Group != "" {
		d.DLQTopic, d.ChangelogTopic = c.Group+".dlq", c.Group+".changelog"
		d.ChangesTopic, d.ControlTopic = c.Group+".changes", c.Group+".control"
	}
	str := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	dur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	num := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	str(&c.DLQTopic, d.DLQTopic)
	str(&c.ChangelogTopic, d.ChangelogTopic)
	str(&c.ChangesTopic, d.ChangesTopic)
	str(&c.ControlTopic, d.ControlTopic)
	str(&c.ListNameTemplate, d.ListNameTemplate)
	dur(&c.FlushInterval, d.FlushInterval)
	dur(&c.SessionTimeout, d.SessionTimeout)
	dur(&c.RebalanceTimeout, d.RebalanceTimeout)
	dur(&c.RevokeTimeout, d.RevokeTimeout)
	dur(&c.ShutdownGrace, d.ShutdownGrace)
	dur(&c.UnhealthyAfter, d.UnhealthyAfter)
	dur(&c.CommitInterval, d.CommitInterval)
	dur(&c.TransactionTimeout, d.TransactionTimeout)
	dur(&c.AudiencePollInterval, d.AudiencePollInterval)
	dur(&c.ParkedRetry, d.ParkedRetry)
	dur(&c.BudgetLease, d.BudgetLease)
	dur(&c.TopicCheckInterval, d.TopicCheckInterval)
	num(&c.MaxRecords, d.MaxRecords)
	num(&c.MaxBuffered, d.MaxBuffered)
	if c.RebuildMaxBytes == 0 {
		c.RebuildMaxBytes = d.RebuildMaxBytes
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = d.MaxBufferedBytes
	}
	num(&c.MaxIdentifiersPerType, d.MaxIdentifiersPerType)
	num(&c.MaxFlights, d.MaxFlights)
	return c
}

// maxBudgetLease bounds sync.budget_lease: a longer lease holds a lender's
// budget longer after the borrower stopped needing it.
const maxBudgetLease = 5 * time.Minute

// budgetLease is the list stage's lease: 0 without lending.
func (c Config) budgetLease() time.Duration {
	if c.BudgetLease < 0 || !topicOn(c.ControlTopic) {
		return 0
	}
	return c.BudgetLease
}

// listsGroup is the list stage's consumer group.
func (c Config) listsGroup() string { return c.Group + ".lists" }

// rekeyGroup is the re-key stage's consumer group (on the input topic).
func (c Config) rekeyGroup() string { return c.Group + ".rekey" }

// RekeyTopic is the re-keyed topic of kafka.rekey: "<group>.rekeyed".
func (c Config) RekeyTopic() string { return c.Group + ".rekeyed" }

// ProfileTopic is the topic the profile stage (the group kafka.group)
// consumes: the re-keyed topic with kafka.rekey, else the input.
func (c Config) ProfileTopic() string {
	if c.Rekey {
		return c.RekeyTopic()
	}
	return c.Topics[0]
}

// Validate reports every problem with c, each naming its field.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if len(c.Topics) != 1 {
		bad("kafka.topics", "exactly one topic is required, got %d", len(c.Topics))
	}
	for _, t := range c.Topics {
		if strings.TrimSpace(t) == "" {
			bad("kafka.topics", "empty topic name")
		}
	}
	if c.Group == "" {
		bad("kafka.group", "required")
	}
	if c.Rekey && len(c.Topics) == 1 && c.Topics[0] == c.RekeyTopic() {
		bad("kafka.rekey", "the input topic %q is the re-keyed topic of kafka.group %q", c.Topics[0], c.Group)
	}
	if c.AdAccount == "" {
		if unmapped := c.unmappedAudiences(); unmapped != "" {
			bad("pinterest.ad_account_id", "required: %s", unmapped)
		}
	}
	if c.AdAccount != "" && !numeric(c.AdAccount) {
		bad("pinterest.ad_account_id", "must be the numeric ad account id, got %q", c.AdAccount)
	}
	for k, v := range c.AudienceAdAccounts {
		if !numeric(v) {
			bad("pinterest.audience_ad_accounts."+k, "must be a numeric ad account id, got %q", v)
		}
	}
	if c.ChangesTopic == "-" {
		bad("kafka.changes_topic", "cannot be disabled: it joins the profile and list stages")
	}
	if c.ChangesPartitions < 0 || c.ChangesPartitions > 10_000 {
		bad("kafka.changes_partitions", "must be between 1 and 10000 (0: the input's), got %d", c.ChangesPartitions)
	}
	if c.FlushInterval < 10*time.Millisecond {
		bad("sync.flush_interval", "must be at least 10ms, got %s", c.FlushInterval)
	}
	if c.MaxRecords < 1 {
		bad("pinterest.max_records", "must be positive, got %d", c.MaxRecords)
	}
	if c.RebuildMaxBytes < minBufferedBytes {
		bad("sync.rebuild_max_bytes", "must be at least %d (1 MiB), got %d", minBufferedBytes, c.RebuildMaxBytes)
	}
	if c.MaxBufferedBytes < minBufferedBytes {
		bad("sync.max_buffered_bytes", "must be at least %d (1 MiB), got %d", minBufferedBytes, c.MaxBufferedBytes)
	}
	if c.MaxBuffered < c.MaxRecords {
		bad("sync.max_buffered_records", "must be at least pinterest.max_records (%d), got %d", c.MaxRecords, c.MaxBuffered)
	}
	if c.MaxIdentifiersPerType < 1 || c.MaxIdentifiersPerType > 100 {
		bad("sync.max_identifiers_per_type", "must be between 1 and 100, got %d", c.MaxIdentifiersPerType)
	}
	if err := lists.CheckListNameTemplate(c.ListNameTemplate); err != nil {
		bad("sync.list_name_template", "%v", err)
	}
	for _, g := range append(append([]string(nil), c.Allow...), c.Deny...) {
		if _, err := glob.Compile(g); err != nil {
			bad("sync.audiences", "%v", err)
		}
	}
	if c.SessionTimeout < 6*time.Second || c.SessionTimeout > 30*time.Minute {
		bad("kafka.session_timeout", "must be between 6s and 30m, got %s", c.SessionTimeout)
	}
	if c.RebalanceTimeout < time.Second {
		bad("kafka.rebalance_timeout", "must be at least 1s, got %s", c.RebalanceTimeout)
	}
	// A revoke flushes, then commits, each within the revoke timeout: the
	// member rejoins after both, and must within the rebalance timeout or
	// the group goes on without it.
	if c.RevokeTimeout <= 0 || 2*c.RevokeTimeout >= c.RebalanceTimeout {
		bad("sync.revoke_timeout", "must be positive and less than half kafka.rebalance_timeout (%s), got %s", c.RebalanceTimeout, c.RevokeTimeout)
	}
	if c.ShutdownGrace <= 0 {
		bad("sync.shutdown_grace", "must be positive")
	}
	if c.UnhealthyAfter <= 0 {
		bad("sync.unhealthy_after", "must be positive")
	}
	if c.ParkedRetry <= 0 {
		bad("sync.parked_retry_interval", "must be positive")
	}
	if c.BudgetLease > 0 && (c.BudgetLease < lending.MinLease || c.BudgetLease > min(maxBudgetLease, c.SessionTimeout)) {
		bad("sync.budget_lease", "must be between %s and %s and at most kafka.session_timeout (negative: no lending), got %s",
			lending.MinLease, maxBudgetLease, c.BudgetLease)
	}
	if c.TopicCheckInterval < 10*time.Millisecond {
		bad("kafka.topic_check_interval", "must be at least 10ms, got %s", c.TopicCheckInterval)
	}
	if c.MaxFlights < 1 {
		bad("sync.max_flights", "must be positive")
	}
	if c.CommitInterval <= 0 {
		bad("sync.commit_interval", "must be positive")
	}
	if c.TransactionTimeout <= 2*c.CommitInterval || c.TransactionTimeout > 15*time.Minute {
		bad("kafka.transaction_timeout", "must exceed twice sync.commit_interval (%s) and be at most 15m, got %s", c.CommitInterval, c.TransactionTimeout)
	}
	if err := c.Decoder.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.InputFormat.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("kafka.input_format.%w", err))
	}
	return errors.Join(errs...)
}

func numeric(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func topicOn(t string) bool { return t != "-" }

// unmappedAudiences names what sync.audiences.allow selects that
// pinterest.audience_ad_accounts does not map, when there is no default ad
// account: a glob (it may select any audience) or a key missing from the
// map. It returns "" when every selected audience has an account.
func (c Config) unmappedAudiences() string {
	allow := c.Allow
	if len(allow) == 0 {
		allow = []string{"*"}
	}
	for _, a := range allow {
		if glob.HasMeta(a) {
			return fmt.Sprintf("sync.audiences.allow %q may select audiences that pinterest.audience_ad_accounts does not map to an ad account", a)
		}
		if _, ok := c.AudienceAdAccounts[a]; !ok {
			return fmt.Sprintf("audience %q is allowed, but pinterest.audience_ad_accounts maps it to no ad account", a)
		}
	}
	return ""
}

// decoder is the event decoder's configuration: an event's ad-account
// override is checked where it decides the audience's account.
func (c Config) decoder() schemas.DecoderConfig {
	d := c.Decoder
	d.AdAccountOverrides = c.AllowAudienceSettings
	return d
}
