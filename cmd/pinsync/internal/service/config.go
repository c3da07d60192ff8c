// Package service assembles a running pinsync from its configuration file:
// the Kafka client options, the Pinterest client, the sync engine and the
// HTTP server for metrics, health and status. cmd/pinsync calls Run; tests
// and the demo call it in-process.
package service

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
)

// Duration is a time.Duration written as "10s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 10s or 5m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Config is pinsync's configuration file. Every key is documented in the
// README with its default.
type Config struct {
	Kafka     KafkaConfig     `yaml:"kafka"`
	Pinterest PinterestConfig `yaml:"pinterest"`
	Sync      SyncConfig      `yaml:"sync"`
	HTTP      HTTPConfig      `yaml:"http"`
	Log       LogConfig       `yaml:"log"`
}

// KafkaConfig is the kafka section.
type KafkaConfig struct {
	Brokers            []string   `yaml:"brokers"`
	Topics             []string   `yaml:"topics"`
	Group              string     `yaml:"group"`
	ClientID           string     `yaml:"client_id"`
	InstanceID         string     `yaml:"instance_id"`
	LeaveOnShutdown    string     `yaml:"leave_on_shutdown"`
	SessionTimeout     Duration   `yaml:"session_timeout"`
	RebalanceTimeout   Duration   `yaml:"rebalance_timeout"`
	DLQTopic           string     `yaml:"dlq_topic"`
	ChangelogTopic     string     `yaml:"changelog_topic"`
	ChangesTopic       string     `yaml:"changes_topic"`
	ChangesPartitions  int        `yaml:"changes_partitions"`
	ControlTopic       string     `yaml:"control_topic"`
	TransactionTimeout Duration   `yaml:"transaction_timeout"`
	TopicCheckInterval Duration   `yaml:"topic_check_interval"`
	Rekey              bool       `yaml:"rekey"`
	TLS                TLSConfig  `yaml:"tls"`
	SASL               SASLConfig `yaml:"sasl"`
	// InputFormat is the value format of the input topic (package
	// schemas/format); SchemaRegistry is reached for its registry formats.
	InputFormat    format.Config        `yaml:"input_format"`
	SchemaRegistry SchemaRegistryConfig `yaml:"schema_registry"`
}

// SchemaRegistryConfig is kafka.schema_registry: format.RegistryConfig,
// with its secrets also from files.
type SchemaRegistryConfig struct {
	URL             string   `yaml:"url"`
	Username        string   `yaml:"username"`
	Password        string   `yaml:"password"`
	PasswordFile    string   `yaml:"password_file"`
	BearerToken     string   `yaml:"bearer_token"`
	BearerTokenFile string   `yaml:"bearer_token_file"`
	Timeout         Duration `yaml:"timeout"`
	CacheSize       int      `yaml:"cache_size"`
}

// Registry returns the registry client's configuration.
func (c SchemaRegistryConfig) Registry() format.RegistryConfig {
	return format.RegistryConfig{URL: c.URL, Username: c.Username, Password: c.Password, BearerToken: c.BearerToken,
		Timeout: time.Duration(c.Timeout), CacheSize: c.CacheSize}
}

