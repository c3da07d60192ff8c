package consumer_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestRestoreKeepsTheAudiencesAdAccount: with allow_audience_settings, an
// audience whose events chose another ad account keeps it across a
// restart. The new member restores the state and then sees only
// identifier changes of the audience's members (events that name no
// audience): their changes go to the list in the chosen account, and no
// list appears in the default one.
func TestRestoreKeepsTheAudiencesAdAccount(t *testing.T) {
	const other = "549755885176"
	r := newRig(t, 2, sandbox.Config{AdAccounts: []sandbox.AdAccount{
		{ID: sandbox.DefaultAdAccountID, Permissions: []string{"OWNER"}},
		{ID: other, Permissions: []string{"OWNER"}},
	}})
	cfg := engineConfig()
	cfg.AllowAudienceSettings = true
	record := func(profile string, msg map[string]any) stream.Record {
		b, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		return stream.Record{Key: []byte(profile), Value: b}
	}
	var entered, identified []stream.Record
	want := stream.Set{}
	for i := range 10 {
		p := fmt.Sprintf("vip-%d", i)
		entered = append(entered, record(p, map[string]any{
			"type": "track", "event": "Audience Entered", "userId": p,
			"properties": map[string]any{"audience_key": "vip"},
			"context": map[string]any{"traits": map[string]any{"email": p + "@example.com"},
				"personas": map[string]any{"audience_settings": map[string]any{"ad_account_id": other}}},
		}))
		identified = append(identified, record(p, map[string]any{
			"type": "identify", "userId": p, "context": map[string]any{"device": map[string]any{
				"type": "ios", "advertisingId": fmt.Sprintf("6d92078a-8246-4ba4-ae5b-7610486100%02d", i), "adTrackingEnabled": true}},
		}))
		h, err := ident.OfString(ident.IDFA, fmt.Sprintf("6d92078a-8246-4ba4-ae5b-7610486100%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		want[h] = struct{}{}
	}
	r.produce(entered)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the entries committed", func() bool { return r.committed(cfg.Group) == int64(len(entered)) })
	m.stop(t)
	r.produce(identified)
	m = r.start(cfg)
	waitFor(t, 30*time.Second, "the identifies committed", func() bool {
		return r.committed(cfg.Group) == int64(len(entered)+len(identified))
	})
	m.stop(t)

	var idfa *sandbox.ListState
	for _, l := range r.sb.State().CustomerLists {
		if l.AdAccountID != other {
			t.Errorf("list %q created in ad account %s; the audience's events chose %s", l.Name, l.AdAccountID, other)
		}
		if l.Name == "pinsync vip IDFA" {
			idfa = &l
		}
	}
	if idfa == nil {
		t.Fatal("no IDFA list for the audience")
	}
	got, err := stream.ParseSet(idfa.Records)
	if err != nil {
		t.Fatal(err)
	}
	if d := stream.Diff(map[stream.ListKey]stream.Set{{Audience: "vip", Type: ident.IDFA}: want},
		map[stream.ListKey]stream.Set{{Audience: "vip", Type: ident.IDFA}: got}); !d.OK() {
		t.Errorf("the IDFA list: %s", d)
	}
}
