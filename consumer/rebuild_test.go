package consumer_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// rebuildStream is a stream split in two: the first half syncs, then a
// fault, then the second half.
func rebuildStream(t *testing.T) (first, all []stream.Record, wantFirst, wantAll map[stream.ListKey]stream.Set) {
	t.Helper()
	recs, _, err := stream.Collect(stream.Config{Profiles: 400, Audiences: 4, Events: 4000, Seed: 13, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	first = recs[:len(recs)/2]
	wantFirst, _ = oracle(t, first)
	wantAll, _ = oracle(t, recs)
	return first, recs, wantFirst, wantAll
}

// listStatus returns the status of one list, on the engine that owns it.
func listStatus(e *consumer.Engine, audience, typ string) (consumer.ListStatus, bool) {
	for _, a := range e.Status().Audiences {
		for _, l := range a.Lists {
			if a.Key == audience && l.ListType == typ {
				return l, true
			}
		}
	}
	return consumer.ListStatus{}, false
}

// TestDeletedListIsRebuiltFromState: a user deletes a synced list in Ads
// Manager (the sandbox then answers 404 for it, as Pinterest does). The
// next write to it is answered 404; the list is rebuilt from the profile
// state: a new list, named with the generation suffix, holding exactly the
// audience's members, followed by the same CUSTOMER_LIST audience (so its
// campaigns follow). The old list is reported retired, every input record
// is committed and nothing is dead-lettered.
func TestDeletedListIsRebuiltFromState(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	first, all, wantFirst, wantAll := rebuildStream(t)
	cfg := engineConfig()
	// Lists bigger than a request: the rebuilt one is made in several.
	cfg.MaxRecords = 50
	r.produce(first)
	m := r.start(cfg)
	r.converge(wantFirst, 30*time.Second)

	// The biggest list of the first half, which the second half changes.
	var victim stream.ListKey
	for k, s := range wantFirst {
		if len(s) > len(wantFirst[victim]) && !stream.Diff(map[stream.ListKey]stream.Set{k: s}, map[stream.ListKey]stream.Set{k: wantAll[k]}).OK() {
			victim = k
		}
	}
	if victim.Audience == "" {
		t.Fatal("no list changes in the second half")
	}
	var oldID, audienceID string
	st := r.sb.State()
	for _, l := range st.CustomerLists {
		if l.Name == listName(victim.Audience, victim.Type) {
			oldID = l.ID
		}
	}
	for _, a := range st.Audiences {
		if a.CustomerListID == oldID {
			audienceID = a.ID
		}
	}
	if oldID == "" || audienceID == "" {
		t.Fatalf("no list or audience for %v", victim)
	}
	if !r.sb.DeleteCustomerList(oldID) {
		t.Fatal("the sandbox did not delete the list")
	}

	r.produce(all[len(first):])
	r.converge(wantAll, 60*time.Second)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(all)) })
	// The rebuilt list may hold every record before the rebuild has moved
	// the audience to it and recorded it: its end is awaited.
	waitFor(t, 30*time.Second, "the rebuild to end", func() bool {
		return counterSum(t, m.reg, "pinsync_list_rebuilds_total") > 0
	})

	var rebuilt *sandbox.ListState
	st = r.sb.State()
	for _, l := range st.CustomerLists {
		if l.Name == listName(victim.Audience, victim.Type)+" #1" {
			rebuilt = &l
		}
	}
	if rebuilt == nil {
		t.Fatalf("no list named %q", listName(victim.Audience, victim.Type)+" #1")
	}
	if len(rebuilt.Calls) < 2 {
		t.Errorf("the rebuilt list of %d records took %d requests; want several of at most 50", len(rebuilt.Records), len(rebuilt.Calls))
	}
	for _, a := range st.Audiences {
		if a.ID == audienceID && a.CustomerListID != rebuilt.ID {
			t.Errorf("audience %s follows list %s, want the rebuilt %s", a.ID, a.CustomerListID, rebuilt.ID)
		}
	}
	ls, ok := listStatus(m.eng, victim.Audience, victim.Type.String())
	if !ok {
		t.Fatal("the rebuilt list is not in the status")
	}
	if ls.Generation != 1 || !slices.Equal(ls.Retired, []string{oldID}) || ls.CustomerListID != rebuilt.ID || ls.Parked != "" {
		t.Errorf("status: generation %d, retired %v, list %s, parked %q; want 1, [%s], %s, none",
			ls.Generation, ls.Retired, ls.CustomerListID, ls.Parked, oldID, rebuilt.ID)
	}
	if n := counterSum(t, m.reg, "pinsync_dead_letters_total"); n != 0 {
		t.Errorf("%v records dead-lettered", n)
	}
	if n := counterValue(t, m.reg, "pinsync_list_rebuilds_total", "outcome", "ok"); n != 1 {
		t.Errorf("%v rebuilds, want 1", n)
	}
}

