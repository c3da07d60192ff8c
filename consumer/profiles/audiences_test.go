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
