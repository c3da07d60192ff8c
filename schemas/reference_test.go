package schemas

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/pinsync/pinsync/schemas/ident"
)

// refDecode is a second, deliberately naive implementation of the contract
// in README.md, over encoding/json's map[string]any. The fuzz test checks
// that the scanner-based Decoder agrees with it on every input. It returns
// the event, or the reason it would reject.
func refDecode(cfg DecoderConfig, key, value []byte) (Event, string) {
	cfg = cfg.withDefaults()
	var ev Event
	if len(value) == 0 {
		return ev, ReasonEmptyRecord
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return ev, ReasonInvalidJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return ev, ReasonInvalidJSON
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return ev, ReasonNotAnObject
	}
	if _, ok := obj["profile"]; ok {
		return refNative(cfg, key, obj)
	}
	return refSegment(cfg, key, obj)
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

func nonEmpty(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok && s != ""
}

func isType(v any, kinds ...string) bool {
	if v == nil {
		return true
	}
	for _, k := range kinds {
		switch v.(type) {
		case string:
			if k == "string" {
				return true
			}
		case bool:
			if k == "boolean" {
				return true
			}
		case map[string]any:
			if k == "object" {
				return true
			}
		}
	}
	return false
}

func refBoolish(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		if v == "true" || v == "false" {
			return v == "true", true
		}
	}
	return false, false
}

func refNative(cfg DecoderConfig, key []byte, o map[string]any) (Event, string) {
	var ev Event
	typ, ok := o["type"].(string)
	switch {
	case o["type"] == nil:
		return ev, ReasonMissingField
	case !ok:
		return ev, ReasonInvalidField
	}
	switch typ {
	case "identify":
		ev.Kind = KindIdentify
	case "membership":
		ev.Kind = KindMembership
	case "forget":
		ev.Kind = KindForget
	default:
		return ev, ReasonUnsupportedType
	}
	profile, ok := o["profile"].(string)
	if o["profile"] == nil || (ok && profile == "") {
		return ev, ReasonMissingProfile
	}
	if !ok {
		return ev, ReasonInvalidField
	}
	if len(key) > 0 && string(key) != profile {
		return ev, ReasonKeyMismatch
	}
	ev.Profile = profile
	switch ev.Kind {
	case KindIdentify:
		if o["identifiers"] == nil {
			return ev, ReasonMissingField
		}
		if !isType(o["identifiers"], "object") {
			return ev, ReasonInvalidField
		}
		ev.Replace = true
	case KindMembership:
		if a, _ := o["audience"].(string); o["audience"] == nil || a == "" && isType(o["audience"], "string") {
			return ev, ReasonMissingAudience
		}
		if o["member"] == nil {
			return ev, ReasonMissingField
		}
		a, aok := o["audience"].(string)
		m, ok := o["member"].(bool)
		if !ok || !aok || !isType(o["identifiers"], "object") || !isType(o["audience_name"], "string") || !isType(o["ad_account_id"], "string") {
			return ev, ReasonInvalidField
		}
		if refTooLong(o["audience"]) || refTooLong(o["audience_name"]) {
			return ev, ReasonAudienceTooLong
		}
		if !refAdAccountOK(cfg, o["ad_account_id"]) {
			return ev, ReasonInvalidAdAccount
		}
		ev.Audience, ev.Member = a, m
		ev.AudienceName, _ = nonEmpty(o["audience_name"])
		ev.AdAccount, _ = nonEmpty(o["ad_account_id"])
	}
	ev.Timestamp = refTimestamp(o["timestamp"])
	if ev.Kind != KindForget {
		ids := obj(o["identifiers"])
		refCollect(&ev, ids["email"], ident.Email, false)
		refCollect(&ev, ids["idfa"], ident.IDFA, false)
		refCollect(&ev, ids["maid"], ident.MAID, false)
	}
	return ev, ""
}

