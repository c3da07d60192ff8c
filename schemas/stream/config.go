package stream

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// None is the value to give a fraction of Config that must be zero: a zero
// fraction means "use the default".
const None = -1.0

// Defaults used for zero fields of Config.
const (
	DefaultProfiles          = 20_000
	DefaultAudiences         = 12
	DefaultEvents            = 100_000
	DefaultMalformedFraction = 0.001
	DefaultNativeFraction    = 0.05
	DefaultEmailsPerProfile  = 3
	DefaultDevicesPerProfile = 2
	DefaultDeviceFraction    = 0.4
	DefaultUntrackedFraction = 0.1
	DefaultMembershipRate    = 0.08
	DefaultIdentifyFraction  = 0.25
	DefaultForgetFraction    = 0.002
	DefaultConsentFraction   = 0.005
	DefaultMeanGap           = 50 * time.Millisecond
	defaultProfilePrefix     = "usr_"
	DefaultEnteredEvent      = "Audience Entered"
	DefaultExitedEvent       = "Audience Exited"
)

// DefaultStart is the time of the first generated record when Config.Start
// is zero: a fixed instant, so that streams are reproducible.
var DefaultStart = time.Date(2026, time.March, 1, 0, 0, 0, 0, time.UTC)

// Config says what stream to generate. The zero Config is valid and gives
// the defaults; a zero fraction means the default, and None means zero.
type Config struct {
	// Profiles is the number of distinct profiles (record keys).
	Profiles int
	// Audiences is the number of audiences. The first twelve have
	// hand-picked names; further ones get generated names.
	Audiences int
	// Events is the total number of records to emit, malformed ones
	// included. The backfill comes first and is cut short if it alone
	// exceeds Events.
	Events int
	// Seed makes the stream: the same Config gives the same bytes.
	Seed uint64
	// AudiencePrefix is put before every audience key, so that several
	// runs or tests can share a topic or an ad account.
	AudiencePrefix string
	// ProfilePrefix is put before every profile id; default "usr_".
	ProfilePrefix string

	// MalformedFraction is the share of records that are malformed (not
	// JSON, no audience key, ...). They are inserted between the real
	// records, so the stream's meaning does not depend on them.
	MalformedFraction float64
	// NativeFraction is the share of actions sent in pinsync's native
	// format instead of Segment's. Forgets exist only in the native format,
	// so None also means no forgets.
	NativeFraction float64

	// EmailsPerProfile is the most emails a profile ever has.
	EmailsPerProfile int
	// DevicesPerProfile is the most mobile devices a profile ever has.
	DevicesPerProfile int
	// DeviceFraction is the share of profiles with at least one device.
	DeviceFraction float64
	// UntrackedFraction is the share of devices whose ad tracking is off
	// from the start.
	UntrackedFraction float64
	// MembershipRate is the mean share of profiles in an audience at the
	// start; each audience gets its own rate around it.
	MembershipRate float64
	// IdentifyFraction is the share of audiences delivered as Segment
	// identify calls; the others are delivered as track calls.
	IdentifyFraction float64
	// ForgetFraction is the share of churn actions that are privacy
	// deletions (native forget records).
	ForgetFraction float64
	// ConsentCategory, when set, makes every Segment record carry
	// context.consent.categoryPreferences[ConsentCategory]; profiles
	// withdraw and grant it again now and then (ConsentFraction of the
	// churn actions).
	ConsentCategory string
	ConsentFraction float64

	// PreHashed says which identifiers the customer-data platform sends
	// already hashed, as a 64-hex SHA-256, instead of in plaintext
	// (default PreHashNone).
	PreHashed PreHash

	// EnteredEvent and ExitedEvent name the track events.
	EnteredEvent, ExitedEvent string
	// Start is the time of the first record; MeanGap the mean time between
	// two churn actions.
	Start   time.Time
	MeanGap time.Duration
}

// PreHash is how a customer-data platform sends identifiers.
type PreHash uint8

const (
	// PreHashNone sends every identifier in plaintext.
	PreHashNone PreHash = iota
	// PreHashPinterest sends every identifier hashed as Pinterest matches
	// it: the SHA-256 of the email trimmed and lowercased, of the IDFA
	// trimmed and uppercased, of the Android id trimmed and lowercased.
	PreHashPinterest
	// PreHashIDFALowercase sends IDFAs hashed from their lower-case form
	// (the rest in plaintext): a normalisation Pinterest does not match,
	// as a producer (or pinsync before it followed Pinterest's rule) might
	// use. Lists fed this way are exact and match nobody.
	PreHashIDFALowercase
)