// TestLostRoleParksOnlyThatAccount: the token's user loses its role on the
// ad account of one audience (every write there answers 403). That
// audience's lists are parked: nothing more is sent to them, /status and
// pinsync_list_parked name them, and everything else, their own changes
// included, keeps uploading and committing. Once the role is back, the
// parked lists are rebuilt from the state, exact, their audiences
// repointed, and nothing is dead-lettered.
func TestLostRoleParksOnlyThatAccount(t *testing.T) {
	const other = "549755885176"
	r := newRig(t, 2, sandbox.Config{AdAccounts: []sandbox.AdAccount{
		{ID: sandbox.DefaultAdAccountID, Permissions: []string{"OWNER"}},
		{ID: other, Permissions: []string{"OWNER"}},
	}})
	first, all, wantFirst, wantAll := rebuildStream(t)
	var parkedAud string
	for k := range wantFirst {
		if parkedAud == "" || k.Audience < parkedAud {
			parkedAud = k.Audience
		}
	}
	cfg := engineConfig()
	cfg.AudienceAdAccounts = map[string]string{parkedAud: other}
	cfg.ParkedRetry = 300 * time.Millisecond
	r.produce(first)
	m := r.start(cfg)
	r.converge(wantFirst, 30*time.Second)

	if !r.sb.SetPermissions(other, []string{"ANALYST"}) {
		t.Fatal("the sandbox refused the roles")
	}
	r.produce(all[len(first):])
	// The other audiences converge to the whole stream, the parked one
	// stays as it was, and every record is committed.
	want := map[stream.ListKey]stream.Set{}
	for k, s := range wantAll {
		if k.Audience != parkedAud {
			want[k] = s
		}
	}
	for k, s := range wantFirst {
		if k.Audience == parkedAud {
			want[k] = s
		}
	}
	waitFor(t, 60*time.Second, "every record committed while the audience is parked", func() bool {
		return r.committed(cfg.Group) == int64(len(all))
	})
	r.converge(want, 30*time.Second)
	if got := gaugeWith(t, m.reg, "pinsync_list_parked", "audience", parkedAud); got < 1 {
		t.Errorf("pinsync_list_parked{audience=%q} = %v, want at least 1", parkedAud, got)
	}
	parked := m.eng.Status().Parked
	if len(parked) == 0 {
		t.Errorf("the status names no parked list")
	}
	for _, p := range parked {
		if !strings.HasPrefix(p, parkedAud+"/") || !strings.HasSuffix(p, "(permission)") {
			t.Errorf("status names %q parked; want lists of %s, for permission", p, parkedAud)
		}
	}
	if !r.sb.SetPermissions(other, []string{"AUDIENCE_MANAGER"}) {
		t.Fatal("the sandbox refused the roles")
	}
	r.converge(wantAll, 60*time.Second)
	waitFor(t, 10*time.Second, "no list parked", func() bool {
		return gaugeWith(t, m.reg, "pinsync_list_parked", "audience", parkedAud) == 0 && len(m.eng.Status().Parked) == 0
	})
	st := r.sb.State()
	lists := map[string]string{}
	for _, l := range st.CustomerLists {
		lists[l.ID] = l.Name
	}
	for _, a := range st.Audiences {
		if a.AdAccountID == other && !strings.HasSuffix(lists[a.CustomerListID], " #1") {
			t.Errorf("audience %q follows list %q, want the rebuilt one", a.Name, lists[a.CustomerListID])
		}
	}
	if n := counterSum(t, m.reg, "pinsync_dead_letters_total"); n != 0 {
		t.Errorf("%v records dead-lettered", n)
	}
}

