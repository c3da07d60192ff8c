package schemas

import (
	"bytes"
	"unicode/utf8"

	"github.com/pinsync/pinsync/schemas/ident"
)

// This file turns a scanned record into an Event, by family: native (the
// record has a top-level "profile") or Segment (any other object).

// want checks that sp, when present and not null, has kind k.
func want(sp span, k valueKind, field string) error {
	if sp.kind == kindAbsent || sp.kind == kindNull || sp.kind == k {
		return nil
	}
	return &DecodeError{Reason: ReasonInvalidField, Field: field}
}

// required checks that sp is present, not null, and of kind k.
func required(sp span, k valueKind, field string) error {
	if sp.kind == kindAbsent || sp.kind == kindNull {
		return &DecodeError{Reason: ReasonMissingField, Field: field}
	}
	return want(sp, k, field)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *Decoder) native(key, data []byte, r *record, ev *Event) error {
	if err := required(r.typ, kindString, "type"); err != nil {
		return err
	}
	var kind Kind
	switch {
	case strEq(data, r.typ, "identify"):
		kind = KindIdentify
	case strEq(data, r.typ, "membership"):
		kind = KindMembership
	case strEq(data, r.typ, "forget"):
		kind = KindForget
	default:
		return &DecodeError{Reason: ReasonUnsupportedType, Field: "type"}
	}
	switch {
	case r.profile.kind == kindNull || (r.profile.kind == kindString && r.profile.start == r.profile.end):
		return &DecodeError{Reason: ReasonMissingProfile, Field: "profile"}
	case r.profile.kind != kindString:
		return &DecodeError{Reason: ReasonInvalidField, Field: "profile"}
	}
	var buf [256]byte
	profile := str(data, r.profile, buf[:])
	if len(key) > 0 && string(key) != string(profile) {
		return &DecodeError{Reason: ReasonKeyMismatch, Field: "profile"}
	}
	if len(key) == 0 {
		ev.Key = KeyMissing
	}
	ev.Kind = kind
	switch kind {
	case KindIdentify:
		if err := required(r.identifiers, kindObject, "identifiers"); err != nil {
			return err
		}
		ev.Replace = true
	case KindMembership:
		if r.audience.kind == kindAbsent || r.audience.kind == kindNull ||
			(r.audience.kind == kindString && r.audience.start == r.audience.end) {
			return &DecodeError{Reason: ReasonMissingAudience, Field: "audience"}
		}
		if r.member.kind != kindFalse {
			if err := required(r.member, kindTrue, "member"); err != nil {
				return err
			}
		}
		err := firstErr(
			want(r.audience, kindString, "audience"),
			want(r.identifiers, kindObject, "identifiers"),
			want(r.audienceName, kindString, "audience_name"),
			want(r.adAccount, kindString, "ad_account_id"),
			audienceLen(data, r.audience, "audience"),
			audienceLen(data, r.audienceName, "audience_name"),
			d.adAccountID(data, r.adAccount, "ad_account_id"),
		)
		if err != nil {
			return err
		}
		ev.Member = r.member.kind == kindTrue
		d.setAudience(data, ev, r.audience, r.audienceName, r.adAccount)
	}
	setString(&ev.Profile, profile)
	ev.Timestamp = timestamp(data, r.timestamp)
	if kind != KindForget {
		var seen hashed
		ids := &r.nativeIDs
		collect(data, ids.email, ident.Email, false, ev, &seen)
		collect(data, ids.idfa, ident.IDFA, false, ev, &seen)
		collect(data, ids.maid, ident.MAID, false, ev, &seen)
	}
	return nil
}

func (d *Decoder) setAudience(data []byte, ev *Event, audience, name, adAccount span) {
	var buf [256]byte
	ev.Audience = d.interned.get(str(data, audience, buf[:]))
	if nonEmptyString(name) {
		ev.AudienceName = d.interned.get(str(data, name, buf[:]))
	}
	if nonEmptyString(adAccount) {
		ev.AdAccount = d.interned.get(str(data, adAccount, buf[:]))
	}
}

// MaxAudienceChars bounds an audience key and its display name, in
// characters: they name a Pinterest list and its audience (Pinterest
// publishes no limit; this is pinsync's).
const MaxAudienceChars = 150

// audienceLen refuses a string member that names an audience, longer than
// MaxAudienceChars.
func audienceLen(data []byte, sp span, field string) error {
	if sp.kind != kindString || sp.end-sp.start <= MaxAudienceChars {
		return nil // escapes only make the raw form longer
	}
	var buf [4 * MaxAudienceChars]byte
	if s := str(data, sp, buf[:]); utf8.RuneCount(s) > MaxAudienceChars {
		return &DecodeError{Reason: ReasonAudienceTooLong, Field: field}
	}
	return nil
}