// TLSConfig is kafka.tls.
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASLConfig is kafka.sasl.
type SASLConfig struct {
	Mechanism    string `yaml:"mechanism"`
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// TokenStoreConfig is pinterest.token_store.
type TokenStoreConfig struct {
	Kind   string `yaml:"kind"`
	Path   string `yaml:"path"`
	KeyEnv string `yaml:"key_env"`
}

// PinterestConfig is the pinterest section.
type PinterestConfig struct {
	BaseURL               string            `yaml:"base_url"`
	AuthURL               string            `yaml:"auth_url"`
	AdAccountID           string            `yaml:"ad_account_id"`
	AppID                 string            `yaml:"app_id"`
	AppSecret             string            `yaml:"app_secret"`
	AppSecretFile         string            `yaml:"app_secret_file"`
	TokenStore            TokenStoreConfig  `yaml:"token_store"`
	WritesPerMinute       float64           `yaml:"writes_per_minute"`
	ReadsPerMinute        float64           `yaml:"reads_per_minute"`
	MaxRecords            int               `yaml:"max_records"`
	MaxBytes              int               `yaml:"max_bytes"`
	BreakerFailures       uint32            `yaml:"breaker_failures"`
	BreakerOpenTimeout    Duration          `yaml:"breaker_open_timeout"`
	AudienceAdAccounts    map[string]string `yaml:"audience_ad_accounts"`
	AllowAudienceSettings bool              `yaml:"allow_audience_settings"`
}

// AudienceFilter is sync.audiences.
type AudienceFilter struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// SyncConfig is the sync section.
type SyncConfig struct {
	FlushInterval         Duration       `yaml:"flush_interval"`
	MaxBufferedRecords    int            `yaml:"max_buffered_records"`
	MaxBufferedBytes      int64          `yaml:"max_buffered_bytes"`
	MaxIdentifiersPerType int            `yaml:"max_identifiers_per_type"`
	ListNameTemplate      string         `yaml:"list_name_template"`
	Audiences             AudienceFilter `yaml:"audiences"`
	EnteredEvent          string         `yaml:"entered_event"`
	ExitedEvent           string         `yaml:"exited_event"`
	ConsentCategory       string         `yaml:"consent_category"`
	ShutdownGrace         Duration       `yaml:"shutdown_grace"`
	UnhealthyAfter        Duration       `yaml:"unhealthy_after"`
	RevokeTimeout         Duration       `yaml:"revoke_timeout"`
	AudiencePollInterval  Duration       `yaml:"audience_poll_interval"`
	ParkedRetryInterval   Duration       `yaml:"parked_retry_interval"`
	BudgetLease           Duration       `yaml:"budget_lease"`
	RebuildMaxBytes       int64          `yaml:"rebuild_max_bytes"`
	MaxFlights            int            `yaml:"max_flights"`
	CommitInterval        Duration       `yaml:"commit_interval"`
}

// HTTPConfig is the http section.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// Advertise is where the other processes and `pinsync status` reach
	// this one's HTTP server: a host or host:port (the port of Listen when
	// omitted). Empty means the host of Listen, or the machine's hostname
	// when Listen names none (":8080") or any address ("0.0.0.0:8080").
	Advertise string `yaml:"advertise"`
}

// LogConfig is the log section.
type LogConfig struct {
	Level string `yaml:"level"`
}

// Default returns the configuration with every default filled in. The
// defaults come from the packages that own them (consumer.Defaults and
// the pinterest package's constants); this only adds the file's own.
func Default() Config {
	sd := consumer.Defaults()
	return Config{
		Kafka: KafkaConfig{
			Brokers: []string{"localhost:9092"}, Topics: []string{"pinsync.events"}, Group: "pinsync",
			ClientID: "pinsync", LeaveOnShutdown: LeaveNever, SessionTimeout: Duration(sd.SessionTimeout), RebalanceTimeout: Duration(sd.RebalanceTimeout),
			TransactionTimeout: Duration(sd.TransactionTimeout), TopicCheckInterval: Duration(sd.TopicCheckInterval),
			InputFormat:    format.Config{Kind: format.JSON},
			SchemaRegistry: SchemaRegistryConfig{Timeout: Duration(format.DefaultRegistryTimeout), CacheSize: format.DefaultCacheSize},
		},
		Pinterest: PinterestConfig{
			BaseURL: pinterest.DefaultBaseURL, AuthURL: pinterest.DefaultAuthURL,
			TokenStore:      TokenStoreConfig{Kind: "file", Path: "pinsync-token.json", KeyEnv: "PINSYNC_PINTEREST_TOKEN_KEY"},
			WritesPerMinute: pinterest.DefaultWritesPerMinute, ReadsPerMinute: pinterest.DefaultReadsPerMinute,
			MaxRecords: sd.MaxRecords, MaxBytes: pinterest.DefaultMaxBytes,
			BreakerFailures: pinterest.DefaultBreakerFailures, BreakerOpenTimeout: Duration(pinterest.DefaultBreakerOpenTimeout),
		},
		Sync: SyncConfig{
			FlushInterval: Duration(sd.FlushInterval), MaxBufferedRecords: sd.MaxBuffered, MaxBufferedBytes: sd.MaxBufferedBytes, MaxIdentifiersPerType: sd.MaxIdentifiersPerType,
			ListNameTemplate: sd.ListNameTemplate, Audiences: AudienceFilter{Allow: []string{"*"}},
			EnteredEvent: schemas.DefaultEnteredEvent, ExitedEvent: schemas.DefaultExitedEvent,
			ShutdownGrace: Duration(sd.ShutdownGrace), RevokeTimeout: Duration(sd.RevokeTimeout), UnhealthyAfter: Duration(sd.UnhealthyAfter),
			AudiencePollInterval: Duration(sd.AudiencePollInterval), MaxFlights: sd.MaxFlights,
			ParkedRetryInterval: Duration(sd.ParkedRetry), BudgetLease: Duration(sd.BudgetLease),
			RebuildMaxBytes: sd.RebuildMaxBytes,
			CommitInterval:  Duration(sd.CommitInterval),
		},
		HTTP: HTTPConfig{Listen: ":8080"},
		Log:  LogConfig{Level: "info"},
	}
}

