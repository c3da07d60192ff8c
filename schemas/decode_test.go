package schemas

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas/ident"
)

func mustDecoder(t testing.TB, cfg DecoderConfig) *Decoder {
	t.Helper()
	d, err := NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fixtureValue(t testing.TB, shape, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", shape, "valid", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func id(t testing.TB, typ ident.Type, v string) Identifier {
	t.Helper()
	h, err := ident.OfString(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return Identifier{Type: typ, Hash: h}
}

func decode(t *testing.T, d *Decoder, key, value string) Event {
	t.Helper()
	var ev Event
	var k []byte
	if key != "" {
		k = []byte(key)
	}
	if err := d.Decode(k, []byte(value), &ev); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return ev
}

func millis(s string) int64 {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return tm.UnixMilli()
}

func TestEngageIdentifyExampleIsAnEntry(t *testing.T) {
	var ev Event
	if err := mustDecoder(t, DecoderConfig{}).Decode(nil, fixtureValue(t, "segment-identify", "engage-example"), &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{
		Kind: KindMembership, Profile: "u123", Audience: "first_time_shopper", Member: true,
		Identifiers: []Identifier{id(t, ident.Email, "jane.doe@example.com"), id(t, ident.IDFA, "6d92078a-8246-4ba4-ae5b-76104861e7dc")},
		Timestamp:   millis("2026-03-01T12:00:00Z"),
	}
	if !sameEvent(&ev, &want) {
		t.Fatalf("got %+v\nwant %+v", ev, want)
	}
}

func TestEngageTrackExampleIsAnExitWithDeduplicatedIdentifiers(t *testing.T) {
	var ev Event
	if err := mustDecoder(t, DecoderConfig{}).Decode(nil, fixtureValue(t, "segment-track", "engage-example"), &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{
		Kind: KindMembership, Profile: "u456", Audience: "first_time_shopper", Member: false,
		// properties.android_idfa and the device id are the same MAID: once.
		Identifiers: []Identifier{id(t, ident.Email, "sam@example.com"), id(t, ident.MAID, "38400000-8cf0-11bd-b23e-10b96e40000d")},
		Timestamp:   millis("2026-03-01T12:05:00Z"),
	}
	if !sameEvent(&ev, &want) || len(ev.Identifiers) != 2 {
		t.Fatalf("got %+v\nwant %+v", ev, want)
	}
}

func TestProfileIsKeyThenUserIDThenAnonymousID(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	const msg = `{"type":"identify","userId":%s,"anonymousId":"anon"}`
	for _, c := range []struct{ key, userID, want string }{
		{"k1", `"u1"`, "k1"},
		{"", `"u1"`, "u1"},
		{"", `""`, "anon"},
		{"", `null`, "anon"},
	} {
		if ev := decode(t, d, c.key, fmt.Sprintf(msg, c.userID)); ev.Profile != c.want || ev.Kind != KindIdentify {
			t.Errorf("key %q userId %s: profile %q, want %q", c.key, c.userID, ev.Profile, c.want)
		}
	}
}

// TestKeyStateSaysWhetherTheKeyIsTheProfile: the key of a record is its
// payload's profile id (Segment userId, else anonymousId; native profile)
// or the payload names none; else it is missing or not the profile.
func TestKeyStateSaysWhetherTheKeyIsTheProfile(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	for _, c := range []struct {
		key, value string
		want       KeyState
	}{
		{"u1", `{"type":"identify","userId":"u1","anonymousId":"anon"}`, KeyIsProfile},
		{"anon", `{"type":"identify","anonymousId":"anon"}`, KeyIsProfile},
		{"anon", `{"type":"identify","userId":"","anonymousId":"anon"}`, KeyIsProfile},
		{"k1", `{"type":"identify","traits":{"email":"a@example.com"}}`, KeyIsProfile}, // the key alone names it
		{`u\u00e9`, `{"type":"identify","userId":"u\u00e9"}`, KeyNotProfile},           // the key is bytes, not JSON
		{"ué", `{"type":"identify","userId":"u\u00e9"}`, KeyIsProfile},
		{"anon", `{"type":"identify","userId":"u1","anonymousId":"anon"}`, KeyNotProfile},
		{"personas_2f8bXq", `{"type":"identify","messageId":"personas_2f8bXq","userId":"u1"}`, KeyNotProfile},
		{"", `{"type":"identify","userId":"u1"}`, KeyMissing},
		{"", `{"type":"identify","anonymousId":"anon"}`, KeyMissing},
		{"p1", `{"type":"forget","profile":"p1"}`, KeyIsProfile},
		{"", `{"type":"forget","profile":"p1"}`, KeyMissing},
	} {
		if ev := decode(t, d, c.key, c.value); ev.Key != c.want {
			t.Errorf("key %q, %s: %s, want %s", c.key, c.value, ev.Key, c.want)
		}
	}
}

func TestNativeIdentifyReplacesAndNativeKeyMustMatch(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	const msg = `{"type":"identify","profile":"p1","identifiers":{"email":["a@example.com"," A@Example.com ","bad"],"maid":"38400000-8cf0-11bd-b23e-10b96e40000d"}}`
	ev := decode(t, d, "p1", msg)
	want := Event{Kind: KindIdentify, Profile: "p1", Replace: true,
		Identifiers:   []Identifier{id(t, ident.Email, "a@example.com"), id(t, ident.MAID, "38400000-8cf0-11bd-b23e-10b96e40000d")},
		Rejected:      1,
		RejectReasons: []ident.Reason{ident.ReasonNotEmail}}
	if !sameEvent(&ev, &want) {
		t.Fatalf("got %+v\nwant %+v", ev, want)
	}
	var de *DecodeError
	if err := d.Decode([]byte("p2"), []byte(msg), &ev); !errors.As(err, &de) || de.Reason != ReasonKeyMismatch {
		t.Fatalf("key p2: %v, want %s", err, ReasonKeyMismatch)
	}
}

func TestNativeMembershipAndForget(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	ev := decode(t, d, "", `{"type":"membership","profile":"p1","audience":"vip","audience_name":"VIP","ad_account_id":"42","member":false,"timestamp":"2026-03-01T12:00:00.5+01:00"}`)
	want := Event{Kind: KindMembership, Profile: "p1", Audience: "vip", AudienceName: "VIP", AdAccount: "42", Timestamp: millis("2026-03-01T11:00:00.5Z")}
	if !sameEvent(&ev, &want) {
		t.Fatalf("got %+v\nwant %+v", ev, want)
	}
	ev = decode(t, d, "", `{"profile":"p1","type":"forget","audience":"ignored"}`)
	if ev.Kind != KindForget || ev.Profile != "p1" || ev.Audience != "" {
		t.Fatalf("forget: %+v", ev)
	}
}

func TestAdTrackingDisabledDropsTheDeviceID(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	maid := "38400000-8cf0-11bd-b23e-10b96e40000d"
	ev := decode(t, d, "", `{"type":"track","event":"Audience Entered","userId":"u1",
		"properties":{"audience_key":"vip","android_idfa":"`+maid+`"},
		"context":{"traits":{"email":"a@example.com"},"device":{"type":"android","advertisingId":"`+maid+`","adTrackingEnabled":false}}}`)
	if !slices.Equal(ev.Drop, []Identifier{id(t, ident.MAID, maid)}) {
		t.Fatalf("Drop = %v", ev.Drop)
	}
	if !slices.Equal(ev.Identifiers, []Identifier{id(t, ident.Email, "a@example.com")}) {
		t.Fatalf("Identifiers = %v: the device id must not be added", ev.Identifiers)
	}
}

func TestAllZeroIDFAIdentifiesNobody(t *testing.T) {
	ev := decode(t, mustDecoder(t, DecoderConfig{}), "", string(fixtureValue(t, "segment-identify", "all-zero-idfa")))
	if len(ev.Identifiers)+len(ev.Drop)+ev.Rejected != 0 {
		t.Fatalf("all-zero IDFA produced %+v", ev)
	}
}

func TestInvalidIdentifiersAreCountedNotRejected(t *testing.T) {
	ev := decode(t, mustDecoder(t, DecoderConfig{}), "", string(fixtureValue(t, "segment-identify", "invalid-identifier-values-are-counted")))
	want := []ident.Reason{ident.ReasonNotEmail, ident.ReasonNotString, ident.ReasonNotString}
	if ev.Rejected != 3 || !slices.Equal(ev.RejectReasons, want) || len(ev.Identifiers) != 0 {
		t.Fatalf("got %+v, want reasons %v", ev, want)
	}
}

func TestConsentWithheldOnlyWhenConfigured(t *testing.T) {
	value := string(fixtureValue(t, "segment-identify", "consent-withheld"))
	for _, c := range []struct {
		category string
		want     bool
	}{{"", false}, {"Advertising", true}, {"Analytics", false}, {"Marketing", false}} {
		if ev := decode(t, mustDecoder(t, DecoderConfig{ConsentCategory: c.category}), "", value); ev.NoConsent != c.want {
			t.Errorf("category %q: NoConsent %v, want %v", c.category, ev.NoConsent, c.want)
		}
	}
}

func TestRenamedTrackEvents(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{EnteredEvent: "Joined", ExitedEvent: "Left"})
	if ev := decode(t, d, "", `{"type":"track","event":"Joined","userId":"u","properties":{"audience_key":"vip"}}`); !ev.Member {
		t.Fatal("Joined is not an entry")
	}
	var ev Event
	var de *DecodeError
	err := d.Decode(nil, []byte(`{"type":"track","event":"Audience Entered","userId":"u","properties":{"audience_key":"vip"}}`), &ev)
	if !errors.As(err, &de) || de.Reason != ReasonUnsupportedEvent {
		t.Fatalf("default name with renamed events: %v", err)
	}
	if _, err := NewDecoder(DecoderConfig{EnteredEvent: "X", ExitedEvent: "X"}); err == nil {
		t.Fatal("equal event names accepted")
	}
}

func TestJourneysStringTrueIsAMembership(t *testing.T) {
	ev := decode(t, mustDecoder(t, DecoderConfig{}), "", string(fixtureValue(t, "segment-identify", "journeys-v1-string-true")))
	if ev.Kind != KindMembership || !ev.Member || ev.Audience != "jrn_step_1" {
		t.Fatalf("got %+v", ev)
	}
}

func TestAudienceSettings(t *testing.T) {
	ev := decode(t, mustDecoder(t, DecoderConfig{}), "", string(fixtureValue(t, "segment-identify", "audience-settings")))
	if ev.AudienceName != "VIP customers" || ev.AdAccount != "549755885175" || ev.Audience != "vip" {
		t.Fatalf("got %+v", ev)
	}
}

func TestDuplicateMembersLastWins(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	ev := decode(t, d, "", `{"type":"identify","userId":"u1","traits":{"email":"a@example.com","vip":true},"traits":{"vip":false},
		"context":{"personas":{"computation_class":"audience","computation_key":"vip"}},"userId":"u2"}`)
	if ev.Profile != "u2" || ev.Member || ev.Kind != KindMembership || len(ev.Identifiers) != 0 {
		t.Fatalf("got %+v", ev)
	}
}

func TestEscapesAreDecoded(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	ev := decode(t, d, "", `{"type":"identify","\u0075serId":"u\u00e9\ud83d\ude00\ud800","traits":{"em\u0061il":"Jane\u002eDoe@Example.com"}}`)
	if ev.Profile != "ué😀\uFFFD" {
		t.Fatalf("profile %q", ev.Profile)
	}
	if !slices.Equal(ev.Identifiers, []Identifier{id(t, ident.Email, "jane.doe@example.com")}) {
		t.Fatalf("identifiers %v", ev.Identifiers)
	}
}

func TestRejections(t *testing.T) {
	deep := strings.Repeat(`[`, maxDepth) + strings.Repeat(`]`, maxDepth)
	for _, c := range []struct {
		name, value, reason, field string
	}{
		{"empty", ``, ReasonEmptyRecord, ""},
		{"white space", ` `, ReasonInvalidJSON, ""},
		{"array", `[{"type":"identify"}]`, ReasonNotAnObject, ""},
		{"string", `"x"`, ReasonNotAnObject, ""},
		{"truncated", `{"type":"identify","userId":"u`, ReasonInvalidJSON, ""},
		{"trailing data", `{"type":"identify","userId":"u"}x`, ReasonInvalidJSON, ""},
		{"bad escape", `{"type":"identify","userId":"\x"}`, ReasonInvalidJSON, ""},
		{"invalid UTF-8", "{\"type\":\"identify\",\"userId\":\"\xc3\x28\"}", ReasonInvalidJSON, ""},
		{"invalid UTF-8 in skipped member", "{\"type\":\"identify\",\"userId\":\"u\",\"x\":[\"\xed\xa0\x80\"]}", ReasonInvalidJSON, ""},
		{"control character", "{\"type\":\"identify\",\"userId\":\"a\tb\"}", ReasonInvalidJSON, ""},
		{"leading zero", `{"type":"identify","userId":"u","n":01}`, ReasonInvalidJSON, ""},
		{"too deep", `{"type":"identify","userId":"u","x":` + deep + `}`, ReasonTooDeep, ""},
		{"no type", `{"userId":"u"}`, ReasonMissingField, "type"},
		{"type number", `{"type":1,"userId":"u"}`, ReasonInvalidField, "type"},
		{"page", `{"type":"page","userId":"u"}`, ReasonUnsupportedType, "type"},
		{"other track", `{"type":"track","event":"Order Completed","userId":"u"}`, ReasonUnsupportedEvent, "event"},
		{"no event", `{"type":"track","userId":"u"}`, ReasonMissingField, "event"},
		{"no profile", `{"type":"identify","traits":{}}`, ReasonMissingProfile, "userId"},
		{"no audience", `{"type":"track","event":"Audience Entered","userId":"u"}`, ReasonMissingAudience, "properties.audience_key"},
		{"ad tracking string", `{"type":"identify","userId":"u","context":{"device":{"adTrackingEnabled":"no"}}}`, ReasonInvalidField, "context.device.adTrackingEnabled"},
		{"native no profile", `{"type":"forget","profile":""}`, ReasonMissingProfile, "profile"},
		{"native bad type", `{"type":"erase","profile":"p"}`, ReasonUnsupportedType, "type"},
		{"native no identifiers", `{"type":"identify","profile":"p"}`, ReasonMissingField, "identifiers"},
		{"native no audience", `{"type":"membership","profile":"p","member":true}`, ReasonMissingAudience, "audience"},
		{"native member string", `{"type":"membership","profile":"p","audience":"a","member":"true"}`, ReasonInvalidField, "member"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ev Event
			err := mustDecoder(t, DecoderConfig{}).Decode(nil, []byte(c.value), &ev)
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != c.reason || de.Field != c.field {
				t.Fatalf("got %v, want %s (%s)", err, c.reason, c.field)
			}
			if !slices.Contains(Reasons(), de.Reason) {
				t.Fatalf("reason %q is not in Reasons()", de.Reason)
			}
		})
	}
	ok := `{"type":"identify","userId":"u","x":` + deep[1:len(deep)-1] + `}`
	var ev Event
	if err := mustDecoder(t, DecoderConfig{}).Decode(nil, []byte(ok), &ev); err != nil {
		t.Fatalf("nesting of %d levels: %v", maxDepth, err)
	}
}

func TestErrorsNeverHoldValues(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	secret := "jane.secret@example.com"
	for _, v := range []string{
		`{"type":"` + secret + `","userId":"u"}`,
		`{"type":"track","event":"` + secret + `","userId":"u"}`,
		`{"profile":"` + secret + `","type":"membership","member":true}`,
		`{"profile":"` + secret + `","type":"forget"}`, // keyed: key_mismatch
		`{"type":"identify","userId":"` + secret + `","traits":"` + secret + `"}`,
	} {
		var ev Event
		err := d.Decode([]byte("k"), []byte(v), &ev)
		if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "k") && false {
			t.Fatalf("%s: %v", v, err)
		}
	}
}

func TestDecodeReusesTheEvent(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	var ev Event
	if err := d.Decode(nil, fixtureValue(t, "segment-track", "engage-example"), &ev); err != nil {
		t.Fatal(err)
	}
	backing := &ev.Identifiers[:1][0]
	if err := d.Decode(nil, []byte(`{"type":"forget","profile":"p"}`), &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Identifiers) != 0 || ev.Audience != "" || ev.Member || ev.Timestamp != 0 {
		t.Fatalf("stale fields: %+v", ev)
	}
	if err := d.Decode(nil, []byte(`{"type":"identify","profile":"p","identifiers":{"email":["a@example.com"]}}`), &ev); err != nil {
		t.Fatal(err)
	}
	if &ev.Identifiers[0] != backing {
		t.Fatal("Identifiers' backing array was not reused")
	}
}

func TestDecodeAllocatesOnlyTheProfile(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{ConsentCategory: "Advertising"})
	for _, fx := range [][]byte{
		fixtureValue(t, "segment-track", "engage-example"),
		fixtureValue(t, "segment-identify", "engage-example"),
		fixtureValue(t, "native-membership", "exit-with-identifiers"),
		fixtureValue(t, "native-identify", "basic"),
	} {
		var ev Event
		if err := d.Decode(nil, fx, &ev); err != nil {
			t.Fatal(err)
		}
		// Same profile: nothing at all. A new profile each time: its string.
		if n := testing.AllocsPerRun(50, func() { _ = d.Decode(nil, fx, &ev) }); n != 0 {
			t.Errorf("%.40s: %v allocations for a repeated record", fx, n)
		}
		if n := testing.AllocsPerRun(50, func() { ev.Profile = ""; _ = d.Decode(nil, fx, &ev) }); n > 1 {
			t.Errorf("%.40s: %v allocations for a new profile", fx, n)
		}
	}
}

