package deploy

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	chartvalues "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// chartDir is the Helm chart; chartRelease the release name the tests
// install it as (the objects are then named pinsync, as in base/);
// kubeVersion the Kubernetes the chart is rendered for: that of the
// k8s.io/api types the objects are decoded into (v0.37: Kubernetes 1.37).
const (
	chartDir     = "helm/pinsync"
	chartRelease = "pinsync"
	kubeVersion  = "v1.37.0"
)

// TestMain quiets Helm's loader, which logs at info level every link it
// follows (files/pinsync-rules.yaml is one, on purpose).
func TestMain(m *testing.M) {
	slog.SetLogLoggerLevel(slog.LevelWarn)
	os.Exit(m.Run())
}

// capabilities are those of a cluster running kubeVersion.
func capabilities(t *testing.T) *common.Capabilities {
	t.Helper()
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	return caps
}

// object is one rendered Kubernetes object.
type object struct {
	source     string // what rendered it
	doc        []byte // its YAML
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

func (o object) String() string { return fmt.Sprintf("%s: %s %s", o.source, o.Kind, o.Metadata.Name) }

// gvk is the object's "apiVersion kind".
func (o object) gvk() string { return o.APIVersion + " " + o.Kind }

// kinds maps every kind the renders may hold to the Go type its objects
// must decode into strictly: the Kubernetes API's own types, the
// Prometheus Operator's, and for KEDA and Strimzi (whose Go types this
// module cannot take in) structs written from their CRDs, with the CRDs'
// enums checked by a validate method.
var kinds = map[string]func() any{
	"v1 ConfigMap":                      func() any { return &corev1.ConfigMap{} },
	"v1 Secret":                         func() any { return &corev1.Secret{} },
	"v1 Service":                        func() any { return &corev1.Service{} },
	"v1 ServiceAccount":                 func() any { return &corev1.ServiceAccount{} },
	"rbac.authorization.k8s.io/v1 Role": func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1 RoleBinding": func() any { return &rbacv1.RoleBinding{} },
	"apps/v1 StatefulSet":                      func() any { return &appsv1.StatefulSet{} },
	"policy/v1 PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"keda.sh/v1alpha1 ScaledObject":            func() any { return &scaledObject{} },
	"monitoring.coreos.com/v1 ServiceMonitor":  func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1 PrometheusRule":  func() any { return &monitoringv1.PrometheusRule{} },
	"kafka.strimzi.io/v1 KafkaTopic":           func() any { return &kafkaTopic{} },
	"kafka.strimzi.io/v1 KafkaUser":            func() any { return &kafkaUser{} },
}

// validator is a hand-written type that checks what its CRD's schema
// checks beyond the fields' names and types.
type validator interface{ validate() error }

// decode decodes o strictly into the Go type of its kind (an unknown or
// misspelt field, a wrong type or an unknown kind fails), then checks its
// metadata as the API server does (name, labels, annotations).
func (o object) decode(t *testing.T) any {
	t.Helper()
	newObj, ok := kinds[o.gvk()]
	if !ok {
		t.Errorf("%s: no Go type for %s: add it to kinds", o, o.gvk())
		return nil
	}
	v := newObj()
	if err := yaml.UnmarshalStrict(o.doc, v); err != nil {
		t.Errorf("%s: strict decoding into %T: %v", o, v, err)
		return nil
	}
	if val, ok := v.(validator); ok {
		if err := val.validate(); err != nil {
			t.Errorf("%s: %v", o, err)
		}
	}
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal(o.doc, &meta); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
	name := apivalidation.NameIsDNSSubdomain
	if o.Kind == "Service" {
		name = apivalidation.NameIsDNS1035Label
	}
	for _, err := range apivalidation.ValidateObjectMeta(&meta.Metadata, false, name, field.NewPath("metadata")) {
		t.Errorf("%s: %v", o, err)
	}
	return v
}

// parseObjects splits a rendered stream into its objects.
func parseObjects(t *testing.T, source string, stream []byte) []object {
	t.Helper()
	var objs []object
	for _, doc := range splitDocuments(stream) {
		o := object{source: source, doc: doc}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("%s: %v\n%s", source, err, doc)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("%s: a document without apiVersion, kind or name:\n%s", source, doc)
		}
		objs = append(objs, o)
	}
	return objs
}

