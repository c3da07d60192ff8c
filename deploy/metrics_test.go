package deploy

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// knownMetrics are the metric names pinsync exports (the shared design's
// list). Rules and dashboards may use nothing else of pinsync's.
var knownMetrics = []string{
	"pinsync_events_total",
	"pinsync_changes_total",
	"pinsync_buffered_records",
	"pinsync_buffered_bytes",
	"pinsync_list_parked",
	"pinsync_list_rebuilds_total",
	"pinsync_list_rebuild_attempts",
	"pinsync_list_rebuild_progress",
	"pinsync_fetch_paused",
	"pinsync_flushes_total",
	"pinsync_records_per_request",
	"pinsync_uploads_total",
	"pinsync_upload_duration_seconds",
	"pinsync_event_to_upload_seconds",
	"pinsync_breaker_state",
	"pinsync_pinterest_requests_total",
	"pinsync_rate_limited_total",
	"pinsync_token_refreshes_total",
	"pinsync_credentials_rejected",
	"pinsync_token_expiry_timestamp_seconds",
	"pinsync_committed_offset",
	"pinsync_consumer_lag",
	"pinsync_last_commit_timestamp_seconds",
	"pinsync_dead_letters_total",
	"pinsync_assigned_partitions",
	"pinsync_restoring_partitions",
	"pinsync_restored_profiles_total",
	"pinsync_audience_local_members",
	"pinsync_audience_local_records",
	"pinsync_list_created_timestamp_seconds",
	"pinsync_audience_uploaded_records_total",
	"pinsync_audience_pinterest_size",
	"pinsync_audience_ready",
	"pinsync_out_of_group_seconds",
	"pinsync_partitions_halted",
	"pinsync_topic_changed",
	"pinsync_changes_malformed_total",
	"pinsync_partitions_unhealthy",
	"pinsync_schema_registry_waiting_partitions",
	"pinsync_schema_registry_errors_total",
	"pinsync_miskeyed_records_total",
}

// knownHistograms are the histograms among knownMetrics: queries use their
// _bucket, _sum and _count series.
var knownHistograms = []string{
	"pinsync_records_per_request",
	"pinsync_upload_duration_seconds",
	"pinsync_event_to_upload_seconds",
}

var metricName = regexp.MustCompile(`\bpinsync_[a-zA-Z0-9_]+`)

// metricsIn returns the pinsync metric names an expression mentions, and
// those among them that pinsync does not export.
func metricsIn(expr string) (names, unknown []string) {
	for _, n := range metricName.FindAllString(expr, -1) {
		names = append(names, n)
		if slices.Contains(knownMetrics, n) {
			continue
		}
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suf)
		}
		if base == n || !slices.Contains(knownHistograms, base) {
			unknown = append(unknown, n)
		}
	}
	return names, unknown
}

func TestMetricsInFindsUnknownNames(t *testing.T) {
	for _, tc := range []struct {
		expr    string
		unknown []string
	}{
		{`sum(rate(pinsync_events_total[5m]))`, nil},
		{`histogram_quantile(0.9, rate(pinsync_records_per_request_bucket[5m]))`, nil},
		{`rate(pinsync_event_total[5m])`, []string{"pinsync_event_total"}},
		{`pinsync_consumer_lag_bucket`, []string{"pinsync_consumer_lag_bucket"}},
		{`pinsync_uploads_total / pinsync_upload_total`, []string{"pinsync_upload_total"}},
	} {
		if _, got := metricsIn(tc.expr); !slices.Equal(got, tc.unknown) {
			t.Errorf("metricsIn(%q) unknown = %q, want %q", tc.expr, got, tc.unknown)
		}
	}
}

// dashboardPanel is the part of a Grafana panel the tests read.
type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *datasourceRef   `json:"datasource"`
	Targets    []panelTarget    `json:"targets"`
	Panels     []dashboardPanel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panelTarget struct {
	Datasource *datasourceRef `json:"datasource"`
	Expr       string         `json:"expr"`
}

