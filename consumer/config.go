package consumer

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"text/template"
	"time"

	"github.com/pinsync/pinsync/schemas"
)

// Config is the sync engine's configuration. The zero value of a field
// means its default (see Defaults).
type Config struct {
	// Topics are the event topics to consume.
	Topics []string
	// Group is the consumer group; it names the default DLQ and changelog.
	Group string
	// DLQTopic receives records that cannot be decoded or that Pinterest
	// rejected for good. Default "<group>.dlq".
	DLQTopic string
	// ChangelogTopic holds each partition's profile state, co-partitioned
	// with the input. Default "<group>.changelog". "-" disables it.
	ChangelogTopic string
	// ControlTopic is the single-partition compacted topic where replicas
	// agree on who creates each Pinterest list (see control.go). Default
	// "<group>.control". "-" disables it: each replica then finds or
	// creates lists on its own, which may create a list twice.
	ControlTopic string
	// ClaimTimeout is how long a replica's claim to create a list holds
	// before another may take it over. Default 30s.
	ClaimTimeout time.Duration
	// FlushInterval is the longest a change waits in a window, and the epoch
	// length of the commit checkpoints. Default 10s.
	FlushInterval time.Duration
	// MaxRecords is the per-request maximum of records. Default 5000.
	MaxRecords int
	// MaxBuffered caps the records waiting in windows; fetching pauses at
	// the cap. Default 1,000,000.
	MaxBuffered int
	// MaxIdentifiersPerType bounds each profile's identifiers of one type;
	// beyond it the oldest is dropped (and removed from the lists). Default 5.
	MaxIdentifiersPerType int
	// ListNameTemplate names a Pinterest list (and its audience) from
	// {{.Audience}} (key), {{.Name}} (display name, or the key) and
	// {{.ListType}} (EMAIL, IDFA, MAID). Default "pinsync {{.Audience}} {{.ListType}}".
	ListNameTemplate string
	// Allow and Deny select audiences by key glob (path.Match). Events of
	// audiences not selected change identifiers but upload nothing.
	Allow, Deny []string
	// AdAccount is the default ad account; AudienceAdAccounts overrides it
	// per audience key; AllowAudienceSettings lets an event's
	// audience_settings override it.
	AdAccount             string
	AudienceAdAccounts    map[string]string
	AllowAudienceSettings bool
	// RevokeTimeout bounds the flush of revoked partitions. Default 10s.
	RevokeTimeout time.Duration
	// ShutdownGrace bounds the final flush on shutdown. Default 30s.
	ShutdownGrace time.Duration
	// MaxFlights bounds concurrent uploads. Default 8.
	MaxFlights int
	// CommitInterval is how often completed epochs are committed. Default 1s.
	CommitInterval time.Duration
	// AudiencePollInterval is how often each audience's size and status
	// are read from Pinterest. Default 15m; negative disables.
	AudiencePollInterval time.Duration
	// Decoder configures the event decoder.
	Decoder schemas.DecoderConfig
}

// withDefaults returns c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.DLQTopic == "" && c.Group != "" {
		c.DLQTopic = c.Group + ".dlq"
	}
	if c.ChangelogTopic == "" && c.Group != "" {
		c.ChangelogTopic = c.Group + ".changelog"
	}
	if c.ControlTopic == "" && c.Group != "" {
		c.ControlTopic = c.Group + ".control"
	}
	if c.ClaimTimeout == 0 {
		c.ClaimTimeout = 30 * time.Second
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 10 * time.Second
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = 5000
	}
	if c.MaxBuffered == 0 {
		c.MaxBuffered = 1_000_000
	}
	if c.MaxIdentifiersPerType == 0 {
		c.MaxIdentifiersPerType = 5
	}
	if c.ListNameTemplate == "" {
		c.ListNameTemplate = DefaultListNameTemplate
	}
	if c.RevokeTimeout == 0 {
		c.RevokeTimeout = 10 * time.Second
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.MaxFlights == 0 {
		c.MaxFlights = 8
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Second
	}
	if c.AudiencePollInterval == 0 {
		c.AudiencePollInterval = 15 * time.Minute
	}
	return c
}

// DefaultListNameTemplate is the default Pinterest list name.
const DefaultListNameTemplate = "pinsync {{.Audience}} {{.ListType}}"

// Validate reports every problem with c, each naming its field.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if len(c.Topics) == 0 {
		bad("kafka.topics", "at least one topic is required")
	}
	for _, t := range c.Topics {
		if strings.TrimSpace(t) == "" {
			bad("kafka.topics", "empty topic name")
		}
	}
	if c.Group == "" {
		bad("kafka.group", "required")
	}
	if c.AdAccount == "" && len(c.AudienceAdAccounts) == 0 {
		bad("pinterest.ad_account_id", "required")
	}
	if c.AdAccount != "" && !numeric(c.AdAccount) {
		bad("pinterest.ad_account_id", "must be the numeric ad account id, got %q", c.AdAccount)
	}
	for k, v := range c.AudienceAdAccounts {
		if !numeric(v) {
			bad("pinterest.audience_ad_accounts."+k, "must be a numeric ad account id, got %q", v)
		}
	}
	if c.FlushInterval < 10*time.Millisecond {
		bad("sync.flush_interval", "must be at least 10ms, got %s", c.FlushInterval)
	}
	if c.MaxRecords < 1 {
		bad("pinterest.max_records", "must be positive, got %d", c.MaxRecords)
	}
	if c.MaxBuffered < c.MaxRecords {
		bad("sync.max_buffered_records", "must be at least pinterest.max_records (%d), got %d", c.MaxRecords, c.MaxBuffered)
	}
	if c.MaxIdentifiersPerType < 1 || c.MaxIdentifiersPerType > 100 {
		bad("sync.max_identifiers_per_type", "must be between 1 and 100, got %d", c.MaxIdentifiersPerType)
	}
	if _, err := template.New("list").Option("missingkey=error").Parse(c.ListNameTemplate); err != nil {
		bad("sync.list_name_template", "%v", err)
	}
	for _, g := range append(append([]string(nil), c.Allow...), c.Deny...) {
		if _, err := path.Match(g, ""); err != nil {
			bad("sync.audiences", "bad glob %q: %v", g, err)
		}
	}
	if c.ClaimTimeout < 0 {
		bad("ClaimTimeout", "must not be negative")
	}
	if c.RevokeTimeout <= 0 {
		bad("sync.revoke_timeout", "must be positive")
	}
	if c.ShutdownGrace <= 0 {
		bad("sync.shutdown_grace", "must be positive")
	}
	if c.MaxFlights < 1 {
		bad("sync.max_flights", "must be positive")
	}
	if err := c.Decoder.Validate(); err != nil {
		errs = append(errs, err)
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
