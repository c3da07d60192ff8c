package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSandboxCommand runs `pinsync sandbox --listen 127.0.0.1:0 args...`
// until its banner is out; stop cancels it and returns its exit status.
func startSandboxCommand(t *testing.T, args ...string) (base string, banner []string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	pr, pw := io.Pipe()
	var errb lockedBuffer
	sio := &stdio{In: strings.NewReader(""), Out: pw, Err: &errb, Getenv: func(string) string { return "" }}
	exit := make(chan int, 1)
	go func() {
		exit <- runSandbox(ctx, sio, append([]string{"--listen", "127.0.0.1:0"}, args...))
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		banner = append(banner, line)
		if strings.HasPrefix(line, "listening on ") {
			base = strings.TrimPrefix(line, "listening on ")
		}
		if strings.Contains(line, "/sandbox/v1/state") {
			break
		}
	}
	go io.Copy(io.Discard, pr) // keep the pipe drained
	stop = func() int {
		cancel()
		select {
		case code := <-exit:
			if code != 0 {
				t.Errorf("exit %d; stderr %s", code, errb.String())
			}
			return code
		case <-time.After(10 * time.Second):
			t.Fatal("sandbox did not stop after cancel")
			return -1
		}
	}
	if base == "" {
		stop()
		t.Fatalf("no listening line; stdout %q stderr %q", banner, errb.String())
	}
	return base, banner, stop
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
}

func TestSandboxCommandServesStateAndStopsOnCancel(t *testing.T) {
	base, banner, stop := startSandboxCommand(t, "--ad-account", "42:ADMIN", "--writes-per-minute", "0")
	if !strings.Contains(strings.Join(banner, "\n"), "42 (ADMIN)") {
		t.Errorf("banner lacks the ad account: %q", banner)
	}
	var st map[string]any
	getJSON(t, base+"/sandbox/v1/state", &st)
	for _, k := range []string{"customer_lists", "audiences", "requests"} {
		if _, ok := st[k]; !ok {
			t.Errorf("state lacks %q: %v", k, st)
		}
	}
	// The default population: Pinterest users among the profiles pinsync
	// produce generates, of every type.
	pop, _ := st["population"].(map[string]any)
	if pop["EMAIL"] == nil || pop["IDFA"] == nil || pop["MAID"] == nil || pop["EMAIL"].(float64) < 10000 {
		t.Errorf("default population %v", st["population"])
	}
	if stop() != 0 {
		t.Error("the sandbox did not stop cleanly")
	}
}

func TestSandboxCommandRejectsBadFlags(t *testing.T) {
	badPopulation := filepath.Join(t.TempDir(), "population.tsv")
	if err := os.WriteFile(badPopulation, []byte("email\tjane@example.com\nidfa\tnot-a-device\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--population-share", "2"},
		{"--population", filepath.Join(t.TempDir(), "missing")},
		{"--population", badPopulation},
		{"--ad-account", "abc"},
		{"--error-status", "404", "--error-rate", "0.1"},
		{"extra"},
	} {
		var out, errb bytes.Buffer
		sio := &stdio{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) string { return "" }}
		if code := runSandbox(context.Background(), sio, append([]string{"--listen", "127.0.0.1:0"}, args...)); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestSandboxCommandMatchesItsPopulationFile: with --population the lists
// match those users only, hashed as Pinterest does (an IDFA held in lower
// case matches as its upper-case hash).
func TestSandboxCommandMatchesItsPopulationFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "population.tsv")
	if err := os.WriteFile(file, []byte("# two users\nidfa\t 6d92078a-8246-4ba4-ae5b-76104861e7dc\nemail\tJane@Example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _, stop := startSandboxCommand(t, "--population", file)
	defer stop()
	var st struct {
		Population map[string]int `json:"population"`
	}
	getJSON(t, base+"/sandbox/v1/state", &st)
	if st.Population["IDFA"] != 1 || st.Population["EMAIL"] != 1 || len(st.Population) != 2 {
		t.Errorf("population %v, want one IDFA and one EMAIL user", st.Population)
	}
}
