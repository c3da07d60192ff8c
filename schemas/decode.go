package schemas

import (
	"errors"
	"sync"
	"sync/atomic"
)

// The reasons a record is rejected. They form a closed set: the consumer
// uses them as the dead-letter header and as a metric label. None of them,
// nor DecodeError.Field, ever holds a value from the record.
const (
	// ReasonEmptyRecord: the record value is empty (for example a tombstone).
	ReasonEmptyRecord = "empty_record"
	// ReasonInvalidJSON: the value is not one well-formed UTF-8 JSON text.
	ReasonInvalidJSON = "invalid_json"
	// ReasonTooDeep: objects and arrays nest deeper than 128 levels.
	ReasonTooDeep = "too_deep"
	// ReasonNotAnObject: the value is JSON but not an object.
	ReasonNotAnObject = "not_an_object"
	// ReasonMissingField: a required member (Field) is absent or null.
	ReasonMissingField = "missing_field"
	// ReasonInvalidField: a member pinsync reads (Field) has the wrong JSON type.
	ReasonInvalidField = "invalid_field"
	// ReasonUnsupportedType: "type" is not one pinsync handles (Segment
	// page, screen, group, alias...; native types other than identify,
	// membership, forget).
	ReasonUnsupportedType = "unsupported_type"
	// ReasonUnsupportedEvent: a Segment track whose event is neither the
	// configured entered nor exited event name.
	ReasonUnsupportedEvent = "unsupported_event"
	// ReasonMissingProfile: no profile id (no key, userId or anonymousId;
	// native: no "profile").
	ReasonMissingProfile = "missing_profile"
	// ReasonMissingAudience: a membership without an audience key.
	ReasonMissingAudience = "missing_audience"
	// ReasonKeyMismatch: a native record whose Kafka key is not its profile.
	ReasonKeyMismatch = "key_mismatch"
	// ReasonAudienceTooLong: an audience key or display name longer than
	// MaxAudienceBytes.
	ReasonAudienceTooLong = "audience_too_long"
	// ReasonInvalidAdAccount: an ad-account override that is not a
	// Pinterest ad account id (1 to 18 digits), where overrides decide
	// (DecoderConfig.AdAccountOverrides).
	ReasonInvalidAdAccount = "invalid_ad_account"

	// The reasons below come from the formats in front of the JSON
	// decoder (package schemas/format): a record wrapped in an envelope,
	// or encoded with a schema from a schema registry.

	// ReasonInvalidEnvelope: the wrapper around the event is malformed: a
	// Kafka Connect envelope without a payload, a CloudEvent that is not
	// CloudEvents 1.0 JSON, a registry record without its schema id.
	ReasonInvalidEnvelope = "invalid_envelope"
	// ReasonUnknownSchema: the schema registry answers that it has no
	// schema of the record's id.
	ReasonUnknownSchema = "unknown_schema"
	// ReasonSchemaMismatch: the record's schema is not of the topic's
	// format, or cannot be used (it does not compile, names no message at
	// the record's message index).
	ReasonSchemaMismatch = "schema_mismatch"
	// ReasonInvalidPayload: the bytes after the schema id do not decode
	// with the schema (truncated, trailing bytes, invalid UTF-8 in a
	// string).
	ReasonInvalidPayload = "invalid_payload"
)

// Reasons returns every reason a DecodeError may carry, for pre-declaring
// metric label values.
func Reasons() []string {
	return []string{
		ReasonEmptyRecord, ReasonInvalidJSON, ReasonTooDeep, ReasonNotAnObject,
		ReasonMissingField, ReasonInvalidField, ReasonUnsupportedType,
		ReasonUnsupportedEvent, ReasonMissingProfile, ReasonMissingAudience,
		ReasonKeyMismatch, ReasonAudienceTooLong, ReasonInvalidAdAccount,
		ReasonInvalidEnvelope, ReasonUnknownSchema, ReasonSchemaMismatch,
		ReasonInvalidPayload,
	}
}

// DecodeError says why a record was rejected. Reason is one of the Reason
// constants; Field, when set, is the JSON path of the member at fault (for
// example "context.device.adTrackingEnabled"). It never holds a value from
// the record, so it may be logged and put into dead-letter headers.
type DecodeError struct {
	Reason string
	Field  string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return "record rejected: " + e.Reason
	}
	return "record rejected: " + e.Reason + " (" + e.Field + ")"
}

