package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBenchConverges runs a small bench end to end and checks only that
// the pipeline converged to the oracle and every figure is there; speed is
// never asserted.
func TestBenchConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end bench")
	}
	var out, errb bytes.Buffer
	io := &stdio{Out: &out, Err: &errb, Getenv: func(string) string { return "" }}
	code := runBench(context.Background(), io, []string{"--events", "50000", "--state-profiles", "10000", "--flush-interval", "1s", "--json", "--quiet"})
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out.String())
	}
	if rep["converged"] != true {
		t.Errorf("converged = %v", rep["converged"])
	}
	for _, k := range []string{"events", "pipeline_events_per_s", "drain_events_per_s", "decode_hash_events_per_s",
		"naive_events_per_s", "ratio_vs_drain", "ratio_vs_decode_hash", "ratio_vs_naive", "pinterest_calls",
		"min_possible_calls", "records_per_call", "fill_ratio", "latency_p50_s", "latency_p99_s",
		"state_bytes_per_profile", "restore_profiles_per_s", "peak_rss_bytes"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	if rep["events"] != float64(50000) {
		t.Errorf("events = %v, want 50000", rep["events"])
	}
}

// TestBenchShowsTheRekeyingModeBesideThePipeline: --rekey adds the
// pipeline's run with kafka.rekey to the table, beside the plain one, and
// both converge.
func TestBenchShowsTheRekeyingModeBesideThePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end bench")
	}
	var out, errb bytes.Buffer
	io := &stdio{Out: &out, Err: &errb, Getenv: func(string) string { return "" }}
	code := runBench(context.Background(), io, []string{"--events", "20000", "--state-profiles", "1000", "--flush-interval", "1s", "--rekey", "--quiet"})
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, errb.String())
	}
	plain := regexp.MustCompile(`(?m)^ *pinsync pipeline +[1-9][0-9]* *$`)
	rekeyed := regexp.MustCompile(`(?m)^ *pinsync pipeline, kafka\.rekey +[1-9][0-9]* +[0-9.]+ *$`)
	if !plain.MatchString(out.String()) || !rekeyed.MatchString(out.String()) {
		t.Errorf("the table lacks the pipeline's events/s with and without kafka.rekey:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "kafka.rekey: events 20000 in") || !strings.Contains(out.String(), "converged true; pinterest") {
		t.Errorf("no convergence line for kafka.rekey:\n%s", out.String())
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	io := &stdio{Out: &out, Err: &errb, Getenv: func(string) string { return "" }}
	for _, args := range [][]string{
		{"--events", "0"},
		{"--profile-stage", "pipeline"}, // without --cpuprofile
		{"--profile-stage", "everything", "--cpuprofile", filepath.Join(t.TempDir(), "cpu.out")},
	} {
		if code := runBench(context.Background(), io, args); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}
