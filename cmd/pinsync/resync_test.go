package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas/stream"
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
	recs := generate(t, stream.Config{Profiles: 600, Audiences: 3, Events: 6000, Seed: 21, MalformedFraction: stream.None})
	first := recs[:len(recs)/2]
	f.produce(first)
	f.waitLagZero(60 * time.Second)
	wantFirst, _ := expected(t, first)
	f.exact(wantFirst)

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
