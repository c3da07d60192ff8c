package sandbox

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"
)

// Defaults applied by Config.withDefaults for zero-valued fields.
const (
	DefaultAdAccountID     = "549755885175"
	DefaultAppID           = "1234567"
	DefaultAppSecret       = "sandbox-app-secret"
	DefaultRefreshToken    = "pinr.sandbox-refresh-token"
	DefaultAccessTokenTTL  = 30 * 24 * time.Hour
	DefaultRefreshTokenTTL = 60 * 24 * time.Hour
	DefaultRefreshGrace    = 30 * time.Second
	DefaultWritesPerMinute = 400
	DefaultReadsPerMinute  = 1000
	DefaultMaxRecords      = 10000
	DefaultMaxBytes        = 1 << 20
	DefaultSeed            = 1
	// Unlimited, given as WritesPerMinute or ReadsPerMinute, disables that
	// rate limit (any negative value does).
	Unlimited = -1
	// MinAudienceSize is the number of matched members below which an
	// audience (and its customer list) is TOO_SMALL, as Pinterest documents.
	MinAudienceSize = 100
)

// Scopes the sandbox knows. Tokens carry a subset.
const (
	ScopeAdsRead  = "ads:read"
	ScopeAdsWrite = "ads:write"
)

// knownScopes are the scopes the authorize endpoint accepts (the ones of the
// pinterest_oauth2 security scheme).
var knownScopes = map[string]bool{
	"ads:read": true, "ads:write": true, "billing:read": true, "billing:write": true,
	"biz_access:read": true, "biz_access:write": true, "boards:read": true,
	"boards:read_secret": true, "boards:write": true, "boards:write_secret": true,
	"catalogs:read": true, "catalogs:write": true, "msot:write": true, "pins:read": true,
	"pins:read_secret": true, "pins:write": true, "pins:write_secret": true,
	"user_accounts:read": true, "user_accounts:write": true,
}

// businessRoles are the BusinessAccessRole values of the spec that an
// AdAccount may list in Permissions.
var businessRoles = map[string]bool{
	"OWNER": true, "ADMIN": true, "ANALYST": true, "SOS_READER": true,
	"FINANCE_MANAGER": true, "FINANCE_VIEW": true, "FINANCE_EDIT": true,
	"AUDIENCE_MANAGER": true, "CAMPAIGN_MANAGER": true, "CATALOGS_MANAGER": true,
	"RESTRICTED_OWNER": true, "PROFILE_MANAGER": true, "PROFILE_PUBLISHER": true,
}

// writeRoles are the roles that may create and change customer lists and
// audiences (pinsync's assumption; Pinterest does not publish it).
var writeRoles = map[string]bool{"OWNER": true, "ADMIN": true, "AUDIENCE_MANAGER": true}

// AdAccount is one ad account the sandbox's single user can reach.
type AdAccount struct {
	ID          string   // numeric, at most 18 digits
	Name        string   // default "Sandbox account <ID>"
	Country     string   // default "US"
	Currency    string   // default "USD"
	Permissions []string // BusinessAccessRole values; default ["OWNER"]
	// Shared marks an account reached through Business Access rather than
	// owned: GET /v5/ad_accounts?include_shared_accounts=false hides it.
	Shared bool
}

// Config configures a Server. The zero value is usable: every zero field
// takes the default named on it.
type Config struct {
	// AdAccounts the user can reach; default one OWNER account
	// DefaultAdAccountID, "Sandbox account", US, USD.
	AdAccounts []AdAccount
	// AppID and AppSecret are the only client credentials the token endpoint
	// accepts (HTTP Basic). Defaults DefaultAppID, DefaultAppSecret.
	AppID, AppSecret string
	// RefreshToken is seeded as valid, with Scopes, at start and after
	// nothing else (Reset keeps OAuth state). Default DefaultRefreshToken.
	RefreshToken string
	// AccessToken, when set, is seeded as a valid access token with Scopes
	// expiring AccessTokenTTL after New.
	AccessToken string
	// Scopes of the seeded tokens; default ads:read and ads:write.
	Scopes []string
	// RedirectURIs the authorize endpoint accepts; empty accepts any
	// http(s) URI.
	RedirectURIs []string
	// AccessTokenTTL is the lifetime of issued access tokens (expires_in);
	// default 30 days. Set it short to expire tokens mid-run.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of issued refresh tokens; default 60
	// days (Pinterest's continuous refresh tokens).
	RefreshTokenTTL time.Duration
	// RefreshGrace is how long a refresh token keeps working after it has
	// been used (rotated); default 30s; negative means it stops at once.
	RefreshGrace time.Duration
	// Population is who Pinterest knows (see User): a customer-list record
	// matches only if it is the hash Pinterest derives from one of these
	// users' identifiers of the list's type, so an audience's size is the
	// number of its list's records that match. Default: nobody.
	Population []User
	// MatchAnyRecord makes every record match, whoever it is, for tests of
	// sizes and statuses that are not about who matches. Pinterest never
	// does this; it cannot be combined with Population.
	MatchAnyRecord bool
	// WritesPerMinute is the ads_write budget per user and app per minute
	// (fixed window); default 400; negative (Unlimited) disables it.
	WritesPerMinute int
	// ReadsPerMinute is the ads_read budget; default 1000; negative disables.
	ReadsPerMinute int
	// MaxRecords and MaxBytes bound one customer-list request (records in
	// the records string; bytes of body). Beyond them the answer is 413.
	// Defaults 10000 and 1 MiB.
	MaxRecords int
	MaxBytes   int64
	// Faults in force from the start (see SetFaults).
	Faults Faults
	// Seed seeds the PRNG that decides injected errors; default 1.
	Seed uint64
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives one debug line per request (never tokens); default
	// discards.
	Logger *slog.Logger
}

