package profiles

import "testing"

// TestAudienceFilterMatchesAcrossSlashes: audience keys are not paths, so
// '*' in an allow or deny glob selects keys with '/' in them.
func TestAudienceFilterMatchesAcrossSlashes(t *testing.T) {
	as, err := newAudiences([]string{"engage/*"}, []string{"*/test_*"}, "1", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"engage/space/recent_buyers": true,
		"engage/buyers":              true,
		"engage/space/test_buyers":   false, // denied
		"other/space/buyers":         false, // not allowed
	} {
		if got := as.intern(key, "", "").selected; got != want {
			t.Errorf("audience %q selected: %v, want %v", key, got, want)
		}
	}
	if _, err := newAudiences([]string{"engage/["}, nil, "1", nil, false); err == nil {
		t.Error("an unclosed character class was accepted")
	}
}

// TestAudienceRecordRoundTripsAndDecides: the changelog's record of an
// audience decodes to what was written; restored, it decides a
// provisional audience's ad account (as its event did) but not one an
// event of this process has decided.
func TestAudienceRecordRoundTripsAndDecides(t *testing.T) {
	name, override, err := parseAudienceValue(audienceValue("VIP buyers", "549755885176"))
	if err != nil || name != "VIP buyers" || override != "549755885176" {
		t.Fatalf("round trip: %q %q %v", name, override, err)
	}
	for _, bad := range [][]byte{nil, {9}, {audienceVersion, 5, 'a'}} {
		if _, _, err := parseAudienceValue(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
	as, err := newAudiences(nil, nil, "1", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	restored := as.internRestored("vip")
	if _, _, _, ok := as.meta(restored.id); ok {
		t.Error("a provisional audience has a record to write")
	}
	as.restoreMeta("vip", "VIP buyers", "2")
	if h := as.header(restored.id); h.AdAccount != "2" || h.Name != "VIP buyers" {
		t.Errorf("restored audience: %+v, want account 2 and its name", h)
	}
	decided := as.intern("churn", "", "3")
	as.restoreMeta("churn", "", "4")
	if h := as.header(decided.id); h.AdAccount != "3" {
		t.Errorf("an audience an event decided moved to account %s", h.AdAccount)
	}
}
