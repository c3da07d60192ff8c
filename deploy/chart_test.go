package deploy

import (
	"path/filepath"
	"reflect"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
)

// monitoringObjects renders the chart with the values that turn on the
// ServiceMonitor and the PrometheusRule, and returns them with the Services.
func monitoringObjects(t *testing.T, objs []object) (*monitoringv1.ServiceMonitor, *monitoringv1.PrometheusRule, []corev1.Service) {
	t.Helper()
	var (
		sm       *monitoringv1.ServiceMonitor
		pr       *monitoringv1.PrometheusRule
		services []corev1.Service
	)
	for _, o := range objs {
		switch v := o.decode(t).(type) {
		case *monitoringv1.ServiceMonitor:
			sm = v
		case *monitoringv1.PrometheusRule:
			pr = v
		case *corev1.Service:
			services = append(services, *v)
		}
	}
	if sm == nil || pr == nil {
		t.Fatal("ci/strimzi-values.yaml renders no ServiceMonitor or no PrometheusRule")
	}
	return sm, pr, services
}

// TestServiceMonitorScrapesTheMetricsService: the ServiceMonitor selects the
// metrics Service alone (not the headless one: each pod would be scraped
// twice) and scrapes a port it has, at /metrics; the scrape annotations are
// gone, so that an annotation-based Prometheus does not scrape again.
func TestServiceMonitorScrapesTheMetricsService(t *testing.T) {
	objs := renderChart(t, "ci/strimzi-values.yaml")
	sm, _, services := monitoringObjects(t, objs)
	sel, err := labels.ValidatedSelectorFromSet(sm.Spec.Selector.MatchLabels)
	if err != nil {
		t.Fatal(err)
	}
	var selected []corev1.Service
	for _, s := range services {
		if sel.Matches(labels.Set(s.Labels)) {
			selected = append(selected, s)
		}
		if len(s.Annotations) != 0 {
			t.Errorf("Service %s carries annotations %v beside a ServiceMonitor", s.Name, s.Annotations)
		}
	}
	if len(selected) != 1 || selected[0].Spec.ClusterIP == corev1.ClusterIPNone {
		t.Fatalf("the ServiceMonitor selects %d Services (the metrics one alone expected)", len(selected))
	}
	for _, ep := range sm.Spec.Endpoints {
		var found bool
		for _, p := range selected[0].Spec.Ports {
			found = found || p.Name == ep.Port
		}
		if !found || ep.Path != "/metrics" {
			t.Errorf("endpoint port %q path %q: the Service %s has no such port, or the path is not /metrics", ep.Port, ep.Path, selected[0].Name)
		}
	}
	m := decodeManifests(t, "chart with ci/strimzi-values.yaml", objs)
	if a := m.statefulSet.Spec.Template.Annotations; a["prometheus.io/scrape"] != "" {
		t.Error("the pods carry prometheus.io/scrape beside a ServiceMonitor")
	}
}

// testedRules are the rule groups of prometheus/pinsync-rules.yaml, the
// file promtool tests.
func testedRules(t *testing.T) []monitoringv1.RuleGroup {
	t.Helper()
	var rf struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(readFile(t, "prometheus/pinsync-rules.yaml"), &rf); err != nil {
		t.Fatal(err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("prometheus/pinsync-rules.yaml has no groups")
	}
	return rf.Groups
}

// TestChartAlertsAreTheTestedRules: the PrometheusRule the chart renders
// holds exactly the groups promtool tests, from the chart directory and
// from the chart packaged as `helm package` makes it (the rules reach the
// chart through a link, which packaging must resolve).
func TestChartAlertsAreTheTestedRules(t *testing.T) {
	want := testedRules(t)
	check := func(t *testing.T, objs []object) {
		_, pr, _ := monitoringObjects(t, objs)
		if !reflect.DeepEqual(pr.Spec.Groups, want) {
			got, _ := yaml.Marshal(pr.Spec.Groups)
			t.Errorf("the PrometheusRule's groups differ from prometheus/pinsync-rules.yaml:\n%s", got)
		}
	}
	t.Run("directory", func(t *testing.T) { check(t, renderChart(t, "ci/strimzi-values.yaml")) })
	t.Run("package", func(t *testing.T) {
		archive, err := chartutil.Save(loadChart(t), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ch, err := loader.LoadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		out, err := renderChartWith(ch, capabilities(t), filepath.Base(archive), valuesFile(t, "ci/strimzi-values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		check(t, parseObjects(t, filepath.Base(archive), []byte(out)))
	})
}
