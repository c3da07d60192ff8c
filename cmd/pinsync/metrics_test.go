package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// documentedMetrics are the series every pinsync exposes once it has
// synced (names as dashboards and alert rules use them).
var documentedMetrics = []string{
	"pinsync_events_total", "pinsync_changes_total", "pinsync_buffered_records", "pinsync_fetch_paused",
	"pinsync_flushes_total", "pinsync_records_per_request", "pinsync_uploads_total",
	"pinsync_upload_duration_seconds", "pinsync_event_to_upload_seconds", "pinsync_breaker_state",
	"pinsync_pinterest_requests_total", "pinsync_pinterest_request_duration_seconds", "pinsync_rate_limited_total",
	"pinsync_token_refreshes_total", "pinsync_credentials_rejected", "pinsync_token_expiry_timestamp_seconds",
	"pinsync_committed_offset", "pinsync_consumer_lag", "pinsync_last_commit_timestamp_seconds",
	"pinsync_dead_letters_total", "pinsync_assigned_partitions", "pinsync_restoring_partitions",
	"pinsync_restored_profiles_total", "pinsync_audience_uploaded_records_total", "pinsync_audience_local_members",
	"pinsync_audience_local_records", "pinsync_changes_dropped_total", "pinsync_out_of_group_seconds",
	"pinsync_partitions_halted", "pinsync_topic_changed", "pinsync_partitions_unhealthy",
	"pinsync_schema_registry_waiting_partitions", "pinsync_schema_registry_errors_total", "pinsync_miskeyed_records_total",
	// pinsync_audience_pinterest_size, pinsync_audience_ready and
	// pinsync_list_created_timestamp_seconds appear after the first audience
	// poll (sync.audience_poll_interval), so a scrape right after
	// convergence may not hold them yet.
}

// TestMetricsPassPromtool scrapes /metrics of a replica of a demo that has
// converged and checks the exposition with `promtool check metrics` (its
// lint included), and that every documented metric is there.
func TestMetricsPassPromtool(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	h := startHeldDemo(t, "--profiles", "1000", "--events", "8000", "--replicas", "2")

	resp, err := http.Get(strings.TrimSuffix(h.StatusURL, "/") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}

	// Bounds a hung promtool; not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	names := exposedNames(body)
	for _, n := range documentedMetrics {
		if !names[n] {
			t.Errorf("metric %s is not exposed", n)
		}
	}
	// Audience series are bounded by audiences × list types × operations:
	// the demo has 12 audiences, 3 types, and adds and removes.
	if n := countSeries(body, "pinsync_audience_uploaded_records_total"); n == 0 || n > 12*3*2 {
		t.Errorf("pinsync_audience_uploaded_records_total has %d series, want 1..72", n)
	}
}

// exposedNames returns the metric families named in # TYPE lines.
func exposedNames(body []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
		}
	}
	return out
}

// countSeries counts the samples of a gauge or counter family.
func countSeries(body []byte, name string) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			n++
		}
	}
	return n
}