// Load reads the YAML file at path (strictly: unknown keys are errors) over
// the defaults, applies PINSYNC_* environment overrides from getenv, reads
// secret files, and validates the result. path may be empty.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg, err := LoadUnvalidated(path, getenv)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// LoadUnvalidated is Load without the final validation, for commands that
// need only part of the configuration (pinsync auth validates only the
// pinterest section with ValidatePinterest).
func LoadUnvalidated(path string, getenv func(string) string) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := Parse(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return cfg, err
	}
	if cfg.Pinterest.AppSecret == "" && cfg.Pinterest.AppSecretFile != "" {
		b, err := os.ReadFile(cfg.Pinterest.AppSecretFile)
		if err != nil {
			return cfg, fmt.Errorf("pinterest.app_secret_file: %w", err)
		}
		cfg.Pinterest.AppSecret = strings.TrimSpace(string(b))
	}
	if cfg.Kafka.SASL.Password == "" && cfg.Kafka.SASL.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Kafka.SASL.PasswordFile)
		if err != nil {
			return cfg, fmt.Errorf("kafka.sasl.password_file: %w", err)
		}
		cfg.Kafka.SASL.Password = strings.TrimSpace(string(b))
	}
	for _, f := range []struct {
		key  string
		path string
		into *string
	}{
		{"kafka.schema_registry.password_file", cfg.Kafka.SchemaRegistry.PasswordFile, &cfg.Kafka.SchemaRegistry.Password},
		{"kafka.schema_registry.bearer_token_file", cfg.Kafka.SchemaRegistry.BearerTokenFile, &cfg.Kafka.SchemaRegistry.BearerToken},
	} {
		if *f.into != "" || f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", f.key, err)
		}
		*f.into = strings.TrimSpace(string(b))
	}
	return cfg, nil
}

// Parse decodes YAML over cfg, rejecting unknown keys.
func Parse(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// applyEnv sets every key whose variable (EnvName) is set and not empty,
// e.g. PINSYNC_KAFKA_BROKERS=a:9092,b:9092 or PINSYNC_KAFKA_TLS_ENABLED=true.
// Each error names the variable and the key.
func applyEnv(cfg *Config, getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	var errs []error
	walkFields(reflect.ValueOf(cfg).Elem(), "", func(key string, v reflect.Value) {
		name := EnvName(key)
		s := getenv(name)
		if s == "" {
			return
		}
		if err := setFromString(v, s); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", name, key, err))
		}
	})
	return errors.Join(errs...)
}

// Keys returns every configuration key in dotted form (kafka.brokers,
// kafka.tls.enabled, ...): the keys pinsync accepts in its file, each of
// which EnvName turns into its variable.
func Keys() []string {
	var keys []string
	var cfg Config
	walkFields(reflect.ValueOf(&cfg).Elem(), "", func(key string, _ reflect.Value) {
		keys = append(keys, key)
	})
	return keys
}