// ConfigError says which field of a Config is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "stream config: " + e.Field + ": " + e.Reason }

// withDefaults returns c with every zero field set to its default and every
// None fraction set to zero.
func (c Config) withDefaults() Config {
	intDef := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	fracDef := func(v *float64, d float64) {
		switch {
		case *v == 0:
			*v = d
		case *v == None:
			*v = 0
		}
	}
	intDef(&c.Profiles, DefaultProfiles)
	intDef(&c.Audiences, DefaultAudiences)
	intDef(&c.Events, DefaultEvents)
	intDef(&c.EmailsPerProfile, DefaultEmailsPerProfile)
	intDef(&c.DevicesPerProfile, DefaultDevicesPerProfile)
	fracDef(&c.MalformedFraction, DefaultMalformedFraction)
	fracDef(&c.NativeFraction, DefaultNativeFraction)
	fracDef(&c.DeviceFraction, DefaultDeviceFraction)
	fracDef(&c.UntrackedFraction, DefaultUntrackedFraction)
	fracDef(&c.MembershipRate, DefaultMembershipRate)
	fracDef(&c.IdentifyFraction, DefaultIdentifyFraction)
	fracDef(&c.ForgetFraction, DefaultForgetFraction)
	fracDef(&c.ConsentFraction, DefaultConsentFraction)
	if c.ProfilePrefix == "" {
		c.ProfilePrefix = defaultProfilePrefix
	}
	if c.EnteredEvent == "" {
		c.EnteredEvent = DefaultEnteredEvent
	}
	if c.ExitedEvent == "" {
		c.ExitedEvent = DefaultExitedEvent
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	if c.MeanGap == 0 {
		c.MeanGap = DefaultMeanGap
	}
	return c
}

// Validate reports every invalid field, each as a *ConfigError (joined).
func (c Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	bad := func(field, reason string) { errs = append(errs, &ConfigError{field, reason}) }
	if d.Profiles < 1 || d.Profiles > 1<<40 {
		bad("Profiles", "must be between 1 and 2^40")
	}
	if d.Audiences < 1 || d.Audiences > 100_000 {
		bad("Audiences", "must be between 1 and 100000")
	}
	if d.Events < 1 {
		bad("Events", "must be positive")
	}
	if d.EmailsPerProfile < 1 || d.EmailsPerProfile > 64 {
		bad("EmailsPerProfile", "must be between 1 and 64")
	}
	if d.DevicesPerProfile < 0 || d.DevicesPerProfile > 64 {
		bad("DevicesPerProfile", "must be between 0 and 64")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"MalformedFraction", d.MalformedFraction},
		{"NativeFraction", d.NativeFraction},
		{"DeviceFraction", d.DeviceFraction},
		{"UntrackedFraction", d.UntrackedFraction},
		{"MembershipRate", d.MembershipRate},
		{"IdentifyFraction", d.IdentifyFraction},
		{"ForgetFraction", d.ForgetFraction},
		{"ConsentFraction", d.ConsentFraction},
	} {
		if !(f.v >= 0 && f.v <= 1) { // also catches NaN
			bad(f.name, fmt.Sprintf("must be between 0 and 1 (or None), got %v", f.v))
		}
	}
	if d.MalformedFraction > 0.5 {
		bad("MalformedFraction", "must be at most 0.5")
	}
	for _, s := range []struct{ name, v string }{
		{"AudiencePrefix", d.AudiencePrefix}, {"ProfilePrefix", d.ProfilePrefix},
		{"ConsentCategory", d.ConsentCategory},
		{"EnteredEvent", d.EnteredEvent}, {"ExitedEvent", d.ExitedEvent},
	} {
		if !utf8.ValidString(s.v) {
			bad(s.name, "must be valid UTF-8")
		}
		if len(s.v) > 200 {
			bad(s.name, "must be at most 200 bytes")
		}
	}
	if d.EnteredEvent == d.ExitedEvent {
		bad("ExitedEvent", "must differ from EnteredEvent")
	}
	if d.MeanGap < 0 {
		bad("MeanGap", "must not be negative")
	}
	if d.PreHashed > PreHashIDFALowercase {
		bad("PreHashed", fmt.Sprintf("unknown value %d", d.PreHashed))
	}
	return errors.Join(errs...)
}