// renderKustomize builds a kustomization as `kubectl kustomize dir` does,
// with kustomize's own Go API.
func renderKustomize(t *testing.T, dir string) []object {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return parseObjects(t, "kustomize build "+dir, out)
}

// valuesFile reads a values file of the chart (e.g. ci/strimzi-values.yaml).
func valuesFile(t *testing.T, name string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal(readFile(t, filepath.Join(chartDir, name)), &v); err != nil {
		t.Fatalf("%s/%s: %v", chartDir, name, err)
	}
	return v
}

// ciValues are the chart's ci/*-values.yaml files, the value sets CI
// renders the chart with (the convention chart-testing follows too).
func ciValues(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no %s/ci/*-values.yaml: %v", chartDir, err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Join("ci", filepath.Base(p)))
	}
	return names
}

// renderChartWith renders ch as `helm template pinsync deploy/helm/pinsync
// -f <values>` does: the chart's kubeVersion is checked, the values are
// merged over values.yaml and validated against values.schema.json, and the
// templates rendered by Helm's engine. It renders strictly: a template that
// reads a value values.yaml does not define fails.
func renderChartWith(ch *chart.Chart, caps *common.Capabilities, source string, values map[string]any) (string, error) {
	if !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return "", fmt.Errorf("chart needs Kubernetes %s, rendering for %s", ch.Metadata.KubeVersion, caps.KubeVersion.String())
	}
	vals, err := chartvalues.ToRenderValuesWithSchemaValidation(ch, values,
		common.ReleaseOptions{Name: chartRelease, Namespace: "pinsync", IsInstall: true}, caps, false)
	if err != nil {
		return "", err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, vals)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if strings.HasSuffix(name, "NOTES.txt") || strings.TrimSpace(files[name]) == "" {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s (%s)\n%s\n", name, source, files[name])
	}
	return b.String(), nil
}

// loadChart loads the chart directory as Helm does (following links).
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.LoadDir(chartDir)
	if err != nil {
		t.Fatalf("loading %s: %v", chartDir, err)
	}
	return ch
}

// renderChart renders the chart with one of its values files.
func renderChart(t *testing.T, valuesName string) []object {
	t.Helper()
	out, err := renderChartWith(loadChart(t), capabilities(t), valuesName, valuesFile(t, valuesName))
	if err != nil {
		t.Fatalf("helm template with %s: %v", valuesName, err)
	}
	return parseObjects(t, "chart with "+valuesName, []byte(out))
}

// renders are every set of objects deploy/ renders: the kustomize base,
// the Strimzi resources and the chart with each of its CI values files.
func renders(t *testing.T) map[string][]object {
	t.Helper()
	r := map[string][]object{
		"base":    renderKustomize(t, "base"),
		"strimzi": renderKustomize(t, "strimzi"),
	}
	for _, v := range ciValues(t) {
		r["chart with "+v] = renderChart(t, v)
	}
	return r
}

func TestEveryRenderedObjectDecodesStrictly(t *testing.T) {
	for name, objs := range renders(t) {
		t.Run(name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, o := range objs {
				id := o.Kind + " " + o.Metadata.Name
				if seen[id] {
					t.Errorf("%s: rendered twice", o)
				}
				seen[id] = true
				o.decode(t)
			}
		})
	}
}

// TestChartLints runs Helm's linter (helm lint --strict) with each CI
// values file: Chart.yaml, values against the schema, the templates.
func TestChartLints(t *testing.T) {
	for _, v := range ciValues(t) {
		res := lint.RunAll(chartDir, valuesFile(t, v), "pinsync", lint.WithKubeVersion(&capabilities(t).KubeVersion))
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint with %s: %s", v, m.Error())
			}
		}
	}
}

// TestChartRefusesWhatCannotWork: a misspelt value, a missing credential
// and a replica count that is not a number are refused when rendering,
// with the value named.
func TestChartRefusesWhatCannotWork(t *testing.T) {
	ch := loadChart(t)
	secret := valuesFile(t, "ci/created-secret-values.yaml")
	with := func(extra map[string]any) map[string]any { return chartvalues.MergeTables(extra, secret) }
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"a misspelt value", with(map[string]any{"replicaCont": 3}), "replicaCont"},
		{"a misspelt nested value", with(map[string]any{"keda": map[string]any{"enable": true}}), "enable"},
		{"no app secret and no existing Secret", map[string]any{"secret": map[string]any{"appId": "1", "tokenKey": "k"}}, "secret.appSecret is required unless secret.existingSecret"},
		{"replicas as text", with(map[string]any{"replicaCount": "two"}), "replicaCount"},
		{"a lag threshold as a number", with(map[string]any{"keda": map[string]any{"lagThreshold": 5000}}), "lagThreshold"},
	} {
		_, err := renderChartWith(ch, capabilities(t), tc.name, tc.values)
		if err == nil {
			t.Errorf("%s: rendered", tc.name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: the error does not name %q: %v", tc.name, tc.want, err)
		}
	}
}

// helmOnlyLabels are the labels the chart adds to what base/ labels: the
// release's, which kustomize cannot know.
var helmOnlyLabels = []string{"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}

// normalize drops from a decoded object what the chart adds by design: the
// release labels (in metadata, selectors and label selectors alike) and the
// checksum annotations that restart the pods when the config changes; and
// decodes a ConfigMap's pinsync.yaml, so that the configuration is compared
// as data, not as text.
func normalize(t *testing.T, v any, parent string) any {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			switch {
			case (parent == "labels" || parent == "matchLabels" || parent == "selector") && slices.Contains(helmOnlyLabels, k):
			case parent == "annotations" && strings.HasPrefix(k, "checksum/"):
			case parent == "data" && k == filepath.Base(configPath):
				var cfg any
				if err := yaml.Unmarshal([]byte(e.(string)), &cfg); err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				out[k] = cfg
			default:
				out[k] = normalize(t, e, k)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(t, e, parent)
		}
		return out
	}
	return v
}

// TestChartRendersTheBase: the chart, with the values of
// ci/base-values.yaml, renders exactly the objects of base/ (kustomize
// build), but for the release labels and checksum annotations; the
// configuration file is compared as data. So the two cannot drift apart:
// a change to one must be made to the other.
func TestChartRendersTheBase(t *testing.T) {
	index := func(objs []object) map[string]any {
		m := map[string]any{}
		for _, o := range objs {
			var v any
			if err := yaml.Unmarshal(o.doc, &v); err != nil {
				t.Fatalf("%s: %v", o, err)
			}
			m[o.Kind+" "+o.Metadata.Name] = normalize(t, v, "")
		}
		return m
	}
	base := index(renderKustomize(t, "base"))
	chart := index(renderChart(t, "ci/base-values.yaml"))
	if got, want := slices.Sorted(maps.Keys(chart)), slices.Sorted(maps.Keys(base)); !slices.Equal(got, want) {
		t.Fatalf("the chart renders %q, base/ holds %q", got, want)
	}
	for id, b := range base {
		for _, d := range differences(chart[id], b, "") {
			t.Errorf("%s %s", id, d)
		}
	}
}

// differences lists where two decoded documents differ, by path.
func differences(chart, base any, path string) []string {
	cm, ok1 := chart.(map[string]any)
	bm, ok2 := base.(map[string]any)
	if ok1 && ok2 {
		var ds []string
		keys := map[string]bool{}
		for k := range cm {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			ds = append(ds, differences(cm[k], bm[k], path+"."+k)...)
		}
		return ds
	}
	cl, ok1 := chart.([]any)
	bl, ok2 := base.([]any)
	if ok1 && ok2 && len(cl) == len(bl) {
		var ds []string
		for i := range cl {
			ds = append(ds, differences(cl[i], bl[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return ds
	}
	if reflect.DeepEqual(chart, base) {
		return nil
	}
	cy, _ := yaml.Marshal(chart)
	by, _ := yaml.Marshal(base)
	return []string{fmt.Sprintf("%s: the chart has %s, base/ has %s", path, strings.TrimSpace(string(cy)), strings.TrimSpace(string(by)))}
}