// DecoderConfig configures a Decoder. The zero value is valid.
type DecoderConfig struct {
	// EnteredEvent and ExitedEvent are the Segment track event names of
	// audience entries and exits. Defaults "Audience Entered" and
	// "Audience Exited".
	EnteredEvent, ExitedEvent string
	// ConsentCategory, when set, is looked up in
	// context.consent.categoryPreferences; false there marks the event
	// NoConsent. Empty: consent is not checked.
	ConsentCategory string
	// AdAccountOverrides says that a record's ad-account override
	// (audience_settings.ad_account_id, native ad_account_id) decides its
	// audience's ad account: one that is not an ad account id is refused.
	AdAccountOverrides bool
}

// Default event names, as Segment Engage sends them unless renamed.
const (
	DefaultEnteredEvent = "Audience Entered"
	DefaultExitedEvent  = "Audience Exited"
)

func (c DecoderConfig) withDefaults() DecoderConfig {
	if c.EnteredEvent == "" {
		c.EnteredEvent = DefaultEnteredEvent
	}
	if c.ExitedEvent == "" {
		c.ExitedEvent = DefaultExitedEvent
	}
	return c
}

// Validate reports whether c is usable: the two event names (after
// defaults) must differ.
func (c DecoderConfig) Validate() error {
	d := c.withDefaults()
	if d.EnteredEvent == d.ExitedEvent {
		return errors.New("schemas: entered_event and exited_event must differ")
	}
	return nil
}

// Decoder turns Kafka records into Events. It is safe for concurrent use.
type Decoder struct {
	entered, exited, consent []byte
	adAccountOverrides       bool
	interned                 internTable
}

// NewDecoder returns a Decoder for cfg.
func NewDecoder(cfg DecoderConfig) (*Decoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Decoder{
		entered: []byte(cfg.EnteredEvent),
		exited:  []byte(cfg.ExitedEvent),
		consent: []byte(cfg.ConsentCategory),
		// The ad account of an override decides: it must be one.
		adAccountOverrides: cfg.AdAccountOverrides,
	}, nil
}

// idSources are the members of one object that may hold identifiers (and,
// for Segment, an audience key). For Segment objects idfa and maid are
// ios_idfa and android_idfa.
type idSources struct {
	email, idfa, maid, audienceKey span
}

// record is what the scan remembers of a record: where the members the
// decoder reads are. A member seen twice keeps its last value, as with
// encoding/json; a repeated object forgets what its earlier copy held.
type record struct {
	typ, timestamp span
	// Segment.
	userID, anonymousID, event span
	traits, properties         span
	traitsIDs, propertiesIDs   idSources
	context                    span
	ctx                        contextRecord
	// Native.
	profile, audience, audienceName, adAccount, member span
	identifiers                                        span
	nativeIDs                                          idSources
}

type contextRecord struct {
	traits, device, personas, consent span
	traitsIDs                         idSources
	deviceType, advertisingID         span
	adTracking                        span
	class, computationKey             span
	settings                          span
	settingsName, settingsAdAccount   span
	prefs                             span
	consentValue                      span
}

// Decode decodes one Kafka record (key may be nil) into ev, reusing ev's
// slices. On error the content of ev is unspecified and the error is a
// *DecodeError.
func (d *Decoder) Decode(key, value []byte, ev *Event) error {
	*ev = Event{
		Profile:       ev.Profile,
		Identifiers:   ev.Identifiers[:0],
		Drop:          ev.Drop[:0],
		RejectReasons: ev.RejectReasons[:0],
	}
	s := scanner{data: value}
	if err := s.object(); err != nil {
		return err
	}
	var r record
	d.scanTop(&s, &r)
	if err := s.end(); err != nil {
		return err
	}
	if r.profile.kind != kindAbsent {
		return d.native(key, value, &r, ev)
	}
	return d.segment(key, value, &r, ev)
}

// object checks that a record starts as a JSON object: it returns nil
// with s on the opening brace, or the reason the record is rejected.
func (s *scanner) object() error {
	if len(s.data) == 0 {
		return &DecodeError{Reason: ReasonEmptyRecord}
	}
	if s.peek() != '{' {
		if s.value().kind != kindAbsent && s.peek() == 0 && s.pos == len(s.data) {
			return &DecodeError{Reason: ReasonNotAnObject}
		}
		return &DecodeError{Reason: firstNonEmpty(s.err, ReasonInvalidJSON)}
	}
	return nil
}

