package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/overview"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestStatusShowsEveryListOnceWithWholeListFigures: three replicas sync a
// stream; `pinsync status` (a process of its own) lists every list
// exactly once, with the Pinterest ids of the sandbox's list and its
// audience, the owner the list stage's group gives it, and whole-list
// figures: the records summed over the replicas are the oracle's list,
// nothing is pending, and the input group has no lag. A replica's group
// page, rendered in headless Chromium, holds the same lists, and its status
// page links to it. With the owner of most lists killed (kill -9, its
// partitions kept by static membership for the session timeout), its lists
// are still listed, each once, with the registry's ids, marked "owner
// unreachable".
func TestStatusShowsEveryListOnceWithWholeListFigures(t *testing.T) {
	settings := fastSettings
	settings.sessionTimeout = "30s" // the killed owner keeps its partitions while the test looks
	f := newFleetWith(t, 6, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited}, settings)
	for id := range 3 {
		f.start(id)
	}
	recs := generate(t, stream.Config{Profiles: 600, Audiences: 3, Events: 6000, Seed: 31, MalformedFraction: stream.None})
	f.produce(recs)
	f.waitLagZero(60 * time.Second)
	want, _ := expected(t, recs)
	f.exact(want)
	lists := map[string]sandboxList{} // by "audience/TYPE"
	st := f.sb.State()
	audienceOf := map[string]string{}
	for _, a := range st.Audiences {
		audienceOf[a.CustomerListID] = a.ID
	}
	for name, l := range currentLists(t, st) {
		aud, typ := splitListName(t, name)
		lists[aud+"/"+typ] = sandboxList{id: l.ID, audience: audienceOf[l.ID]}
	}

	o := f.status(t)
	if len(o.Processes) != 3 {
		t.Errorf("processes %+v; want the three replicas", o.Processes)
	}
	for _, p := range o.Processes {
		if !p.Reached || len(p.InputPartitions) == 0 || len(p.ChangesPartitions) == 0 {
			t.Errorf("process %+v; want reached, owning input and changes partitions", p)
		}
	}
	if !o.Complete {
		t.Error("the overview is not complete with every replica reached")
	}
	for _, g := range o.Groups {
		for _, p := range g.Partitions {
			if p.Owner == "" || g.Stage == "profiles" && p.Lag != 0 {
				t.Errorf("group %s partition %d: %+v; want an owner (and at lag 0 no input lag)", g.Name, p.Partition, p)
			}
		}
	}
	byOwner := map[string]int{}
	seen := map[string]bool{}
	for _, l := range o.Lists {
		key := l.Audience + "/" + l.ListType
		if seen[key] {
			t.Errorf("%s is listed twice", key)
		}
		seen[key] = true
		byOwner[l.Owner]++
		sl, ok := lists[key]
		if !ok || l.CustomerListID != sl.id || l.AudienceID != sl.audience || !l.Registered {
			t.Errorf("%s: customer list %q, audience %q, registered %v; the sandbox has %+v", key, l.CustomerListID, l.AudienceID, l.Registered, sl)
		}
		typ, err := ident.ParseType(l.ListType)
		if err != nil {
			t.Fatal(err)
		}
		wantRecords := int64(len(want[stream.ListKey{Audience: l.Audience, Type: typ}]))
		if l.State != overview.StateReported || l.Owner == "" || l.Pending != 0 || l.Records != wantRecords {
			t.Errorf("%s: state %q, owner %q, pending %d, records %d; want reported by its owner, nothing pending, %d records",
				key, l.State, l.Owner, l.Pending, l.Records, wantRecords)
		}
	}
	for key := range lists {
		if !seen[key] {
			t.Errorf("%s, at Pinterest, is not listed", key)
		}
	}

	code, text, errOut := f.pinsync("status", "--config", filepath.Join(f.dir, "replica-0.yaml"))
	if code != 0 {
		t.Fatalf("pinsync status: exit %d\n%s", code, errOut)
	}
	for key := range lists {
		aud, typ, _ := strings.Cut(key, "/")
		if n := countRows(text, aud, typ); n != 1 {
			t.Errorf("pinsync status prints %d rows of %s, want one:\n%s", n, key, text)
		}
	}

	t.Run("group page", func(t *testing.T) {
		chromium := requireTool(t, "chromium", "chromium")
		r := f.running()[0]
		if page := get(t, "http://"+r.addr+"/"); !strings.Contains(page, `<a href="group" id="group-page">`) {
			t.Errorf("the status page does not link to the group page:\n%s", page)
		}
		dom := dumpDOM(t, chromium, "http://"+r.addr+"/group")
		rows, err := tableRows(dom, "lists")
		if err != nil {
			t.Fatalf("lists table of the group page: %v\n%s", err, dom)
		}
		onPage := map[string]bool{}
		for _, row := range rows {
			key := row["audience"] + "/" + row["list type"]
			if onPage[key] {
				t.Errorf("the group page shows %s twice", key)
			}
			onPage[key] = true
			typ, _ := ident.ParseType(row["list type"])
			if sl := lists[key]; row["customer list"] != sl.id || row["Pinterest audience"] != sl.audience || row["owner"] == "" ||
				row["records"] != strconv.Itoa(len(want[stream.ListKey{Audience: row["audience"], Type: typ}])) {
				t.Errorf("group page row %v; the sandbox has %+v, the oracle %d records", row, sl, len(want[stream.ListKey{Audience: row["audience"], Type: typ}]))
			}
		}
		if len(onPage) != len(lists) {
			t.Errorf("the group page shows %d lists, Pinterest has %d", len(onPage), len(lists))
		}
	})

	victim, most := "", 0
	for owner, n := range byOwner {
		if n > most {
			victim, most = owner, n
		}
	}
	id, err := strconv.Atoi(strings.TrimPrefix(victim, "replica-"))
	if err != nil {
		t.Fatalf("owner %q is not a replica's instance id", victim)
	}
	f.kill9(id)
	o = f.status(t)
	unreachable := 0
	seen = map[string]bool{}
	for _, l := range o.Lists {
		key := l.Audience + "/" + l.ListType
		if seen[key] {
			t.Errorf("with %s killed, %s is listed twice", victim, key)
		}
		seen[key] = true
		if l.CustomerListID != lists[key].id {
			t.Errorf("with %s killed, %s has customer list %q, the registry %q", victim, key, l.CustomerListID, lists[key].id)
		}
		if l.Owner == victim {
			unreachable++
			if l.State != overview.StateOwnerUnreachable {
				t.Errorf("%s, owned by the killed %s: state %q, want %q", key, victim, l.State, overview.StateOwnerUnreachable)
			}
		}
	}
	if len(seen) != len(lists) || unreachable != most {
		t.Errorf("with %s killed: %d lists listed (want %d), %d marked unreachable (want its %d)", victim, len(seen), len(lists), unreachable, most)
	}
}

