package consumer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestRefusalsParkTheirAudienceAlone: three audiences Pinterest will not
// take, for reasons that are not their records. One names an ad account
// that does not exist (the sandbox answers 404), one an ad account that is
// no ad account id at all ("act-x1"), and Pinterest refuses the list names
// of a third (400, whatever the records). The first and the third are
// parked (not_found, refused) and reported; the second's records are
// dead-lettered as invalid_ad_account; no record is dead-lettered as
// refused by Pinterest; every other audience converges and every record is
// committed. Once Pinterest takes the name, the third audience converges
// too.
func TestRefusalsParkTheirAudienceAlone(t *testing.T) {
	const unknownAccount = "549755999999"
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 300, Audiences: 4, Events: 3000, Seed: 11, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	native := func(profile, value string) stream.Record {
		return stream.Record{Key: []byte(profile), Value: []byte(value)}
	}
	for _, p := range []string{"lost_1", "lost_2", "typo_1"} {
		recs = append(recs, native(p, `{"type":"identify","profile":"`+p+`","identifiers":{"email":["`+p+`@example.com"]}}`))
	}
	recs = append(recs,
		native("lost_1", `{"type":"membership","profile":"lost_1","audience":"lost","ad_account_id":"`+unknownAccount+`","member":true}`),
		native("lost_2", `{"type":"membership","profile":"lost_2","audience":"lost","ad_account_id":"`+unknownAccount+`","member":true}`),
		native("typo_1", `{"type":"membership","profile":"typo_1","audience":"typo","ad_account_id":"act-x1","member":true}`),
	)

	dec, err := schemas.NewDecoder(schemas.DecoderConfig{AdAccountOverrides: true})
	if err != nil {
		t.Fatal(err)
	}
	o, bad := stream.BuildOracle(recs, dec, 5)
	if bad != 1 {
		t.Fatalf("the oracle rejects %d records, want 1 (the invalid ad account)", bad)
	}
	all := o.Expected()
	refusedAud := ""
	for k := range all {
		if k.Audience != "lost" && (refusedAud == "" || k.Audience < refusedAud) {
			refusedAud = k.Audience
		}
	}
	want := map[stream.ListKey]stream.Set{}
	for k, s := range all {
		if len(s) > 0 && k.Audience != "lost" && k.Audience != refusedAud {
			want[k] = s
		}
	}
	if len(want) == 0 {
		t.Fatal("the stream leaves no audience to converge")
	}
	if err := r.sb.SetFaults(sandbox.Faults{RefuseNames: []string{"pinsync " + refusedAud + " "}}); err != nil {
		t.Fatal(err)
	}

	r.produce(recs)
	cfg := engineConfig()
	cfg.AllowAudienceSettings = true
	cfg.ParkedRetry = 300 * time.Millisecond
	m := r.start(cfg)
	r.converge(want, 30*time.Second)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(recs)) })
	waitFor(t, 10*time.Second, "both audiences parked", func() bool {
		return gaugeWith(t, m.reg, "pinsync_list_parked", "reason", "not_found") >= 1 &&
			gaugeWith(t, m.reg, "pinsync_list_parked", "reason", "refused") >= 1
	})
	for _, p := range m.eng.Status().Parked {
		if p != "lost/EMAIL (not_found)" && !(strings.HasPrefix(p, refusedAud+"/") && strings.HasSuffix(p, " (refused)")) {
			t.Errorf("status names %q parked; want lost/EMAIL (not_found) and lists of %s (refused)", p, refusedAud)
		}
	}
	for _, l := range r.sb.State().CustomerLists {
		if strings.Contains(l.Name, " lost ") || strings.Contains(l.Name, " typo ") {
			t.Errorf("list %q made", l.Name)
		}
	}

	dlq := readAll(t, r.brokers, cfg.Group+".dlq", 1, 10*time.Second)
	for _, d := range dlq {
		for _, h := range d.Headers {
			if h.Key == "pinsync.reason" && string(h.Value) != string(schemas.ReasonInvalidAdAccount) {
				t.Errorf("dead letter with reason %q, want only %s", h.Value, schemas.ReasonInvalidAdAccount)
			}
		}
	}
	if len(dlq) != 1 {
		t.Errorf("%d dead letters, want 1 (the invalid ad account)", len(dlq))
	}
	if n := counterValue(t, m.reg, "pinsync_dead_letters_total", "reason", "pinterest_rejected"); n != 0 {
		t.Errorf("%v records dead-lettered as refused by Pinterest", n)
	}

	// Pinterest takes the name now: the parked audience is made from the
	// profile state on its next attempt.
	if err := r.sb.SetFaults(sandbox.Faults{}); err != nil {
		t.Fatal(err)
	}
	for k, s := range all {
		if len(s) > 0 && k.Audience == refusedAud {
			want[k] = s
		}
	}
	r.converge(want, 30*time.Second)
	waitFor(t, 10*time.Second, "only the unknown account's list parked", func() bool {
		return gaugeWith(t, m.reg, "pinsync_list_parked", "reason", "refused") == 0
	})
}
