package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestResyncRebuildsTheAudiencesListsExactly: with two replicas running,
// `pinsync resync --audience A` (a process of its own) marks A's lists;
// their owners rebuild each from the profile state into a new list named
// with the generation suffix, holding exactly A's members, and repoint A's
// CUSTOMER_LIST audiences to them. The command reports each list rebuilt
// and the old one retired; the old lists still exist at Pinterest (there
// is no call to delete one) but no audience follows them, and later
// changes go to the new lists only.
func TestResyncRebuildsTheAudiencesListsExactly(t *testing.T) {
	f := newFleet(t, 2)
	f.start(0)
	f.start(1)
	recs, first, wantFirst := f.syncFirstHalf(21)

	var aud string
	before := map[string]string{} // list name → id
	for k := range wantFirst {
		if aud == "" || k.Audience < aud {
			aud = k.Audience
		}
	}
	for _, l := range f.sb.State().CustomerLists {
		if strings.HasPrefix(l.Name, "pinsync "+aud+" ") {
			before[l.Name] = l.ID
		}
	}
	if len(before) == 0 {
		t.Fatalf("no list of audience %s", aud)
	}

	cmd := exec.Command(f.bin, "resync", "--config", filepath.Join(f.dir, "replica-0.yaml"), "--audience", aud, "--wait", "60s")
	cmd.Env = append(os.Environ(), keyEnv+"="+f.key)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("pinsync resync: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	for name, id := range before {
		typ := name[strings.LastIndexByte(name, ' ')+1:]
		if !strings.Contains(out.String(), fmt.Sprintf("%s/%s: rebuilt as customer list", aud, typ)) ||
			!strings.Contains(out.String(), "retired: "+id) {
			t.Errorf("resync output does not report %s/%s rebuilt with %s retired:\n%s", aud, typ, id, out.String())
		}
	}

	f.produce(recs[len(first):])
	f.waitLagZero(60 * time.Second)
	wantAll, _ := expected(t, recs)
	f.exact(wantAll)

	st := f.sb.State()
	names := map[string]string{}
	for _, l := range st.CustomerLists {
		names[l.ID] = l.Name
	}
	followedOld := map[string]bool{}
	for _, a := range st.Audiences {
		n := names[a.CustomerListID]
		if strings.HasPrefix(n, "pinsync "+aud+" ") && !strings.HasSuffix(n, " #1") {
			t.Errorf("audience %s follows %q, want the rebuilt list", a.ID, n)
		}
		followedOld[a.CustomerListID] = true
	}
	for name, id := range before {
		if _, ok := names[id]; !ok {
			t.Errorf("the old list %q is gone; a rebuild retires it, it does not delete it", name)
		}
		if followedOld[id] {
			t.Errorf("an audience still follows the old list %q", name)
		}
	}
}

// TestRebuildSurvivesKill9OfItsOwner: a list is deleted at Pinterest and
// its owner dies (kill -9) in the middle of rebuilding it: the new list is
// made and holds the members of one of the changelog's two partitions
// (Pinterest answers slowly, twenty records a request). The replica that
// takes over finds the rebuild under way in the registry and carries on
// filling the same list: no other list is made, the list ends exact,
// named with the first generation, followed by the audience, and the
// deleted list is reported retired.
func TestRebuildSurvivesKill9OfItsOwner(t *testing.T) {
	settings := fastSettings
	settings.maxRecords = "20"
	f := newFleetWith(t, 2, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited}, settings)
	f.start(0)
	recs, first, wantFirst := f.syncFirstHalf(23)
	wantAll, _ := expected(t, recs)

	var victim stream.ListKey
	for k, s := range wantFirst {
		if len(s) > len(wantFirst[victim]) && len(wantAll[k]) != len(s) {
			victim = k
		}
	}
	if victim.Audience == "" {
		t.Fatal("no list changes in the second half")
	}
	name := "pinsync " + victim.Audience + " " + victim.Type.String()
	var oldID string
	for _, l := range f.sb.State().CustomerLists {
		if l.Name == name {
			oldID = l.ID
		}
	}
	if oldID == "" || !f.sb.DeleteCustomerList(oldID) {
		t.Fatalf("no list %q to delete", name)
	}
	if err := f.sb.SetFaults(sandbox.Faults{Latency: time.Second}); err != nil {
		t.Fatal(err)
	}
	ct, err := control.Open(t.Context(), control.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(f.brokers...)}, Topic: replicaGroup + ".control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	key := control.ListKey{AdAccount: sandbox.DefaultAdAccountID, Audience: victim.Audience, Type: victim.Type}
	f.produce(recs[len(first):])
	waitFor(t, 120*time.Second, "a rebuild's list made and one changelog partition in it", func() bool {
		e := ct.Registry().Entries()[key]
		return e.Rebuild != "" && e.Building != nil && len(e.Building.Done) == 1
	})
	building := *ct.Registry().Entries()[key].Building
	f.kill9(0)
	if err := f.sb.SetFaults(sandbox.Faults{}); err != nil {
		t.Fatal(err)
	}
	f.start(0)
	waitFor(t, 90*time.Second, "the rebuild done by the replica that took over", func() bool {
		return ct.Registry().Entries()[key].Rebuild == ""
	})
	f.waitLagZero(90 * time.Second)
	f.exact(wantAll)

	e := ct.Registry().Entries()[key]
	if e.Generation != 1 || e.CustomerListID != building.CustomerListID || !slices.Equal(e.Retired, []string{oldID}) || e.Building != nil {
		t.Errorf("registry entry %+v; want generation 1, the list %s made before the kill, retired [%s], nothing under way", e, building.CustomerListID, oldID)
	}
	st := f.sb.State()
	for _, l := range st.CustomerLists {
		if strings.HasPrefix(l.Name, name+" #") && l.ID != building.CustomerListID {
			t.Errorf("another list %q (%s) made; want the rebuild's first list only", l.Name, l.ID)
		}
		if l.ID == building.CustomerListID && l.Name != name+" #1" {
			t.Errorf("the rebuilt list is named %q, want %q", l.Name, name+" #1")
		}
	}
	followed := false
	for _, a := range st.Audiences {
		followed = followed || a.CustomerListID == e.CustomerListID
	}
	if !followed {
		t.Error("no audience follows the rebuilt list")
	}
}