// adAccountID refuses, where the record's ad-account override decides
// (DecoderConfig.AdAccountOverrides), a non-empty override that is not a
// Pinterest ad account id: 1 to 18 digits.
func (d *Decoder) adAccountID(data []byte, sp span, field string) error {
	if !d.adAccountOverrides || !nonEmptyString(sp) {
		return nil
	}
	var buf [64]byte
	s := str(data, sp, buf[:])
	ok := len(s) <= 18
	for _, c := range s {
		ok = ok && '0' <= c && c <= '9'
	}
	if !ok {
		return &DecodeError{Reason: ReasonInvalidAdAccount, Field: field}
	}
	return nil
}

// segmentTypes checks the JSON type of every Segment member pinsync reads
// whose type matters.
func segmentTypes(r *record) error {
	c := &r.ctx
	return firstErr(
		want(r.userID, kindString, "userId"),
		want(r.anonymousID, kindString, "anonymousId"),
		want(r.traits, kindObject, "traits"),
		want(r.properties, kindObject, "properties"),
		want(r.context, kindObject, "context"),
		want(c.traits, kindObject, "context.traits"),
		want(c.device, kindObject, "context.device"),
		boolType(c.adTracking, "context.device.adTrackingEnabled"),
		want(c.personas, kindObject, "context.personas"),
		want(c.settings, kindObject, "context.personas.audience_settings"),
		want(c.settingsName, kindString, "context.personas.audience_settings.name"),
		want(c.settingsAdAccount, kindString, "context.personas.audience_settings.ad_account_id"),
		want(c.consent, kindObject, "context.consent"),
		want(c.prefs, kindObject, "context.consent.categoryPreferences"),
	)
}

func boolType(sp span, field string) error {
	if sp.kind == kindFalse {
		return nil
	}
	return want(sp, kindTrue, field)
}