type dashboard struct {
	UID        string           `json:"uid"`
	Title      string           `json:"title"`
	Panels     []dashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, "grafana/pinsync-dashboard.json"), &d); err != nil {
		t.Fatalf("grafana/pinsync-dashboard.json: %v", err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []dashboardPanel) []dashboardPanel {
	var out []dashboardPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs returns every query of every panel, by panel title.
func dashboardExprs(t *testing.T, d dashboard) map[string][]string {
	t.Helper()
	exprs := map[string][]string{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs[p.Title] = append(exprs[p.Title], tg.Expr)
		}
	}
	return exprs
}

func TestDashboardUsesOnlyPinsyncMetrics(t *testing.T) {
	d := loadDashboard(t)
	used := map[string]bool{}
	for title, exprs := range dashboardExprs(t, d) {
		for _, e := range exprs {
			names, unknown := metricsIn(e)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q uses no pinsync metric", title, e)
			}
			if len(unknown) > 0 {
				t.Errorf("panel %q: query %q uses unknown metrics %q", title, e, unknown)
			}
			for _, n := range names {
				used[n] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			if _, unknown := metricsIn(q["query"].(string)); len(unknown) > 0 {
				t.Errorf("variable %s uses unknown metrics %q", v.Name, unknown)
			}
		}
	}
	// The panels the dashboard promises.
	for _, n := range []string{
		"pinsync_events_total", "pinsync_consumer_lag", "pinsync_uploads_total",
		"pinsync_records_per_request_bucket", "pinsync_breaker_state",
		"pinsync_audience_pinterest_size", "pinsync_audience_local_members", "pinsync_audience_local_records",
		"pinsync_dead_letters_total", "pinsync_rate_limited_total",
	} {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}

func TestDashboardDatasourceIsTemplated(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	var dsVar string
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("no datasource variable of type prometheus")
	}
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != dsVar {
			t.Errorf("panel %q datasource is not %s", p.Title, dsVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && tg.Datasource.UID != dsVar {
				t.Errorf("panel %q has a query on datasource %q", p.Title, tg.Datasource.UID)
			}
		}
	}
}

// ruleFile is a Prometheus rule file, decoded strictly.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []struct {
			Alert       string            `json:"alert,omitempty"`
			Record      string            `json:"record,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// ruleTestFile is a promtool rule test file (the parts the tests read).
type ruleTestFile struct {
	Tests []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	unmarshalStrict(t, "prometheus/pinsync-rules.yaml", readFile(t, "prometheus/pinsync-rules.yaml"), &rf)
	return rf
}

// recordedName is the name of a recording rule of pinsync's
// (level:metric:operations).
var recordedName = regexp.MustCompile(`\bpinsync:[a-zA-Z0-9_:]+`)

func TestAlertRulesUseKnownMetricsAndDocumentThemselves(t *testing.T) {
	rf := loadRules(t)
	var alerts []string
	recorded := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			names, unknown := metricsIn(r.Expr)
			uses := recordedName.FindAllString(r.Expr, -1)
			for _, n := range uses {
				if !recorded[n] {
					t.Errorf("rule %s%s uses %s before a rule records it", r.Alert, r.Record, n)
				}
			}
			if r.Record != "" {
				if !recordedName.MatchString(r.Record) {
					t.Errorf("recording rule %s is not named pinsync:...", r.Record)
				}
				recorded[r.Record] = true
			}
			if len(names) == 0 && len(uses) == 0 {
				t.Errorf("rule %s%s uses no pinsync metric", r.Alert, r.Record)
			}
			if len(unknown) > 0 {
				t.Errorf("rule %s%s uses unknown metrics %q", r.Alert, r.Record, unknown)
			}
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
			if !strings.HasSuffix(r.Annotations["runbook_url"], "#"+strings.ToLower(r.Alert)) {
				t.Errorf("alert %s runbook_url %q does not point at its own section", r.Alert, r.Annotations["runbook_url"])
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s severity %q, want warning or critical", r.Alert, s)
			}
		}
	}
	sort.Strings(alerts)
	want := []string{"PinsyncAudienceParked", "PinsyncBreakerOpen", "PinsyncChangesMalformed", "PinsyncCommitsStalled", "PinsyncConsumerLagGrowing",
		"PinsyncCredentialsRejected", "PinsyncDeadLetters", "PinsyncListMatchRateLow", "PinsyncListMatchesNobody",
		"PinsyncMisKeyedInput", "PinsyncOutOfGroup", "PinsyncPartitionHalted", "PinsyncPartitionUnhealthy", "PinsyncRateLimited",
		"PinsyncRebuildFailing", "PinsyncSchemaRegistryUnavailable", "PinsyncTopicChanged"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts = %q, want %q", alerts, want)
	}
}

func TestEveryAlertIsTestedFiringAndSilent(t *testing.T) {
	var tf ruleTestFile
	if err := yaml.Unmarshal(readFile(t, "prometheus/pinsync-rules.test.yaml"), &tf); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if !fires[r.Alert] {
				t.Errorf("no test expects %s to fire", r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("no test expects %s to stay silent", r.Alert)
			}
		}
	}
}