func refSegment(cfg DecoderConfig, key []byte, o map[string]any) (Event, string) {
	var ev Event
	typ, ok := o["type"].(string)
	switch {
	case o["type"] == nil:
		return ev, ReasonMissingField
	case !ok:
		return ev, ReasonInvalidField
	case typ != "identify" && typ != "track":
		return ev, ReasonUnsupportedType
	}
	ctx := obj(o["context"])
	device, personas, consent := obj(ctx["device"]), obj(ctx["personas"]), obj(ctx["consent"])
	settings := obj(personas["audience_settings"])
	typesOK := isType(o["userId"], "string") && isType(o["anonymousId"], "string") &&
		isType(o["traits"], "object") && isType(o["properties"], "object") && isType(o["context"], "object") &&
		isType(ctx["traits"], "object") && isType(ctx["device"], "object") && isType(device["adTrackingEnabled"], "boolean") &&
		isType(ctx["personas"], "object") && isType(personas["audience_settings"], "object") &&
		isType(settings["name"], "string") && isType(settings["ad_account_id"], "string") &&
		isType(ctx["consent"], "object") && isType(consent["categoryPreferences"], "object")
	if !typesOK {
		return ev, ReasonInvalidField
	}
	if refTooLong(obj(o["properties"])["audience_key"]) || refTooLong(obj(o["traits"])["audience_key"]) ||
		refTooLong(obj(ctx["traits"])["audience_key"]) ||
		refTooLong(personas["computation_key"]) || refTooLong(settings["name"]) {
		return ev, ReasonAudienceTooLong
	}
	if !refAdAccountOK(cfg, settings["ad_account_id"]) {
		return ev, ReasonInvalidAdAccount
	}
	entered := false
	if typ == "track" {
		name, ok := o["event"].(string)
		switch {
		case o["event"] == nil:
			return ev, ReasonMissingField
		case !ok:
			return ev, ReasonInvalidField
		case name == cfg.EnteredEvent:
			entered = true
		case name == cfg.ExitedEvent:
		default:
			return ev, ReasonUnsupportedEvent
		}
	}
	if len(key) > 0 {
		ev.Profile = string(key)
	} else if s, ok := nonEmpty(o["userId"]); ok {
		ev.Profile = s
	} else if s, ok := nonEmpty(o["anonymousId"]); ok {
		ev.Profile = s
	} else {
		return ev, ReasonMissingProfile
	}
	traits, props := obj(o["traits"]), obj(o["properties"])
	name, _ := nonEmpty(settings["name"])
	adAccount, _ := nonEmpty(settings["ad_account_id"])
	if typ == "track" {
		a, ok := nonEmpty(props["audience_key"])
		if !ok {
			a, ok = nonEmpty(traits["audience_key"])
		}
		if !ok {
			a, ok = nonEmpty(personas["computation_key"])
		}
		if !ok {
			return ev, ReasonMissingAudience
		}
		ev.Kind, ev.Audience, ev.Member = KindMembership, a, entered
		if m, ok := refBoolish(props[a]); ok {
			ev.Member = m
		}
		ev.AudienceName, ev.AdAccount = name, adAccount
	} else {
		ev.Kind = KindIdentify
		class := personas["computation_class"]
		if k, ok := nonEmpty(personas["computation_key"]); ok && (class == "audience" || class == "journey_step") {
			if m, ok := refBoolish(traits[k]); ok {
				ev.Kind, ev.Audience, ev.Member = KindMembership, k, m
				ev.AudienceName, ev.AdAccount = name, adAccount
			}
		}
	}
	ev.Timestamp = refTimestamp(o["timestamp"])
	if cfg.ConsentCategory != "" {
		if m, ok := refBoolish(obj(consent["categoryPreferences"])[cfg.ConsentCategory]); ok && !m {
			ev.NoConsent = true
		}
	}
	for _, src := range []map[string]any{traits, obj(ctx["traits"]), props} {
		refCollect(&ev, src["email"], ident.Email, false)
		refCollect(&ev, src["ios_idfa"], ident.IDFA, false)
		refCollect(&ev, src["android_idfa"], ident.MAID, false)
	}
	if id := device["advertisingId"]; id != nil {
		dt, _ := device["type"].(string)
		switch strings.ToLower(dt) {
		case "ios":
			refCollect(&ev, id, ident.IDFA, device["adTrackingEnabled"] == false)
		case "android":
			refCollect(&ev, id, ident.MAID, device["adTrackingEnabled"] == false)
		default:
			ev.Rejected++
			ev.RejectReasons = append(ev.RejectReasons, ident.ReasonBadType)
		}
	}
	ev.Identifiers = slices.DeleteFunc(ev.Identifiers, func(id Identifier) bool { return slices.Contains(ev.Drop, id) })
	return ev, ""
}