func TestParseTimestampAgreesWithTime(t *testing.T) {
	for _, s := range []string{
		"2026-03-01T12:00:00Z", "2026-03-01T12:00:00.000Z", "2026-03-01T12:00:00.1Z", "2026-03-01T12:00:00.123456789Z",
		"1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z", "0000-01-01T00:00:00Z", "2000-02-29T23:59:59+05:30",
		"2024-12-31T00:00:00-08:00", "9999-12-31T23:59:59.99999Z",
	} {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := parseTimestamp([]byte(s)); !ok || got != tm.UnixMilli() {
			t.Errorf("%s: %d, %v; want %d", s, got, ok, tm.UnixMilli())
		}
	}
	if lower, ok := parseTimestamp([]byte("2026-03-01t12:00:00.5z")); !ok || lower != millis("2026-03-01T12:00:00.5Z") {
		t.Errorf("lower-case t and z (RFC 3339 allows them): %d, %v", lower, ok)
	}
	for _, s := range []string{"", "2026-03-01", "2026-02-30T00:00:00Z", "2026-03-01T24:00:00Z", "2026-03-01T12:00:00",
		"2026-03-01T12:00:00.Z", "2026-03-01T12:00:00+0100", "2026-03-01 12:00:00Z", "2026-13-01T12:00:00Z", "1700000000000"} {
		if _, ok := parseTimestamp([]byte(s)); ok {
			t.Errorf("%q parsed", s)
		}
	}
}