// status runs `pinsync status --json` and decodes its output.
func (f *fleet) status(t *testing.T) overview.Overview {
	t.Helper()
	code, out, errOut := f.pinsync("status", "--config", filepath.Join(f.dir, "replica-0.yaml"), "--json")
	if code != 0 {
		t.Fatalf("pinsync status: exit %d\n%s", code, errOut)
	}
	var o overview.Overview
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("pinsync status --json: %v\n%s", err, out)
	}
	return o
}

// pinsync runs the binary with args, as an operator would beside the
// fleet (with the token key in its environment), and returns its exit
// status and output.
func (f *fleet) pinsync(args ...string) (code int, stdout, stderr string) {
	f.t.Helper()
	cmd := exec.Command(f.bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PINSYNC_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, keyEnv+"="+f.key)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		f.t.Fatalf("pinsync %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// splitListName returns the audience and list type of a list named
// "pinsync <audience> <TYPE>".
func splitListName(t *testing.T, name string) (audience, typ string) {
	t.Helper()
	rest, ok := strings.CutPrefix(name, "pinsync ")
	i := strings.LastIndexByte(rest, ' ')
	if !ok || i < 0 {
		t.Fatalf("list name %q is not pinsync's", name)
	}
	return rest[:i], rest[i+1:]
}

// countRows counts the lines of a printed table whose first two cells are
// a and b.
func countRows(text, a, b string) int {
	n := 0
	for line := range strings.Lines(text) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == a && f[1] == b {
			n++
		}
	}
	return n
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