func refTimestamp(v any) int64 {
	s, ok := v.(string)
	if !ok {
		return 0
	}
	ms, _ := parseTimestamp([]byte(s))
	return ms
}

func refCollect(ev *Event, v any, t ident.Type, drop bool) {
	var values []any
	switch v := v.(type) {
	case nil:
		return
	case []any:
		values = v
	default:
		values = []any{v}
	}
	for _, x := range values {
		s, ok := x.(string)
		if x == nil {
			continue
		}
		if !ok {
			ev.Rejected++
			ev.RejectReasons = append(ev.RejectReasons, ident.ReasonNotString)
			continue
		}
		h, err := ident.OfString(t, s)
		if err != nil {
			if err.(*ident.RejectError).Reason == ident.ReasonZeroDevice {
				continue
			}
			ev.Rejected++
			ev.RejectReasons = append(ev.RejectReasons, err.(*ident.RejectError).Reason)
			continue
		}
		list := &ev.Identifiers
		if drop {
			list = &ev.Drop
		}
		if id := (Identifier{t, h}); !slices.Contains(*list, id) {
			*list = append(*list, id)
		}
	}
}

// sameEvent compares two events, identifiers and reasons as sets.
func sameEvent(a, b *Event) bool {
	norm := func(e *Event) Event {
		c := *e
		c.Identifiers = sortedIDs(e.Identifiers)
		c.Drop = sortedIDs(e.Drop)
		c.RejectReasons = slices.Clone(e.RejectReasons)
		slices.Sort(c.RejectReasons)
		return c
	}
	x, y := norm(a), norm(b)
	return x.Kind == y.Kind && x.Profile == y.Profile && x.Audience == y.Audience &&
		x.AudienceName == y.AudienceName && x.AdAccount == y.AdAccount && x.Member == y.Member &&
		x.Replace == y.Replace && x.NoConsent == y.NoConsent && x.Timestamp == y.Timestamp &&
		x.Rejected == y.Rejected && slices.Equal(x.Identifiers, y.Identifiers) &&
		slices.Equal(x.Drop, y.Drop) && slices.Equal(x.RejectReasons, y.RejectReasons)
}

func sortedIDs(ids []Identifier) []Identifier {
	c := slices.Clone(ids)
	slices.SortFunc(c, func(a, b Identifier) int {
		if a.Type != b.Type {
			return int(a.Type) - int(b.Type)
		}
		return bytes.Compare(a.Hash[:], b.Hash[:])
	})
	if c == nil {
		c = []Identifier{}
	}
	return c
}

// jsonDepth returns the deepest nesting of objects and arrays in a valid
// JSON text.
func jsonDepth(value []byte) int {
	dec := json.NewDecoder(bytes.NewReader(value))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// refTooLong: a string naming an audience longer than 150 characters.
func refTooLong(v any) bool {
	s, ok := v.(string)
	return ok && utf8.RuneCountInString(s) > 150
}

// refAdAccountOK: where overrides decide, a non-empty override is 1 to 18
// digits.
func refAdAccountOK(cfg DecoderConfig, v any) bool {
	s, _ := v.(string)
	if !cfg.AdAccountOverrides || s == "" {
		return true
	}
	if len(s) > 18 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