// end returns the reason the scan of a record failed, trailing data
// included, or nil.
func (s *scanner) end() error {
	if s.err == "" && (s.peek() != 0 || s.pos != len(s.data)) {
		s.fail(ReasonInvalidJSON) // trailing data
	}
	if s.err != "" {
		return &DecodeError{Reason: s.err}
	}
	return nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// open starts the value at s.pos. When it is an object, open consumes its
// opening brace and returns true: the caller then loops over member and
// calls close. Any other value is scanned into *sp and open returns false.
// (Loops rather than callbacks: a member name passed to a func value would
// make the scanner escape to the heap.)
func (s *scanner) open(sp *span) bool {
	if s.peek() != '{' {
		*sp = s.value()
		return false
	}
	*sp = span{start: s.pos, kind: kindObject}
	return s.beginObject()
}

// close ends the span of an object open started, after its last member.
func (s *scanner) close(sp *span) {
	if s.err != "" {
		*sp = span{}
		return
	}
	sp.end = s.pos
}

func (d *Decoder) scanTop(s *scanner, r *record) {
	var top span
	if !s.open(&top) {
		return
	}
	for first := true; ; {
		name, ok := s.member(&first)
		if !ok {
			break
		}
		switch string(name) {
		case "type":
			r.typ = s.value()
		case "timestamp":
			r.timestamp = s.value()
		case "userId":
			r.userID = s.value()
		case "anonymousId":
			r.anonymousID = s.value()
		case "event":
			r.event = s.value()
		case "traits":
			r.traitsIDs = idSources{}
			r.traits = s.scanIDSources(&r.traitsIDs, false)
		case "properties":
			r.propertiesIDs = idSources{}
			r.properties = s.scanIDSources(&r.propertiesIDs, false)
		case "context":
			r.ctx = contextRecord{}
			r.context = d.scanContext(s, &r.ctx)
		case "profile":
			r.profile = s.value()
		case "audience":
			r.audience = s.value()
		case "audience_name":
			r.audienceName = s.value()
		case "ad_account_id":
			r.adAccount = s.value()
		case "member":
			r.member = s.value()
		case "identifiers":
			r.nativeIDs = idSources{}
			r.identifiers = s.scanIDSources(&r.nativeIDs, true)
		default:
			s.value()
		}
	}
	s.close(&top)
}

// scanIDSources scans an object that may hold identifiers.
func (s *scanner) scanIDSources(ids *idSources, native bool) (sp span) {
	if !s.open(&sp) {
		return sp
	}
	for first := true; ; {
		name, ok := s.member(&first)
		if !ok {
			break
		}
		switch {
		case string(name) == "email":
			ids.email = s.value()
		case native && string(name) == "idfa", !native && string(name) == "ios_idfa":
			ids.idfa = s.value()
		case native && string(name) == "maid", !native && string(name) == "android_idfa":
			ids.maid = s.value()
		case !native && string(name) == "audience_key":
			ids.audienceKey = s.value()
		default:
			s.value()
		}
	}
	s.close(&sp)
	return sp
}

func (d *Decoder) scanContext(s *scanner, c *contextRecord) (sp span) {
	if !s.open(&sp) {
		return sp
	}
	for first := true; ; {
		name, ok := s.member(&first)
		if !ok {
			break
		}
		switch string(name) {
		case "traits":
			c.traitsIDs = idSources{}
			c.traits = s.scanIDSources(&c.traitsIDs, false)
		case "device":
			c.device = s.scanDevice(c)
		case "personas":
			c.personas = s.scanPersonas(c)
		case "consent":
			c.consent = d.scanConsent(s, c)
		default:
			s.value()
		}
	}
	s.close(&sp)
	return sp
}

func (s *scanner) scanDevice(c *contextRecord) (sp span) {
	c.deviceType, c.advertisingID, c.adTracking = span{}, span{}, span{}
	if !s.open(&sp) {
		return sp
	}
	for first := true; ; {
		name, ok := s.member(&first)
		if !ok {
			break
		}
		switch string(name) {
		case "type":
			c.deviceType = s.value()
		case "advertisingId":
			c.advertisingID = s.value()
		case "adTrackingEnabled":
			c.adTracking = s.value()
		default:
			s.value()
		}
	}
	s.close(&sp)
	return sp
}

func (s *scanner) scanPersonas(c *contextRecord) (sp span) {
	c.class, c.computationKey, c.settings = span{}, span{}, span{}
	c.settingsName, c.settingsAdAccount = span{}, span{}
	if !s.open(&sp) {
		return sp
	}
	for first := true; ; {
		name, ok := s.member(&first)
		if !ok {
			break
		}
		switch string(name) {
		case "computation_class":
			c.class = s.value()
		case "computation_key":
			c.computationKey = s.value()
		case "audience_settings":
			c.settings = s.scanSettings(c)
		default:
			s.value()
		}
	}
	s.close(&sp)
	return sp
}

func (s *scanner) scanSettings(c *contextRecord) (sp span) {
	c.settingsName, c.settingsAdAccount = span{}, span{}
	if !s.open(&sp) {
		return sp
	}
	for first := true; ; {
		name, ok := s.member(&first)
		if !ok {
			break
		}
		switch string(name) {
		case "name":
			c.settingsName = s.value()
		case "ad_account_id":
			c.settingsAdAccount = s.value()
		default:
			s.value()
		}
	}
	s.close(&sp)
	return sp
}

func (d *Decoder) scanConsent(s *scanner, c *contextRecord) (sp span) {
	c.prefs, c.consentValue = span{}, span{}
	if !s.open(&sp) {
		return sp
	}
	for first := true; ; {
		name, ok := s.member(&first)
		if !ok {
			break
		}
		if string(name) == "categoryPreferences" {
			c.prefs = d.scanPreferences(s, c)
		} else {
			s.value()
		}
	}
	s.close(&sp)
	return sp
}

func (d *Decoder) scanPreferences(s *scanner, c *contextRecord) (sp span) {
	c.consentValue = span{}
	if !s.open(&sp) {
		return sp
	}
	for first := true; ; {
		if _, ok := s.member(&first); !ok {
			break
		}
		k := s.rawKey
		v := s.value()
		if len(d.consent) > 0 && keyIs(s.data, k, d.consent) {
			c.consentValue = v
		}
	}
	s.close(&sp)
	return sp
}

// internTable keeps the strings that repeat across records (audience keys,
// names, ad accounts) so that decoding them does not allocate. It is
// copy-on-write: readers never lock.
type internTable struct {
	m  atomic.Pointer[map[string]string]
	mu sync.Mutex
}

const (
	maxInterned    = 4096
	maxInternedLen = 256
)

func (t *internTable) get(b []byte) string {
	if m := t.m.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	s := string(b)
	if len(b) > maxInternedLen {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.m.Load()
	if old != nil && len(*old) >= maxInterned {
		return s
	}
	m := make(map[string]string, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[s] = s
	t.m.Store(&m)
	return s
}

func lenOf(m *map[string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// str returns the unescaped bytes of a string span, using buf when it has
// to unescape and buf is large enough.
func str(data []byte, sp span, buf []byte) []byte {
	raw := data[sp.start:sp.end]
	if !sp.esc {
		return raw
	}
	return appendUnescaped(buf[:0], raw)
}

// strEq reports whether sp is a string equal to lit.
func strEq(data []byte, sp span, lit string) bool {
	if sp.kind != kindString {
		return false
	}
	if !sp.esc {
		return string(data[sp.start:sp.end]) == lit
	}
	var buf [64]byte
	if sp.end-sp.start > 6*len(lit) {
		return false
	}
	return string(appendUnescaped(buf[:0], data[sp.start:sp.end])) == lit
}

// nonEmptyString reports whether sp is a string that is not "".
func nonEmptyString(sp span) bool { return sp.kind == kindString && sp.end > sp.start }

// boolish reads a membership flag: JSON true or false, or (as Journeys v1
// sends) the exact strings "true" and "false".
func boolish(data []byte, sp span) (member, ok bool) {
	switch sp.kind {
	case kindTrue:
		return true, true
	case kindFalse:
		return false, true
	case kindString:
		if strEq(data, sp, "true") {
			return true, true
		}
		if strEq(data, sp, "false") {
			return false, true
		}
	}
	return false, false
}

// lookup returns the value of the last member named name (unescaped) of
// the object obj, or an absent span. The scan has validated obj.
func lookup(data []byte, obj span, name []byte) span {
	if obj.kind != kindObject {
		return span{}
	}
	s := scanner{data: data[:obj.end], pos: obj.start + 1}
	var found span
	for s.err == "" {
		c := s.peek()
		if c == '}' {
			break
		}
		if c == ',' {
			s.pos++
			s.peek()
		}
		k, _ := s.str()
		s.peek()
		s.pos++ // ':'
		v := s.value()
		if keyIs(data, k, name) {
			found = v
		}
	}
	return found
}

// keyIs reports whether the member name k unescapes to name.
func keyIs(data []byte, k span, name []byte) bool {
	raw := data[k.start:k.end]
	if !k.esc {
		return string(raw) == string(name)
	}
	if len(raw) < len(name) {
		return false // unescaping never lengthens
	}
	var buf [256]byte
	return string(appendUnescaped(buf[:0], raw)) == string(name)
}

// setString sets *dst to b, keeping the current string when equal so that a
// reused Event does not allocate.
func setString(dst *string, b []byte) {
	if *dst != string(b) {
		*dst = string(b)
	}
}