// EnvName returns the environment variable that overrides a dotted key:
// PINSYNC_ and the key upper-cased with its dots as underscores
// (sync.max_buffered_bytes: PINSYNC_SYNC_MAX_BUFFERED_BYTES).
func EnvName(key string) string {
	return "PINSYNC_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// walkFields calls fn with the dotted key and the value of every leaf of the
// struct v (nested structs are sections, walked in turn).
func walkFields(v reflect.Value, prefix string, fn func(key string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		if fv := v.Field(i); fv.Kind() == reflect.Struct {
			walkFields(fv, key, fn)
		} else {
			fn(key, fv)
		}
	}
}

// setFromString sets v from an environment variable's text: a duration as
// in the file (10s), numbers of any size, booleans, lists as comma-separated
// items and maps as k=v pairs separated by commas.
func setFromString(v reflect.Value, s string) error {
	if v.Type() == reflect.TypeFor[Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 10s or 5m", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer of %d bits", s, v.Type().Bits())
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a non-negative integer of %d bits", s, v.Type().Bits())
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot set a %s from the environment", v.Type())
		}
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		v.Set(reflect.ValueOf(out).Convert(v.Type()))
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot set a %s from the environment", v.Type())
		}
		m := map[string]string{}
		for _, p := range strings.Split(s, ",") {
			k, val, ok := strings.Cut(p, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return fmt.Errorf("%q: want key=value pairs separated by commas", s)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		v.Set(reflect.ValueOf(m).Convert(v.Type()))
	default:
		return fmt.Errorf("cannot set a %s from the environment", v.Type())
	}
	return nil
}

// Validate checks the whole configuration before any connection; each
// error names its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker is required")
	}
	for _, b := range c.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad("kafka.brokers", "%q is not host:port", b)
		}
	}
	switch c.Kafka.LeaveOnShutdown {
	case LeaveNever, LeaveAlways, LeaveStatefulSet:
	default:
		bad("kafka.leave_on_shutdown", "must be never, always or statefulset, got %q", c.Kafka.LeaveOnShutdown)
	}
	if c.Kafka.TLS.CertFile != "" && c.Kafka.TLS.KeyFile == "" || c.Kafka.TLS.CertFile == "" && c.Kafka.TLS.KeyFile != "" {
		bad("kafka.tls", "cert_file and key_file go together")
	}
	switch strings.ToUpper(c.Kafka.SASL.Mechanism) {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.Kafka.SASL.Username == "" || c.Kafka.SASL.Password == "" {
			bad("kafka.sasl", "mechanism %s needs username and password (or password_file)", c.Kafka.SASL.Mechanism)
		}
	default:
		bad("kafka.sasl.mechanism", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", c.Kafka.SASL.Mechanism)
	}
	if err := c.ValidatePinterest(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateRegistry(); err != nil {
		errs = append(errs, err)
	}
	if c.Pinterest.MaxBytes < 1024 {
		bad("pinterest.max_bytes", "must be at least 1024, got %d", c.Pinterest.MaxBytes)
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "%q is not host:port (e.g. :8080)", c.HTTP.Listen)
		}
	}
	if a := c.HTTP.Advertise; a != "" {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a // no port: the listener's
		}
		if host == "" || strings.ContainsAny(host, "/?#@ ") {
			bad("http.advertise", "%q is not a host or host:port (e.g. 10.0.0.7 or pinsync-0.pinsync:8080)", a)
		}
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if err := c.Engine().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validateRegistry checks kafka.schema_registry against the input format:
// set for a registry format, and only then. (kafka.input_format itself is
// checked with the engine's configuration.)
func (c Config) validateRegistry() error {
	r, kind := c.Kafka.SchemaRegistry, c.Kafka.InputFormat.Kind
	if !kind.Registered() {
		if r.URL != "" {
			return fmt.Errorf("kafka.schema_registry.url: only for kafka.input_format.kind avro, protobuf or json-schema, not %s", cmpOr(string(kind), string(format.JSON)))
		}
		return nil
	}
	if r.URL == "" {
		return fmt.Errorf("kafka.schema_registry.url: required for kafka.input_format.kind %s", kind)
	}
	if err := r.Registry().Validate(); err != nil {
		return fmt.Errorf("kafka.schema_registry.%w", err)
	}
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ValidatePinterest checks what talking to Pinterest needs: the app's
// credentials, the token store and the URLs.
func (c Config) ValidatePinterest() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if c.Pinterest.AppID == "" {
		bad("pinterest.app_id", "required (PINSYNC_PINTEREST_APP_ID)")
	}
	if c.Pinterest.AppSecret == "" {
		bad("pinterest.app_secret", "required: set PINSYNC_PINTEREST_APP_SECRET or pinterest.app_secret_file")
	}
	switch c.Pinterest.TokenStore.Kind {
	case "file":
		if c.Pinterest.TokenStore.Path == "" {
			bad("pinterest.token_store.path", "required for kind file")
		}
	case "kafka":
		if c.Pinterest.TokenStore.KeyEnv == "" {
			bad("pinterest.token_store.key_env", "required for kind kafka")
		}
		if c.Kafka.ControlTopic == "-" {
			bad("pinterest.token_store.kind", "kafka needs the control topic, but kafka.control_topic is \"-\"")
		}
	default:
		bad("pinterest.token_store.kind", "must be file or kafka, got %q", c.Pinterest.TokenStore.Kind)
	}
	for _, u := range []struct{ key, v string }{{"pinterest.base_url", c.Pinterest.BaseURL}, {"pinterest.auth_url", c.Pinterest.AuthURL}} {
		if pu, err := url.Parse(u.v); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad(u.key, "%q is not an absolute http(s) URL", u.v)
		}
	}
	return errors.Join(errs...)
}