// syncFirstHalf generates a stream (600 profiles, 3 audiences, 6,000
// events), syncs its first half and checks the lists exact. It returns
// the stream, its first half and the lists that half makes.
func (f *fleet) syncFirstHalf(seed uint64) (recs, first []stream.Record, wantFirst map[stream.ListKey]stream.Set) {
	f.t.Helper()
	recs = generate(f.t, stream.Config{Profiles: 600, Audiences: 3, Events: 6000, Seed: seed, MalformedFraction: stream.None})
	first = recs[:len(recs)/2]
	f.produce(first)
	f.waitLagZero(60 * time.Second)
	wantFirst, _ = expected(f.t, first)
	f.exact(wantFirst)
	return recs, first, wantFirst
}

// TestResyncDryRunCountsWhatARebuildWouldUpload: with two replicas synced,
// `pinsync resync --dry-run --audience A` prints, for each of A's lists,
// the records a rebuild would upload (the oracle's list, read from the
// profile state), the write calls (the records over
// pinterest.max_records, rounded up, and the audience's repointing) and
// the time they take at the owner's share of the group's write budget. It
// marks nothing in the registry and makes no Pinterest call.
func TestResyncDryRunCountsWhatARebuildWouldUpload(t *testing.T) {
	const maxRecords, writesPerMinute = 100, 6000.0
	f := newFleetWith(t, 2, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited},
		fleetSettings{writesPerMinute: fmt.Sprint(writesPerMinute), maxRecords: fmt.Sprint(maxRecords), flushInterval: "250ms"})
	f.start(0)
	f.start(1)
	_, _, want := f.syncFirstHalf(29)
	aud := ""
	for k := range want {
		if aud == "" || k.Audience < aud {
			aud = k.Audience
		}
	}
	before := f.sb.State().Requests
	code, out, errOut := f.pinsync("resync", "--config", f.cfgPath(0), "--audience", aud, "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run: nothing marked, nothing uploaded") {
		t.Fatalf("pinsync resync --dry-run: exit %d\n%s%s", code, out, errOut)
	}
	share := regexp.MustCompile(`about ([0-9.]+m?s) at its owner's share, replica-[01]'s ([0-9.]+) of the group's 6000 writes a minute \(([12]) of the 2 changes partitions\)`)
	for _, typ := range ident.Types {
		k := stream.ListKey{Audience: aud, Type: typ}
		n := len(want[k])
		var line string
		for l := range strings.Lines(out) {
			if strings.HasPrefix(l, aud+"/"+typ.String()+":") {
				line = l
			}
		}
		if n == 0 {
			if line != "" && !strings.Contains(line, "no member") {
				t.Errorf("%s has no member, the dry run says: %s", k, line)
			}
			continue
		}
		calls := (n+maxRecords-1)/maxRecords + 1
		if wantLine := fmt.Sprintf("a rebuild would upload %d records (the members' %s identifiers) to a new list, generation 1, in %d write calls", n, typ, calls); !strings.Contains(line, wantLine) {
			t.Errorf("%s: %q\nwant %q", k, line, wantLine)
		}
		rest := out[strings.Index(out, line)+len(line):]
		m := share.FindStringSubmatch(rest)
		if m == nil {
			t.Errorf("%s: no time at the owner's share after %q:\n%s", k, line, out)
			continue
		}
		d, err1 := time.ParseDuration(m[1])
		perMinute, err2 := strconv.ParseFloat(m[2], 64)
		owned, _ := strconv.Atoi(m[3])
		if err1 != nil || err2 != nil || perMinute != writesPerMinute*float64(owned)/2 ||
			(d-time.Duration(float64(calls)/perMinute*float64(time.Minute))).Abs() > 50*time.Millisecond {
			t.Errorf("%s: %q; want %d calls at %g a minute", k, m[0], calls, writesPerMinute*float64(owned)/2)
		}
	}
	ct, err := control.Open(t.Context(), control.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(f.brokers...)}, Topic: replicaGroup + ".control"})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	for k, e := range ct.Registry().Entries() {
		if e.Rebuild != "" || e.Generation != 0 {
			t.Errorf("after the dry run %v is marked %q, generation %d", k, e.Rebuild, e.Generation)
		}
	}
	if after := f.sb.State().Requests; after.ByCategory[sandbox.CategoryAdsWrite] != before.ByCategory[sandbox.CategoryAdsWrite] {
		t.Errorf("the dry run came with %d write calls", after.ByCategory[sandbox.CategoryAdsWrite]-before.ByCategory[sandbox.CategoryAdsWrite])
	}
}