// TestEmptiedListIsRecreatedForItsNextMember: a list is deleted at
// Pinterest while its every member leaves the audience. The removals are
// answered 404; the rebuild finds no member, so there is no list to make
// (Pinterest needs a record to create one), and the audience keeps
// following the deleted one until the next member enters: then a list
// named with the generation suffix is created for it and the same
// audience is repointed to it.
func TestEmptiedListIsRecreatedForItsNextMember(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	event := func(profile, name string) stream.Record {
		b, err := json.Marshal(map[string]any{
			"type": "track", "event": name, "userId": profile,
			"properties": map[string]any{"audience_key": "vip"},
			"context":    map[string]any{"traits": map[string]any{"email": profile + "@example.com"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return stream.Record{Key: []byte(profile), Value: b}
	}
	var entered, exited []stream.Record
	for i := range 5 {
		p := fmt.Sprintf("vip-%d", i)
		entered = append(entered, event(p, "Audience Entered"))
		exited = append(exited, event(p, "Audience Exited"))
	}
	cfg := engineConfig()
	r.produce(entered)
	m := r.start(cfg)
	name := listName("vip", ident.Email)
	var oldID, audienceID string
	waitFor(t, 30*time.Second, "the list holds the five members, an audience following it", func() bool {
		st := r.sb.State()
		for _, l := range st.CustomerLists {
			if l.Name == name && len(l.Records) == 5 {
				oldID = l.ID
			}
		}
		for _, a := range st.Audiences {
			if oldID != "" && a.CustomerListID == oldID {
				audienceID = a.ID
			}
		}
		return audienceID != ""
	})
	if !r.sb.DeleteCustomerList(oldID) {
		t.Fatal("the list could not be deleted")
	}
	r.produce(exited)
	waitFor(t, 30*time.Second, "the rebuild that finds no member", func() bool {
		return counterValue(t, m.reg, "pinsync_list_rebuilds_total", "outcome", "ok") == 1
	})
	if n := len(r.sb.State().CustomerLists); n != 0 {
		t.Fatalf("%d lists exist after a rebuild with no member", n)
	}
	newcomer := event("vip-new", "Audience Entered")
	r.produce([]stream.Record{newcomer})
	want, err := ident.OfString(ident.Email, "vip-new@example.com")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a new list for the newcomer, followed by the audience", func() bool {
		st := r.sb.State()
		for _, l := range st.CustomerLists {
			if l.Name != name+" #1" || len(l.Records) != 1 || l.Records[0] != want.String() {
				continue
			}
			for _, a := range st.Audiences {
				if a.ID == audienceID && a.CustomerListID == l.ID {
					return true
				}
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "every record committed", func() bool {
		return r.committed(cfg.Group) == int64(len(entered)+len(exited)+1)
	})
	if n := len(r.sb.State().Audiences); n != 1 {
		t.Errorf("%d audiences, want the one repointed", n)
	}
}

// TestWithoutStateADeletedListIsMadeAgain: run without a control topic, or
// without a changelog, pinsync cannot rebuild a list from the state. A
// list deleted at Pinterest then neither stalls nor stays parked: a new
// list is made by its next add, its audience repointed to it; it holds the
// members added since (and no one who is not a member), the others
// converge exactly, every record is committed, and the rebuild is counted
// as partial.
func TestWithoutStateADeletedListIsMadeAgain(t *testing.T) {
	for _, c := range []struct{ name, control, changelog string }{
		{"no control topic", "-", ""},
		{"no changelog", "", "-"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, 2, sandbox.Config{})
			first, all, wantFirst, wantAll := rebuildStream(t)
			cfg := engineConfig()
			cfg.ControlTopic, cfg.ChangelogTopic = c.control, c.changelog
			r.produce(first)
			m := r.start(cfg)
			r.converge(wantFirst, 30*time.Second)

			// The list of the first half that gains the most members.
			var victim stream.ListKey
			gain := 0
			for k, s := range wantAll {
				n := 0
				for h := range s {
					if _, ok := wantFirst[k][h]; !ok {
						n++
					}
				}
				if n > gain {
					victim, gain = k, n
				}
			}
			var oldID, audienceID string
			st := r.sb.State()
			for _, l := range st.CustomerLists {
				if l.Name == listName(victim.Audience, victim.Type) {
					oldID = l.ID
				}
			}
			for _, a := range st.Audiences {
				if a.CustomerListID == oldID {
					audienceID = a.ID
				}
			}
			if oldID == "" || audienceID == "" || gain == 0 {
				t.Fatalf("no list, audience or gain for %v", victim)
			}
			if !r.sb.DeleteCustomerList(oldID) {
				t.Fatal("the sandbox did not delete the list")
			}
			r.produce(all[len(first):])

			waitFor(t, 60*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(all)) })
			others := map[stream.ListKey]stream.Set{}
			for k, s := range wantAll {
				if k != victim {
					others[k] = s
				}
			}
			waitFor(t, 30*time.Second, "the other lists to converge and the audience to follow a new list", func() bool {
				act := r.actual()
				delete(act, victim)
				for _, a := range r.sb.State().Audiences {
					if a.ID == audienceID {
						return stream.Diff(others, act).OK() && a.CustomerListID != oldID
					}
				}
				return false
			})
			st = r.sb.State()
			var followed string
			for _, a := range st.Audiences {
				if a.ID == audienceID {
					followed = a.CustomerListID
				}
			}
			var made *sandbox.ListState
			for _, l := range st.CustomerLists {
				if l.ID == followed {
					made = &l
				}
			}
			if made == nil {
				t.Fatalf("audience %s follows %q, no list of the sandbox", audienceID, followed)
			}
			checkPartial(t, made, wantAll[victim], wantFirst[victim])
			if n := counterValue(t, m.reg, "pinsync_list_rebuilds_total", "outcome", "partial"); n != 1 {
				t.Errorf("%v partial rebuilds, want 1", n)
			}
			if p := m.eng.Status().Parked; len(p) != 0 {
				t.Errorf("parked lists %v, want none", p)
			}
		})
	}
}

// checkPartial checks a list made again without the state: it holds no one
// who is not a member (want), and every member who was not one before.
func checkPartial(t *testing.T, l *sandbox.ListState, want, before stream.Set) {
	t.Helper()
	got, err := stream.ParseSet(l.Records)
	if err != nil {
		t.Fatal(err)
	}
	for h := range got {
		if _, ok := want[h]; !ok {
			t.Errorf("list %q holds %s, not a member", l.Name, h)
		}
	}
	for h := range want {
		if _, was := before[h]; !was {
			if _, ok := got[h]; !ok {
				t.Errorf("list %q lacks %s, added since", l.Name, h)
			}
		}
	}
}

// TestWithoutChangelogAParkedListResumes: without a changelog a parked
// list cannot be rebuilt from the state. Pinterest refuses an audience's
// list name: the audience is parked (refused); once Pinterest takes the
// name, the list resumes instead of staying parked: the mark goes, the
// rebuild is counted as partial, and the list is made by the adds that
// follow, holding every member added since and no one else.
func TestWithoutChangelogAParkedListResumes(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	first, all, wantFirst, wantAll := rebuildStream(t)
	// The audience that gains the most members in the second half.
	var victim stream.ListKey
	gain := 0
	for k, s := range wantAll {
		n := 0
		for h := range s {
			if _, ok := wantFirst[k][h]; !ok {
				n++
			}
		}
		if n > gain {
			victim, gain = k, n
		}
	}
	if err := r.sb.SetFaults(sandbox.Faults{RefuseNames: []string{listName(victim.Audience, victim.Type)}}); err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ChangelogTopic = "-"
	cfg.ParkedRetry = 200 * time.Millisecond
	r.produce(first)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the list parked", func() bool {
		return gaugeWith(t, m.reg, "pinsync_list_parked", "reason", "refused") == 1
	})
	if err := r.sb.SetFaults(sandbox.Faults{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the list resumed", func() bool {
		return gaugeWith(t, m.reg, "pinsync_list_parked", "reason", "refused") == 0 &&
			counterValue(t, m.reg, "pinsync_list_rebuilds_total", "outcome", "partial") == 1
	})
	r.produce(all[len(first):])
	waitFor(t, 60*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(all)) })
	others := map[stream.ListKey]stream.Set{}
	for k, s := range wantAll {
		if k != victim {
			others[k] = s
		}
	}
	var made *sandbox.ListState
	waitFor(t, 30*time.Second, "the other lists to converge and the list to be made", func() bool {
		act := r.actual()
		delete(act, victim)
		for _, l := range r.sb.State().CustomerLists {
			if l.Name == listName(victim.Audience, victim.Type) {
				made = &l
			}
		}
		return stream.Diff(others, act).OK() && made != nil
	})
	checkPartial(t, made, wantAll[victim], wantFirst[victim])
	if p := m.eng.Status().Parked; len(p) != 0 {
		t.Errorf("parked lists %v, want none", p)
	}
}