// TestDecoderIsSafeForConcurrentUse decodes from several goroutines at once
// (run with -race): the audience intern table is shared.
func TestDecoderIsSafeForConcurrentUse(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{})
	done := make(chan error)
	for g := range 4 {
		go func() {
			var ev Event
			for i := range 200 {
				v := fmt.Sprintf(`{"type":"membership","profile":"p%d","audience":"aud-%d","member":true}`, i, (g*200+i)%50)
				if err := d.Decode(nil, []byte(v), &ev); err != nil {
					done <- err
					return
				}
				if want := fmt.Sprintf("aud-%d", (g*200+i)%50); ev.Audience != want {
					done <- fmt.Errorf("audience %q, want %q", ev.Audience, want)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestNoListCanBeNamedAfterWhatIsRefusedWhereItIsDecoded: an audience key
// or display name over MaxAudienceChars characters, and, where the record's
// ad-account override decides, an override that is not an ad account id,
// are refused with their reason and field; the same records within bounds,
// or with overrides unused, are accepted.
func TestNoListCanBeNamedAfterWhatIsRefusedWhereItIsDecoded(t *testing.T) {
	long, limit := strings.Repeat("é", MaxAudienceChars+1), strings.Repeat("é", MaxAudienceChars)
	track := func(key, account string) string {
		return `{"type":"track","event":"Audience Entered","userId":"u","properties":{"audience_key":"` + key + `"},` +
			`"context":{"personas":{"audience_settings":{"ad_account_id":"` + account + `"}}}}`
	}
	native := `{"type":"membership","profile":"p","audience":"vip","audience_name":"` + long + `","member":true}`
	for _, c := range []struct {
		name      string
		overrides bool
		value     string
		reason    string
		field     string
	}{
		{"key at the limit", false, track(limit, "549755885175"), "", ""},
		{"key over the limit", false, track(long, "549755885175"), ReasonAudienceTooLong, "properties.audience_key"},
		{"native name over the limit", false, native, ReasonAudienceTooLong, "audience_name"},
		{"override not an account, unused", false, track("vip", "act-x1"), "", ""},
		{"override not an account", true, track("vip", "act-x1"), ReasonInvalidAdAccount, "context.personas.audience_settings.ad_account_id"},
		{"override of 19 digits", true, track("vip", "5497558851751234567"), ReasonInvalidAdAccount, "context.personas.audience_settings.ad_account_id"},
		{"override an unknown account", true, track("vip", "549755999999"), "", ""},
		{"native override not an account", true, `{"type":"membership","profile":"p","audience":"vip","ad_account_id":"x","member":true}`, ReasonInvalidAdAccount, "ad_account_id"},
	} {
		d := mustDecoder(t, DecoderConfig{AdAccountOverrides: c.overrides})
		var ev Event
		err := d.Decode(nil, []byte(c.value), &ev)
		var de *DecodeError
		switch {
		case c.reason == "" && err != nil:
			t.Errorf("%s: %v, want accepted", c.name, err)
		case c.reason != "" && (!errors.As(err, &de) || de.Reason != c.reason || de.Field != c.field):
			t.Errorf("%s: %v, want %s (%s)", c.name, err, c.reason, c.field)
		case de != nil && strings.Contains(de.Error(), "act-x1"):
			t.Errorf("%s: the error quotes the value: %v", c.name, err)
		}
	}
}
