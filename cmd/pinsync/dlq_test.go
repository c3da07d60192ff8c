package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/deadletter"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestDLQRedriveConvergesOnceTheCauseIsFixed: the platform names its track
// events "Audience Joined" and "Audience Left", which pinsync, configured
// with the default names, dead-letters (unsupported_event): every
// membership of the stream. `pinsync dlq` counts them by reason and source.
// Once the replicas run with sync.entered_event and exited_event set,
// `pinsync dlq redrive --dry-run` counts what it would send and sends
// nothing; `pinsync dlq redrive` sends each record back to its partition,
// and the lists converge exactly, but for a hash Pinterest refuses
// meanwhile (dead-lettered as pinterest_rejected). Once Pinterest takes
// it, a second redrive sends none of the records again and re-queues that
// hash, and the list is exact; a third sends nothing.
//
// Exactly what: a record sent back is applied after the records that
// followed it, so the oracle is the fixed configuration's over the stream
// as pinsync received it (each profile's accepted records, then its
// refused ones, in order). The email lists equal the oracle of the
// original order too: a profile's emails only grow.
func TestDLQRedriveConvergesOnceTheCauseIsFixed(t *testing.T) {
	events := [2]string{"Audience Joined", "Audience Left"}
	fixed := schemas.DecoderConfig{EnteredEvent: events[0], ExitedEvent: events[1]}
	f := newFleet(t, 4)
	f.start(0)
	f.start(1)
	recs := generate(t, stream.Config{Profiles: 400, Audiences: 3, Events: 4000, Seed: 37, MalformedFraction: stream.None,
		IdentifyFraction: stream.None, NativeFraction: stream.None, EnteredEvent: events[0], ExitedEvent: events[1]})
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var accepted, refusedRecs []stream.Record
	var ev schemas.Event
	for _, r := range recs {
		if dec.Decode(r.Key, r.Value, &ev) != nil {
			refusedRecs = append(refusedRecs, r)
		} else {
			accepted = append(accepted, r)
		}
	}
	want, _ := expectedWith(t, append(accepted, refusedRecs...), fixed)
	inOrder, _ := expectedWith(t, recs, fixed)
	refusedByDefault := len(refusedRecs)
	if refusedByDefault < 1000 || len(want) == 0 {
		t.Fatalf("the stream has %d memberships and %d lists; the test needs many", refusedByDefault, len(want))
	}
	for k, s := range want {
		if k.Type == ident.Email && !maps.Equal(s, inOrder[k]) {
			t.Fatalf("%s: the oracles of the two orders differ; the test's stream has emails that do not only grow", k)
		}
	}
	f.produce(recs)
	f.waitLagZero(60 * time.Second)
	if lists := f.sb.State().CustomerLists; len(lists) != 0 {
		t.Fatalf("%d lists exist while every membership is dead-lettered", len(lists))
	}

	var summary struct {
		DeadLetters int `json:"dead_letters"`
		Groups      []struct {
			Reason   string
			Source   string
			Count    int
			Redriven int
		}
	}
	code, out, errOut := f.pinsync("dlq", "--config", f.cfgPath(0), "--json")
	if code != 0 || json.Unmarshal([]byte(out), &summary) != nil {
		t.Fatalf("pinsync dlq: exit %d\n%s%s", code, out, errOut)
	}
	counted := 0
	for _, g := range summary.Groups {
		counted += g.Count
		if g.Reason != schemas.ReasonUnsupportedEvent || !strings.HasPrefix(g.Source, replicaTopic+"/") || g.Redriven != 0 {
			t.Errorf("dead letters %+v; want unsupported_event from %s/<partition>, none redriven", g, replicaTopic)
		}
	}
	if summary.DeadLetters != refusedByDefault || counted != refusedByDefault || len(summary.Groups) != f.partitions {
		t.Errorf("pinsync dlq counts %d (%d in %d groups); the default decoder refuses %d records, from %d partitions",
			summary.DeadLetters, counted, len(summary.Groups), refusedByDefault, f.partitions)
	}

	// The fix: the replicas learn the platform's event names. Meanwhile
	// Pinterest refuses one record of one list.
	f.settings.events = events
	for id := range 2 {
		f.stop(id)
		f.start(id)
	}
	var refused stream.ListKey
	var hash ident.Hash
	for k, s := range want {
		if k.Type == ident.Email && len(s) > len(want[refused]) {
			refused = k
		}
	}
	for h := range want[refused] {
		hash = h
		break
	}
	if err := f.sb.SetFaults(sandbox.Faults{RefuseRecords: []string{hex.EncodeToString(hash[:])}}); err != nil {
		t.Fatal(err)
	}

	before := f.inputEnd(t)
	code, out, errOut = f.pinsync("dlq", "redrive", "--config", f.cfgPath(0), "--dry-run")
	wantDry := fmt.Sprintf("dry run: would re-publish %d records and re-queue 0 hashes; 0 left alone; 0 sent by an earlier redrive", refusedByDefault)
	if code != 0 || !strings.Contains(out, wantDry) ||
		!strings.Contains(out, fmt.Sprintf("all %d records to re-publish decode with this configuration", refusedByDefault)) {
		t.Fatalf("pinsync dlq redrive --dry-run: exit %d, want %q and every record decoding\n%s%s", code, wantDry, out, errOut)
	}
	if after := f.inputEnd(t); after != before {
		t.Fatalf("the dry run produced %d records", after-before)
	}

	code, out, errOut = f.pinsync("dlq", "redrive", "--config", f.cfgPath(0))
	if wantDone := fmt.Sprintf("done: re-published %d records", refusedByDefault); code != 0 || !strings.Contains(out, wantDone) {
		t.Fatalf("pinsync dlq redrive: exit %d, want %q\n%s%s", code, wantDone, out, errOut)
	}
	if after := f.inputEnd(t); after != before+int64(refusedByDefault) {
		t.Fatalf("the redrive produced %d records, want %d", after-before, refusedByDefault)
	}
	f.waitLagZero(60 * time.Second)
	// Pinterest refuses the record in every list that would hold it.
	wantRefused := map[stream.ListKey]stream.Set{}
	var holding []stream.ListKey
	for k, s := range want {
		wantRefused[k] = maps.Clone(s)
		if _, ok := s[hash]; ok {
			delete(wantRefused[k], hash)
			holding = append(holding, k)
		}
	}
	f.exact(wantRefused)

	// Pinterest takes the record now.
	if err := f.sb.SetFaults(sandbox.Faults{}); err != nil {
		t.Fatal(err)
	}
	end := f.inputEnd(t)
	code, out, errOut = f.pinsync("dlq", "redrive", "--config", f.cfgPath(0))
	wantSecond := fmt.Sprintf("done: re-published 0 records and re-queued %d hashes;", len(holding))
	if code != 0 || !strings.Contains(out, wantSecond) || !strings.Contains(out, fmt.Sprintf("%d sent by an earlier redrive", refusedByDefault)) {
		t.Fatalf("second redrive: exit %d, want %q and none of the records again\n%s%s", code, wantSecond, out, errOut)
	}
	for _, k := range holding {
		if line := "re-queue " + deadletter.ReasonRejected + " " + k.Audience + "/" + k.Type.String() + " 1 as an add to its list"; !hasLine(out, line) {
			t.Errorf("second redrive: no %q\n%s", line, out)
		}
	}
	waitFor(t, 60*time.Second, "the re-queued record uploaded", func() bool { return stream.Diff(want, f.actual()).OK() })
	f.exact(want)

	code, out, errOut = f.pinsync("dlq", "redrive", "--config", f.cfgPath(0))
	if code != 0 || !strings.Contains(out, "done: re-published 0 records and re-queued 0 hashes;") {
		t.Fatalf("third redrive: exit %d, want nothing sent\n%s%s", code, out, errOut)
	}
	if after := f.inputEnd(t); after != end {
		t.Errorf("the second and third redrives produced %d records to the input", after-end)
	}
}

// hasLine reports whether text has a line of the words of line (a table's
// row, whatever its alignment).
func hasLine(text, line string) bool {
	for l := range strings.Lines(text) {
		if strings.Join(strings.Fields(l), " ") == line {
			return true
		}
	}
	return false
}

// cfgPath is the configuration file replica id runs with.
func (f *fleet) cfgPath(id int) string {
	return filepath.Join(f.dir, fmt.Sprintf("replica-%d.yaml", id))
}

// inputEnd sums the end offsets of the input topic.
func (f *fleet) inputEnd(t *testing.T) int64 {
	t.Helper()
	ends, err := kadm.NewClient(f.kcl).ListEndOffsets(t.Context(), replicaTopic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}