func (d *Decoder) segment(key, data []byte, r *record, ev *Event) error {
	if err := required(r.typ, kindString, "type"); err != nil {
		return err
	}
	track := strEq(data, r.typ, "track")
	if !track && !strEq(data, r.typ, "identify") {
		return &DecodeError{Reason: ReasonUnsupportedType, Field: "type"}
	}
	if err := segmentTypes(r); err != nil {
		return err
	}
	c := &r.ctx
	if err := firstErr(
		audienceLen(data, r.propertiesIDs.audienceKey, "properties.audience_key"),
		audienceLen(data, r.traitsIDs.audienceKey, "traits.audience_key"),
		audienceLen(data, c.traitsIDs.audienceKey, "context.traits.audience_key"),
		audienceLen(data, c.computationKey, "context.personas.computation_key"),
		audienceLen(data, c.settingsName, "context.personas.audience_settings.name"),
		d.adAccountID(data, c.settingsAdAccount, "context.personas.audience_settings.ad_account_id"),
	); err != nil {
		return err
	}
	var entered bool
	if track {
		if err := required(r.event, kindString, "event"); err != nil {
			return err
		}
		var buf [64]byte
		switch name := str(data, r.event, buf[:]); string(name) {
		case string(d.entered):
			entered = true
		case string(d.exited):
		default:
			return &DecodeError{Reason: ReasonUnsupportedEvent, Field: "event"}
		}
	}
	var buf [256]byte
	switch {
	case len(key) > 0:
		setString(&ev.Profile, key)
		// The payload's own profile id, when it names one, must be the key.
		switch {
		case nonEmptyString(r.userID):
			if !bytes.Equal(str(data, r.userID, buf[:]), key) {
				ev.Key = KeyNotProfile
			}
		case nonEmptyString(r.anonymousID):
			if !bytes.Equal(str(data, r.anonymousID, buf[:]), key) {
				ev.Key = KeyNotProfile
			}
		}
	case nonEmptyString(r.userID):
		setString(&ev.Profile, str(data, r.userID, buf[:]))
	case nonEmptyString(r.anonymousID):
		setString(&ev.Profile, str(data, r.anonymousID, buf[:]))
	default:
		return &DecodeError{Reason: ReasonMissingProfile, Field: "userId"}
	}
	if len(key) == 0 {
		ev.Key = KeyMissing
	}

	if track {
		audience := r.propertiesIDs.audienceKey
		if !nonEmptyString(audience) {
			audience = r.traitsIDs.audienceKey
		}
		if !nonEmptyString(audience) {
			audience = c.computationKey
		}
		if !nonEmptyString(audience) {
			return &DecodeError{Reason: ReasonMissingAudience, Field: "properties.audience_key"}
		}
		ev.Kind = KindMembership
		ev.Member = entered
		var kb [256]byte
		if m, ok := boolish(data, lookup(data, r.properties, str(data, audience, kb[:]))); ok {
			ev.Member = m
		}
		d.setAudience(data, ev, audience, c.settingsName, c.settingsAdAccount)
	} else {
		ev.Kind = KindIdentify
		if (strEq(data, c.class, "audience") || strEq(data, c.class, "journey_step")) && nonEmptyString(c.computationKey) {
			var kb [256]byte
			if m, ok := boolish(data, lookup(data, r.traits, str(data, c.computationKey, kb[:]))); ok {
				ev.Kind = KindMembership
				ev.Member = m
				d.setAudience(data, ev, c.computationKey, c.settingsName, c.settingsAdAccount)
			}
		}
	}
	ev.Timestamp = timestamp(data, r.timestamp)
	if len(d.consent) > 0 {
		if m, ok := boolish(data, c.consentValue); ok && !m {
			ev.NoConsent = true
		}
	}

	var seen hashed
	for _, ids := range [...]*idSources{&r.traitsIDs, &c.traitsIDs, &r.propertiesIDs} {
		collect(data, ids.email, ident.Email, false, ev, &seen)
		collect(data, ids.idfa, ident.IDFA, false, ev, &seen)
		collect(data, ids.maid, ident.MAID, false, ev, &seen)
	}
	if c.advertisingID.present() {
		var t ident.Type
		var tb [16]byte
		switch dt := str(data, c.deviceType, tb[:]); {
		case c.deviceType.kind != kindString:
		case asciiEqualFold(dt, "ios"):
			t = ident.IDFA
		case asciiEqualFold(dt, "android"):
			t = ident.MAID
		}
		if t == 0 {
			reject(ev, ident.ReasonBadType)
		} else {
			collect(data, c.advertisingID, t, c.adTracking.kind == kindFalse, ev, &seen)
		}
	}
	// A device id whose tracking was turned off leaves the profile even if
	// another member of the record carries it.
	if len(ev.Drop) > 0 {
		kept := ev.Identifiers[:0]
		for _, id := range ev.Identifiers {
			if !contains(ev.Drop, id) {
				kept = append(kept, id)
			}
		}
		ev.Identifiers = kept
	}
	return nil
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func contains(ids []Identifier, id Identifier) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func reject(ev *Event, reason ident.Reason) {
	ev.Rejected++
	ev.RejectReasons = append(ev.RejectReasons, reason)
}

// collect adds the identifiers of type t held by sp (a string, or an array
// of strings) to ev.Identifiers, or to ev.Drop when drop is set. Invalid
// values are counted in ev.Rejected; null is nothing; the all-zero device
// id identifies nobody and is skipped without being counted.
func collect(data []byte, sp span, t ident.Type, drop bool, ev *Event, seen *hashed) {
	switch sp.kind {
	case kindAbsent, kindNull:
	case kindString:
		add(data, sp, t, drop, ev, seen)
	case kindArray:
		s := scanner{data: data[:sp.end], pos: sp.start}
		s.beginArray()
		first := true
		for s.element(&first) {
			switch v := s.value(); v.kind {
			case kindString:
				add(data, v, t, drop, ev, seen)
			case kindNull:
			default:
				reject(ev, ident.ReasonNotString)
			}
		}
	default:
		reject(ev, ident.ReasonNotString)
	}
}

// hashed remembers the last values hashed for one record: Engage often
// repeats a value (the device id in properties.android_idfa, the email in
// context.traits and properties), and hashing is most of the decoding cost.
type hashed struct {
	n     int
	items [8]struct {
		t      ident.Type
		raw    []byte
		h      ident.Hash
		reason ident.Reason
	}
}

func (c *hashed) parse(t ident.Type, data []byte, sp span) (ident.Hash, ident.Reason) {
	raw := data[sp.start:sp.end]
	for i := range min(c.n, len(c.items)) {
		if it := &c.items[i]; it.t == t && string(it.raw) == string(raw) {
			return it.h, it.reason
		}
	}
	var buf [512]byte
	h, reason := ident.Parse(t, str(data, sp, buf[:]))
	it := &c.items[c.n%len(c.items)]
	it.t, it.raw, it.h, it.reason = t, raw, h, reason
	c.n++
	return h, reason
}

func add(data []byte, sp span, t ident.Type, drop bool, ev *Event, seen *hashed) {
	h, reason := seen.parse(t, data, sp)
	switch reason {
	case "":
	case ident.ReasonZeroDevice:
		return
	default:
		reject(ev, reason)
		return
	}
	id := Identifier{Type: t, Hash: h}
	list := &ev.Identifiers
	if drop {
		list = &ev.Drop
	}
	if !contains(*list, id) {
		*list = append(*list, id)
	}
}
