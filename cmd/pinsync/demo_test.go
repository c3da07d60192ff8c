package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// The demo tests run small streams: the race detector makes everything
// about five times slower.
const (
	demoProfiles = "1500"
	demoEvents   = "15000"
)

// demoStream is the stream the demo generates for the test sizes, with
// the demo's defaults for the rest (12 audiences, seed 1, 0.1% malformed).
func demoStream(t *testing.T) ([]stream.Record, stream.Stats) {
	t.Helper()
	recs, st, err := stream.Collect(stream.Config{Profiles: 1500, Audiences: 12, Events: 15000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return recs, st
}

// TestDemoConvergesAndReportsJSON runs `pinsync demo --json` in-process
// and checks its one JSON object: converged, every list exact, and exactly
// the malformed records dead-lettered.
func TestDemoConvergesAndReportsJSON(t *testing.T) {
	recs, st := demoStream(t)
	if st.Malformed == 0 {
		t.Fatal("the test stream should hold malformed records")
	}
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	oracle, rejected := stream.BuildOracle(recs, dec, stream.DefaultMaxIdentifiersPerType)
	if rejected != st.Malformed {
		t.Fatalf("the decoder rejects %d records, the generator made %d malformed", rejected, st.Malformed)
	}

	var out, errOut bytes.Buffer
	io := &stdio{In: strings.NewReader(""), Out: &out, Err: &errOut, Getenv: func(string) string { return "" }}
	rc := runDemo(context.Background(), io, []string{
		"--profiles", demoProfiles, "--events", demoEvents, "--replicas", "2", "--json", "--timeout", "2m",
	})
	if rc != 0 {
		t.Fatalf("exit status %d, want 0\nstdout:\n%s\nstderr:\n%s", rc, out.String(), errOut.String())
	}

	// Exactly one JSON object, with exactly the documented keys.
	var raw map[string]json.RawMessage
	jd := json.NewDecoder(bytes.NewReader(out.Bytes()))
	if err := jd.Decode(&raw); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, out.String())
	}
	if jd.More() {
		t.Fatalf("stdout holds more than one JSON value:\n%s", out.String())
	}
	wantKeys := []string{"audiences", "converged", "dead_lettered", "duration_s", "events", "pinterest_calls", "profiles", "records_per_call"}
	if got := slices.Sorted(maps.Keys(raw)); !slices.Equal(got, wantKeys) {
		t.Fatalf("JSON keys %v, want %v", got, wantKeys)
	}
	var res demoJSON
	strict := json.NewDecoder(bytes.NewReader(out.Bytes()))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&res); err != nil {
		t.Fatalf("JSON shape: %v\n%s", err, out.String())
	}
	if !res.Converged {
		t.Fatalf("converged = false:\n%s\n%s", out.String(), errOut.String())
	}
	if res.Events != len(recs) || res.Profiles != 1500 {
		t.Errorf("events %d, profiles %d; want %d, 1500", res.Events, res.Profiles, len(recs))
	}
	if res.DeadLettered != st.Malformed {
		t.Errorf("dead_lettered = %d, the stream has %d malformed records", res.DeadLettered, st.Malformed)
	}
	if res.PinterestCalls <= 0 || res.RecordsPerCall <= 0 || res.DurationS <= 0 {
		t.Errorf("pinterest_calls %d, records_per_call %v, duration_s %v: want positive",
			res.PinterestCalls, res.RecordsPerCall, res.DurationS)
	}

	// One row per list the oracle fills, each exact.
	want := map[string]int{}
	for k, s := range oracle.Expected() {
		if len(s) > 0 {
			want[k.Audience+"/"+k.Type.String()] = len(s)
		}
	}
	got := map[string]int{}
	for _, a := range res.Audiences {
		key := a.Key + "/" + a.ListType
		if _, dup := got[key]; dup {
			t.Errorf("two rows for %s", key)
		}
		got[key] = a.Expected
		if a.Missing != 0 || a.Extra != 0 || a.InPinterest != a.Expected {
			t.Errorf("%s: expected %d, in Pinterest %d, missing %d, extra %d", key, a.Expected, a.InPinterest, a.Missing, a.Extra)
		}
		if _, err := ident.ParseType(a.ListType); err != nil {
			t.Errorf("%s: list type %q: %v", key, a.ListType, err)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("rows (list -> expected) = %v\nwant %v", got, want)
	}
	// Matched is what the sandbox's population matches: about 70% of
	// every list's records, the IDFA lists included. Summed by type, so
	// that a small list's spread does not decide.
	in, matched := map[string]int{}, map[string]int{}
	for _, a := range res.Audiences {
		in[a.ListType] += a.InPinterest
		matched[a.ListType] += a.Matched
	}
	for _, typ := range []string{"EMAIL", "IDFA", "MAID"} {
		if r := float64(matched[typ]) / float64(in[typ]); !(r > 0.6 && r < 0.8) {
			t.Errorf("%s lists match %d of %d records (%.2f), want about 0.7", typ, matched[typ], in[typ], r)
		}
	}
}