// Engine returns the sync engine's part of the configuration.
func (c Config) Engine() consumer.Config {
	return consumer.Config{
		Topics: c.Kafka.Topics, Group: c.Kafka.Group, DLQTopic: c.Kafka.DLQTopic, ChangelogTopic: c.Kafka.ChangelogTopic,
		ChangesTopic: c.Kafka.ChangesTopic, ChangesPartitions: c.Kafka.ChangesPartitions, ControlTopic: c.Kafka.ControlTopic,
		SessionTimeout: time.Duration(c.Kafka.SessionTimeout), RebalanceTimeout: time.Duration(c.Kafka.RebalanceTimeout),
		TransactionTimeout: time.Duration(c.Kafka.TransactionTimeout), CommitInterval: time.Duration(c.Sync.CommitInterval),
		TopicCheckInterval: time.Duration(c.Kafka.TopicCheckInterval),
		FlushInterval:      time.Duration(c.Sync.FlushInterval), MaxRecords: c.Pinterest.MaxRecords,
		MaxBuffered: c.Sync.MaxBufferedRecords, MaxBufferedBytes: c.Sync.MaxBufferedBytes, MaxIdentifiersPerType: c.Sync.MaxIdentifiersPerType,
		ListNameTemplate: c.Sync.ListNameTemplate, Allow: c.Sync.Audiences.Allow, Deny: c.Sync.Audiences.Deny,
		AdAccount: c.Pinterest.AdAccountID, AudienceAdAccounts: c.Pinterest.AudienceAdAccounts,
		AllowAudienceSettings: c.Pinterest.AllowAudienceSettings,
		RevokeTimeout:         time.Duration(c.Sync.RevokeTimeout), ShutdownGrace: time.Duration(c.Sync.ShutdownGrace),
		UnhealthyAfter: time.Duration(c.Sync.UnhealthyAfter),
		MaxFlights:     c.Sync.MaxFlights, AudiencePollInterval: time.Duration(c.Sync.AudiencePollInterval),
		ParkedRetry: time.Duration(c.Sync.ParkedRetryInterval), BudgetLease: time.Duration(c.Sync.BudgetLease),
		RebuildMaxBytes: c.Sync.RebuildMaxBytes,
		Decoder: schemas.DecoderConfig{
			EnteredEvent: c.Sync.EnteredEvent, ExitedEvent: c.Sync.ExitedEvent, ConsentCategory: c.Sync.ConsentCategory,
		},
		InputFormat: c.Kafka.InputFormat, Rekey: c.Kafka.Rekey,
	}
}