// Validate reports the first invalid field, naming it.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, a := range c.AdAccounts {
		if !isNumericID(a.ID, 18) {
			errs = append(errs, fmt.Errorf("sandbox: AdAccounts[%d].ID %q: want 1-18 digits", i, a.ID))
		}
		if seen[a.ID] {
			errs = append(errs, fmt.Errorf("sandbox: AdAccounts[%d].ID %q: duplicate", i, a.ID))
		}
		seen[a.ID] = true
		for _, p := range a.Permissions {
			if !businessRoles[p] {
				errs = append(errs, fmt.Errorf("sandbox: AdAccounts[%d].Permissions: unknown role %q", i, p))
			}
		}
	}
	for _, s := range c.Scopes {
		if !knownScopes[s] {
			errs = append(errs, fmt.Errorf("sandbox: Scopes: unknown scope %q", s))
		}
	}
	if strings.ContainsAny(c.AppID, ":") {
		errs = append(errs, errors.New("sandbox: AppID must not contain ':'"))
	}
	if c.AccessTokenTTL < 0 {
		errs = append(errs, errors.New("sandbox: AccessTokenTTL must not be negative"))
	}
	if c.RefreshTokenTTL < 0 {
		errs = append(errs, errors.New("sandbox: RefreshTokenTTL must not be negative"))
	}
	if c.MatchAnyRecord && len(c.Population) > 0 {
		errs = append(errs, errors.New("sandbox: MatchAnyRecord and Population exclude each other"))
	}
	for i, u := range c.Population {
		if _, _, err := pinterestKey(u); err != nil {
			errs = append(errs, fmt.Errorf("sandbox: Population[%d]: %w", i, err))
			break
		}
	}
	if c.MaxRecords < 0 {
		errs = append(errs, errors.New("sandbox: MaxRecords must not be negative"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, errors.New("sandbox: MaxBytes must not be negative"))
	}
	if err := c.Faults.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if len(c.AdAccounts) == 0 {
		c.AdAccounts = []AdAccount{{ID: DefaultAdAccountID, Name: "Sandbox account"}}
	}
	accts := make([]AdAccount, len(c.AdAccounts))
	for i, a := range c.AdAccounts {
		if a.Name == "" {
			a.Name = "Sandbox account " + a.ID
		}
		if a.Country == "" {
			a.Country = "US"
		}
		if a.Currency == "" {
			a.Currency = "USD"
		}
		if len(a.Permissions) == 0 {
			a.Permissions = []string{"OWNER"}
		}
		a.Permissions = append([]string(nil), a.Permissions...)
		accts[i] = a
	}
	c.AdAccounts = accts
	if c.AppID == "" {
		c.AppID = DefaultAppID
	}
	if c.AppSecret == "" {
		c.AppSecret = DefaultAppSecret
	}
	if c.RefreshToken == "" {
		c.RefreshToken = DefaultRefreshToken
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{ScopeAdsRead, ScopeAdsWrite}
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if c.RefreshTokenTTL == 0 {
		c.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if c.RefreshGrace == 0 {
		c.RefreshGrace = DefaultRefreshGrace
	} else if c.RefreshGrace < 0 {
		c.RefreshGrace = 0
	}
	if c.WritesPerMinute == 0 {
		c.WritesPerMinute = DefaultWritesPerMinute
	}
	if c.ReadsPerMinute == 0 {
		c.ReadsPerMinute = DefaultReadsPerMinute
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Faults are failures the sandbox injects into /v5 API calls (the ad
// account, customer list and audience operations; Latency and Outage also
// hit /v5/oauth/token). Set them with Config.Faults, SetFaults or
// POST /sandbox/v1/faults; the JSON form uses the names in the tags and
// durations as Go duration strings ("250ms").
type Faults struct {
	// ErrorRate is the fraction of API calls answered with ErrorStatus,
	// drawn from a PRNG seeded by Config.Seed (deterministic for a given
	// sequence of calls).
	ErrorRate float64 `json:"error_rate"`
	// ErrorStatus is the status of injected errors; default 500.
	ErrorStatus int `json:"error_status,omitempty"`
	// ErrorAfterApply makes injected errors happen after the call took
	// effect (the response is lost), as when a gateway times out.
	ErrorAfterApply bool `json:"error_after_apply,omitempty"`
	// Latency is added to every /v5 request before it is handled.
	Latency time.Duration `json:"-"`
	// Outage answers every /v5 request with 503 for this long, counted
	// from when the faults are set.
	Outage time.Duration `json:"-"`
	// Throttle answers the next Throttle API calls with 429 code 8.
	Throttle int `json:"throttle,omitempty"`
	// ThrottleWithoutHeaders leaves the x-ratelimit-* headers off those
	// injected 429s.
	ThrottleWithoutHeaders bool `json:"throttle_without_headers,omitempty"`
	// RefuseRecords are hashed records (64 hex digits) that Pinterest
	// refuses: a list creation or update carrying any of them answers 400
	// code 1 and changes nothing, as a request Pinterest judges invalid.
	RefuseRecords []string `json:"refuse_records,omitempty"`
	// RefuseNames refuse names: creating a customer list or an audience,
	// or renaming an audience, with a name that contains one of them
	// answers 400 code 1 and changes nothing, as Pinterest does for a name
	// it judges invalid (whatever the records).
	RefuseNames []string `json:"refuse_names,omitempty"`
}

// Validate reports an invalid fault setting.
func (f Faults) Validate() error {
	var errs []error
	if math.IsNaN(f.ErrorRate) || f.ErrorRate < 0 || f.ErrorRate > 1 {
		errs = append(errs, fmt.Errorf("sandbox: Faults.ErrorRate %v: want [0,1]", f.ErrorRate))
	}
	if f.ErrorStatus != 0 && (f.ErrorStatus < 500 || f.ErrorStatus > 599) {
		errs = append(errs, fmt.Errorf("sandbox: Faults.ErrorStatus %d: want 5xx", f.ErrorStatus))
	}
	for _, r := range f.RefuseRecords {
		if _, err := hex.DecodeString(r); err != nil || len(r) != 64 {
			errs = append(errs, fmt.Errorf("sandbox: Faults.RefuseRecords %q: want 64 hex digits", r))
		}
	}
	if slices.Contains(f.RefuseNames, "") {
		errs = append(errs, errors.New("sandbox: Faults.RefuseNames: an empty name would refuse every name"))
	}
	if f.Latency < 0 || f.Outage < 0 || f.Throttle < 0 {
		errs = append(errs, errors.New("sandbox: Faults.Latency, Outage and Throttle must not be negative"))
	}
	return errors.Join(errs...)
}

type faultsJSON struct {
	ErrorRate              float64  `json:"error_rate"`
	ErrorStatus            int      `json:"error_status,omitempty"`
	ErrorAfterApply        bool     `json:"error_after_apply,omitempty"`
	Latency                string   `json:"latency,omitempty"`
	Outage                 string   `json:"outage,omitempty"`
	Throttle               int      `json:"throttle,omitempty"`
	ThrottleWithoutHeaders bool     `json:"throttle_without_headers,omitempty"`
	RefuseRecords          []string `json:"refuse_records,omitempty"`
	RefuseNames            []string `json:"refuse_names,omitempty"`
}

// MarshalJSON writes durations as Go duration strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	j := faultsJSON{ErrorRate: f.ErrorRate, ErrorStatus: f.ErrorStatus, ErrorAfterApply: f.ErrorAfterApply,
		Throttle: f.Throttle, ThrottleWithoutHeaders: f.ThrottleWithoutHeaders,
		RefuseRecords: f.RefuseRecords, RefuseNames: f.RefuseNames}
	if f.Latency != 0 {
		j.Latency = f.Latency.String()
	}
	if f.Outage != 0 {
		j.Outage = f.Outage.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the form MarshalJSON writes; unknown fields are errors.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	if err := decodeStrict(b, &j); err != nil {
		return err
	}
	out := Faults{ErrorRate: j.ErrorRate, ErrorStatus: j.ErrorStatus, ErrorAfterApply: j.ErrorAfterApply,
		Throttle: j.Throttle, ThrottleWithoutHeaders: j.ThrottleWithoutHeaders,
		RefuseRecords: j.RefuseRecords, RefuseNames: j.RefuseNames}
	var err error
	if j.Latency != "" {
		if out.Latency, err = time.ParseDuration(j.Latency); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if j.Outage != "" {
		if out.Outage, err = time.ParseDuration(j.Outage); err != nil {
			return fmt.Errorf("outage: %w", err)
		}
	}
	*f = out
	return nil
}

func isNumericID(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
