package consumer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestSharedAudiencesAreNeverTouched: audiences another business account
// shares with pinsync's ad account, named as pinsync names its own (an
// audience listing holds them since API 5.24 unless it asks for owned
// ones), are neither read nor written: every list gets an audience of its
// own account, and no request names a shared one.
func TestSharedAudiencesAreNeverTouched(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 3, Events: 3000, Seed: 31, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	shared := map[string]bool{}
	for k := range want {
		id, ok := r.sb.ShareAudience(sandbox.DefaultAdAccountID, "549755000001", listName(k.Audience, k.Type))
		if !ok {
			t.Fatal("ShareAudience refused")
		}
		shared[id] = true
	}
	r.produce(recs)
	cfg := engineConfig()
	cfg.AudiencePollInterval = 100 * time.Millisecond
	m := r.start(cfg)
	r.converge(want, 30*time.Second)
	waitFor(t, 20*time.Second, "an audience of pinsync's own for every list", func() bool {
		owned := 0
		for _, a := range r.sb.State().Audiences {
			if a.AdAccountID == sandbox.DefaultAdAccountID && !shared[a.ID] {
				owned++
			}
		}
		return owned == len(want)
	})
	// The audience poll has run: it reads the audiences pinsync follows.
	waitFor(t, 10*time.Second, "an audience poll", func() bool {
		for _, rq := range r.sb.Requests() {
			if rq.Operation == "audiences/get" {
				return true
			}
		}
		return false
	})
	m.stop(t)
	for _, rq := range r.sb.Requests() {
		for id := range shared {
			if strings.Contains(rq.Path, id) {
				t.Errorf("%s %s names a shared audience", rq.Method, rq.Path)
			}
		}
	}
}
