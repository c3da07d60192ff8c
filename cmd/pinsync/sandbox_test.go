package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
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

func TestSandboxCommandServesStateAndStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	var errb lockedBuffer
	sio := &stdio{In: strings.NewReader(""), Out: pw, Err: &errb, Getenv: func(string) string { return "" }}
	runCtx, stop := context.WithCancel(ctx)
	exit := make(chan int, 1)
	go func() {
		exit <- runSandbox(runCtx, sio, []string{"--listen", "127.0.0.1:0", "--ad-account", "42:ADMIN", "--writes-per-minute", "0"})
		pw.Close()
	}()

	sc := bufio.NewScanner(pr)
	var base string
	var banner []string
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
	if base == "" {
		t.Fatalf("no listening line; stdout %q stderr %q", banner, errb.String())
	}
	if !strings.Contains(strings.Join(banner, "\n"), "42 (ADMIN)") {
		t.Errorf("banner lacks the ad account: %q", banner)
	}

	resp, err := http.Get(base + "/sandbox/v1/state")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("state: %d %v", resp.StatusCode, err)
	}
	for _, k := range []string{"customer_lists", "audiences", "requests"} {
		if _, ok := st[k]; !ok {
			t.Errorf("state lacks %q: %v", k, st)
		}
	}

	stop()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d; stderr %s", code, errb.String())
		}
	case <-ctx.Done():
		t.Fatal("sandbox did not stop after cancel")
	}
}

func TestSandboxCommandRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--match-rate", "2"},
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