// TestDemoFailsWhenNotConverged: a run that cannot converge in time exits
// non-zero, says so, and still shuts down cleanly.
func TestDemoFailsWhenNotConverged(t *testing.T) {
	var out, errOut bytes.Buffer
	io := &stdio{In: strings.NewReader(""), Out: &out, Err: &errOut, Getenv: func(string) string { return "" }}
	rc := runDemo(context.Background(), io, []string{"--profiles", "200", "--events", "1000", "--replicas", "1", "--timeout", "1ms"})
	if rc != 1 {
		t.Fatalf("exit status %d, want 1\nstdout:\n%s\nstderr:\n%s", rc, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "verdict: NOT CONVERGED") || !strings.Contains(errOut.String(), "timed out") {
		t.Errorf("the verdict should say it did not converge and why:\nstdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	}
}

// TestDemoRejectsBadFlags: invalid flags exit 2 before anything starts.
func TestDemoRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--replicas", "0"},
		{"--malformed", "0.9"},
		{"--flush-interval", "1ns"},
		{"extra-argument"},
	} {
		var out, errOut bytes.Buffer
		io := &stdio{In: strings.NewReader(""), Out: &out, Err: &errOut, Getenv: func(string) string { return "" }}
		if rc := runDemo(context.Background(), io, args); rc != 2 {
			t.Errorf("%v: exit status %d, want 2 (stderr %q)", args, rc, errOut.String())
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed %q on stdout", args, out.String())
		}
	}
}

// heldDemo is `pinsync demo --hold` running in the background.
type heldDemo struct {
	// StatusURL is replica 1's status page; SandboxState the sandbox's
	// state endpoint.
	StatusURL, SandboxState string
	// StatusURLs are every replica's status pages, replica 1's first.
	StatusURLs []string
	// Stdout holds the verdict table.
	Stdout string
}

// startHeldDemo runs `pinsync demo --hold args...` until it holds after
// its verdict, fails the test unless the verdict is CONVERGED, and at
// cleanup interrupts it and checks that it exits 0. The demo's own
// --timeout bounds the wait.
func startHeldDemo(t *testing.T, args ...string) heldDemo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := newLineWatch()
	var stdout syncBuffer
	io := &stdio{In: strings.NewReader(""), Out: &stdout, Err: stderr, Getenv: func(string) string { return "" }}
	rc := make(chan int, 1)
	go func() { rc <- runDemo(ctx, io, append(append([]string{}, args...), "--hold", "--timeout", "2m")) }()
	t.Cleanup(func() {
		cancel()
		if code := <-rc; code != 0 {
			t.Errorf("demo exited %d after the interrupt, want 0\nstderr:\n%s", code, stderr.String())
		}
	})
	select {
	case <-stderr.holding:
	case code := <-rc:
		rc <- code
		t.Fatalf("demo ended (exit %d) instead of holding:\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	h := heldDemo{Stdout: stdout.String()}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if u, ok := strings.CutPrefix(line, "status page: "); ok {
			h.StatusURL = strings.TrimSpace(u)
			h.StatusURLs = append([]string{h.StatusURL}, h.StatusURLs...)
		}
		if strings.HasPrefix(line, "status page of replica ") {
			if _, u, ok := strings.Cut(line, ": "); ok {
				h.StatusURLs = append(h.StatusURLs, strings.TrimSpace(u))
			}
		}
		if _, rest, ok := strings.Cut(line, "Pinterest sandbox state "); ok {
			h.SandboxState, _, _ = strings.Cut(rest, ";")
		}
	}
	if !strings.Contains(h.Stdout, "verdict: CONVERGED") {
		t.Fatalf("the held demo did not converge:\nstdout:\n%s\nstderr:\n%s", h.Stdout, stderr.String())
	}
	if !strings.HasPrefix(h.StatusURL, "http://127.0.0.1:") || !strings.HasPrefix(h.SandboxState, "http://127.0.0.1:") {
		t.Fatalf("status page %q or sandbox state %q not announced on stderr:\n%s", h.StatusURL, h.SandboxState, stderr.String())
	}
	return h
}

// lineWatch is the demo's stderr: it keeps everything and closes holding
// when the "holding:" line arrives.
type lineWatch struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	holding chan struct{}
	held    bool
}

func newLineWatch() *lineWatch { return &lineWatch{holding: make(chan struct{})} }

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if bytes.HasPrefix(w.partial[:i], []byte("holding:")) && !w.held {
			w.held = true
			close(w.holding)
		}
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// requireTool returns the path of a Debian tool, skipping the test when it
// is missing, except under CI (CI=true), where a missing tool fails.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found: install Debian package " + pkg
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: a missing tool is a failure)")
	}
	t.Skip(msg)
	return ""
}
