package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// eventsPartitions is the partition count of the events topic (pinsync.events):
// the most consumers that can do useful work.
const eventsPartitions = 12

// configPath is where the StatefulSet mounts the ConfigMap's file and where
// `pinsync run --config` must point.
const configPath = "/etc/pinsync/pinsync.yaml"

// kustomization is the part of a kustomization.yaml these manifests use.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels,omitempty"`
	Resources []string         `json:"resources"`
	Images    []kustomizeImage `json:"images,omitempty"`
}

// kustomizeImage is one entry of a kustomization's images.
type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
}

// scaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject these
// manifests use; KEDA's own types would pull in half of Kubernetes.
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type string `json:"type"`
			Name string `json:"name,omitempty"`
			// KEDA wants every metadata value as a string: a map of
			// strings makes an unquoted number or bool fail to decode.
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// kedaKafkaKeys are the metadata keys KEDA's kafka scaler reads; a misspelt
// key would be silently ignored by KEDA.
var kedaKafkaKeys = []string{
	"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
	"offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
	"limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version", "partitionLimitation",
	"sasl", "tls", "unsafeSsl",
}

// manifests is the objects of one render (the kustomize base, or the chart
// with one values file), decoded strictly.
type manifests struct {
	source      string
	statefulSet appsv1.StatefulSet
	configMap   corev1.ConfigMap
	secret      *corev1.Secret // nil: a Secret made out of band
	services    []corev1.Service
	pdb         *policyv1.PodDisruptionBudget
	// serviceAccount, role and roleBinding: what the pods may ask the
	// Kubernetes API (nil: nothing).
	serviceAccount *corev1.ServiceAccount
	role           *rbacv1.Role
	roleBinding    *rbacv1.RoleBinding
	scaledObject   *scaledObject
	scaledDoc      []byte // the ScaledObject as rendered
}

// splitDocuments splits a multi-document YAML stream at its "---" lines.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func unmarshalStrict(t *testing.T, name string, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s: strict decoding into %T: %v", name, v, err)
	}
}

// decodeManifests decodes a render's pinsync objects strictly; it fails
// the test on an object pinsync's deployment does not have, or on a
// second one of a kind that comes once.
func decodeManifests(t *testing.T, source string, objs []object) *manifests {
	t.Helper()
	m := &manifests{source: source}
	seen := map[string]int{}
	for _, o := range objs {
		seen[o.gvk()]++
		switch v := o.decode(t).(type) {
		case *appsv1.StatefulSet:
			m.statefulSet = *v
		case *corev1.ConfigMap:
			m.configMap = *v
		case *corev1.Secret:
			m.secret = v
		case *corev1.Service:
			m.services = append(m.services, *v)
		case *policyv1.PodDisruptionBudget:
			m.pdb = v
		case *corev1.ServiceAccount:
			m.serviceAccount = v
		case *rbacv1.Role:
			m.role = v
		case *rbacv1.RoleBinding:
			m.roleBinding = v
		case *scaledObject:
			m.scaledObject, m.scaledDoc = v, o.doc
		case nil:
		default:
			if o.Kind != "ServiceMonitor" && o.Kind != "PrometheusRule" {
				t.Fatalf("%s: not part of pinsync's deployment", o)
			}
		}
	}
	for kind, n := range seen {
		if n != 1 && kind != "v1 Service" {
			t.Errorf("%s: %d objects of %s, want 1", source, n, kind)
		}
	}
	for _, kind := range []string{"apps/v1 StatefulSet", "v1 ConfigMap", "v1 Service"} {
		if seen[kind] == 0 {
			t.Fatalf("%s: no %s", source, kind)
		}
	}
	return m
}

// loadManifests decodes base/ as kustomize renders it.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	return decodeManifests(t, "base", renderKustomize(t, "base"))
}

// chartManifests decodes the chart rendered with each CI values file.
func chartManifests(t *testing.T) []*manifests {
	t.Helper()
	var ms []*manifests
	for _, v := range ciValues(t) {
		ms = append(ms, decodeManifests(t, "chart with "+v, renderChart(t, v)))
	}
	return ms
}

// forEachRender runs check on the base and on every render of the chart.
func forEachRender(t *testing.T, check func(t *testing.T, m *manifests)) {
	t.Helper()
	for _, m := range append([]*manifests{loadManifests(t)}, chartManifests(t)...) {
		t.Run(m.source, func(t *testing.T) { check(t, m) })
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// container returns the pinsync container of the StatefulSet.
func (m *manifests) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := m.statefulSet.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("StatefulSet has %d containers, want 1", len(cs))
	}
	return cs[0]
}

// httpPort returns the container's port named "http".
func (m *manifests) httpPort(t *testing.T) corev1.ContainerPort {
	t.Helper()
	for _, p := range m.container(t).Ports {
		if p.Name == "http" {
			return p
		}
	}
	t.Fatal("the pinsync container has no port named http")
	return corev1.ContainerPort{}
}

// config returns the pinsync.yaml held by the ConfigMap, decoded strictly.
func (m *manifests) config(t *testing.T) pinsyncConfig {
	t.Helper()
	data, ok := m.configMap.Data[filepath.Base(configPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", m.configMap.Name, filepath.Base(configPath))
	}
	return decodeConfig(t, "ConfigMap "+m.configMap.Name, []byte(data))
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	var k kustomization
	unmarshalStrict(t, "base/kustomization.yaml", readFile(t, "base/kustomization.yaml"), &k)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}
	paths, err := filepath.Glob("base/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, p := range paths {
		if filepath.Base(p) != "kustomization.yaml" {
			files = append(files, filepath.Base(p))
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	if !slices.Equal(got, files) {
		t.Errorf("kustomization resources = %v, files in base/ = %v", got, files)
	}
	var sts appsv1.StatefulSet
	unmarshalStrict(t, "base/statefulset.yaml", readFile(t, "base/statefulset.yaml"), &sts)
	for _, c := range sts.Spec.Template.Spec.Containers {
		if !slices.ContainsFunc(k.Images, func(i kustomizeImage) bool { return i.Name == c.Image }) {
			t.Errorf("kustomization images has no entry for the container image %q", c.Image)
		}
	}
	for _, l := range k.Labels {
		if l.IncludeSelectors {
			t.Error("kustomization labels must not change selectors (a StatefulSet's selector is immutable)")
		}
	}
}

func TestSelectorsMatchThePods(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		pod := m.statefulSet.Spec.Template.Labels
		matches := func(sel map[string]string) bool {
			if len(sel) == 0 {
				return false
			}
			for k, v := range sel {
				if pod[k] != v {
					return false
				}
			}
			return true
		}
		if !matches(m.statefulSet.Spec.Selector.MatchLabels) {
			t.Errorf("StatefulSet selector %v does not match its pod labels %v", m.statefulSet.Spec.Selector.MatchLabels, pod)
		}
		for _, s := range m.services {
			if !matches(s.Spec.Selector) {
				t.Errorf("Service %s selector %v does not match the pod labels %v", s.Name, s.Spec.Selector, pod)
			}
		}
		if m.pdb == nil {
			t.Fatal("no PodDisruptionBudget")
		}
		if m.pdb.Spec.Selector == nil || !matches(m.pdb.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget selector does not match the pod labels %v", pod)
		}
		if m.pdb.Spec.MaxUnavailable == nil && m.pdb.Spec.MinAvailable == nil {
			t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
		}
	})
}

func TestServicesTargetTheContainerPort(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		port := m.httpPort(t)
		var headless bool
		for _, s := range m.services {
			if len(s.Spec.Ports) == 0 {
				t.Errorf("Service %s has no ports", s.Name)
			}
			for _, p := range s.Spec.Ports {
				switch p.TargetPort.Type {
				case intstr.String:
					if p.TargetPort.StrVal != port.Name {
						t.Errorf("Service %s port %s targets %q, the container port is named %q", s.Name, p.Name, p.TargetPort.StrVal, port.Name)
					}
				case intstr.Int:
					if p.TargetPort.IntVal != port.ContainerPort {
						t.Errorf("Service %s port %s targets %d, the container listens on %d", s.Name, p.Name, p.TargetPort.IntVal, port.ContainerPort)
					}
				}
			}
			if s.Name == m.statefulSet.Spec.ServiceName {
				headless = s.Spec.ClusterIP == corev1.ClusterIPNone
			}
		}
		if !headless {
			t.Errorf("the StatefulSet's serviceName %q is not a headless Service in base/", m.statefulSet.Spec.ServiceName)
		}
	})
}

func TestProbesUseHealthzAndReadyzOnTheHTTPPort(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		c := m.container(t)
		port := m.httpPort(t)
		for _, tc := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"liveness", c.LivenessProbe, "/healthz"},
			{"readiness", c.ReadinessProbe, "/readyz"},
			{"startup", c.StartupProbe, "/healthz"},
		} {
			if tc.probe == nil {
				if tc.name != "startup" {
					t.Errorf("no %s probe", tc.name)
				}
				continue
			}
			g := tc.probe.HTTPGet
			if g == nil {
				t.Errorf("%s probe is not an HTTP GET", tc.name)
				continue
			}
			if g.Path != tc.path {
				t.Errorf("%s probe path = %q, want %q", tc.name, g.Path, tc.path)
			}
			if (g.Port.Type == intstr.String && g.Port.StrVal != port.Name) ||
				(g.Port.Type == intstr.Int && g.Port.IntVal != port.ContainerPort) {
				t.Errorf("%s probe port = %s, want the http port (%d)", tc.name, g.Port.String(), port.ContainerPort)
			}
		}
	})
}

func TestConfigListensOnTheContainerPort(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		cfg := m.config(t)
		_, p, err := net.SplitHostPort(cfg.HTTP.Listen)
		if err != nil {
			t.Fatalf("http.listen %q: %v", cfg.HTTP.Listen, err)
		}
		if want := strconv.Itoa(int(m.httpPort(t).ContainerPort)); p != want {
			t.Errorf("http.listen port = %s, container port = %s", p, want)
		}
	})
}

func TestContainerRunsTheMountedConfig(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		c := m.container(t)
		if want := []string{"run", "--config", configPath}; !slices.Equal(c.Args, want) {
			t.Errorf("container args = %q, want %q", c.Args, want)
		}
		if len(c.Command) != 0 {
			t.Errorf("container command = %q: the image's entrypoint is /pinsync", c.Command)
		}
		var mounted bool
		for _, vm := range c.VolumeMounts {
			if vm.MountPath != filepath.Dir(configPath) {
				continue
			}
			for _, v := range m.statefulSet.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == m.configMap.Name {
					mounted = true
				}
			}
		}
		if !mounted {
			t.Errorf("ConfigMap %s is not mounted at %s", m.configMap.Name, filepath.Dir(configPath))
		}
	})
}

func TestEnvNamesAreKnownAndSecretsExist(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		known := knownEnvOverrides()
		var instanceID, advertised bool
		credentials := map[string]bool{}
		for _, e := range m.container(t).Env {
			if strings.HasPrefix(e.Name, "PINSYNC_") {
				if !known[e.Name] {
					t.Errorf("env %s is not a pinsync config override", e.Name)
				}
			} else if e.Name != "GOMEMLIMIT" {
				t.Errorf("env %s: neither a PINSYNC_ override nor a Go runtime setting", e.Name)
			}
			if e.Name == "PINSYNC_KAFKA_INSTANCE_ID" {
				instanceID = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
			}
			if e.Name == "PINSYNC_HTTP_ADVERTISE" {
				advertised = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP"
			}
			// The app's credentials and the token key come from one Secret:
			// the one rendered, or one made out of band.
			if ref := secretRef(e); ref != nil && strings.HasPrefix(e.Name, "PINSYNC_PINTEREST_") {
				credentials[ref.Name] = true
				if m.secret == nil {
					continue
				}
				if ref.Name != m.secret.Name {
					t.Errorf("env %s refers to Secret %s, the render has %s", e.Name, ref.Name, m.secret.Name)
				} else if _, ok := m.secret.StringData[ref.Key]; !ok {
					t.Errorf("env %s refers to key %s, missing from Secret %s", e.Name, ref.Key, m.secret.Name)
				}
			}
		}
		if len(credentials) != 1 {
			t.Errorf("the Pinterest credentials come from the Secrets %v, want one", credentials)
		}
		if !instanceID {
			t.Error("PINSYNC_KAFKA_INSTANCE_ID must come from the pod name (fieldRef metadata.name)")
		}
		if !advertised {
			t.Error("PINSYNC_HTTP_ADVERTISE must come from the pod's IP (fieldRef status.podIP): the other pods find its /status there")
		}
		if l := m.statefulSet.Spec.Template.Spec.EnableServiceLinks; l == nil || *l {
			t.Error("enableServiceLinks must be false: service links inject PINSYNC_* variables for the pinsync Service")
		}
	})
}

// secretRef returns where e comes from in a Secret, or nil.
func secretRef(e corev1.EnvVar) *corev1.SecretKeySelector {
	if e.ValueFrom == nil {
		return nil
	}
	return e.ValueFrom.SecretKeyRef
}

func TestSecretIsAMarkedTemplate(t *testing.T) {
	m := loadManifests(t)
	if m.secret == nil {
		t.Fatal("base/ has no Secret template")
	}
	if len(m.secret.Data) != 0 {
		t.Error("the Secret template must use stringData only")
	}
	if len(m.secret.StringData) == 0 {
		t.Fatal("the Secret template has no keys")
	}
	for k, v := range m.secret.StringData {
		if !strings.HasPrefix(v, "REPLACE_ME") {
			t.Errorf("Secret key %s holds a value not marked REPLACE_ME: templates must not carry real secrets", k)
		}
	}
}

func TestTerminationGraceExceedsShutdownGrace(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		cfg := m.config(t)
		grace := 30 * time.Second // sync.shutdown_grace default
		if cfg.Sync.ShutdownGrace != "" {
			grace = mustDuration(t, "sync.shutdown_grace", cfg.Sync.ShutdownGrace)
		}
		tg := m.statefulSet.Spec.Template.Spec.TerminationGracePeriodSeconds
		if tg == nil {
			t.Fatal("terminationGracePeriodSeconds is not set (the default, 30s, is not above the flush grace)")
		}
		// The pod needs the grace plus time to commit and leave the group.
		if got := time.Duration(*tg) * time.Second; got < grace+10*time.Second {
			t.Errorf("terminationGracePeriodSeconds = %s, want at least shutdown_grace (%s) + 10s", got, grace)
		}
	})
}

func TestPodIsLockedDown(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		spec := m.statefulSet.Spec.Template.Spec
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Error("pod securityContext.runAsNonRoot must be true")
		}
		if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != imageUID(t) {
			t.Errorf("pod securityContext.runAsUser must be the image's user (%d)", imageUID(t))
		}
		csc := m.container(t).SecurityContext
		if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Error("container readOnlyRootFilesystem must be true")
		}
		if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Error("container allowPrivilegeEscalation must be false")
		}
		res := m.container(t).Resources
		if res.Requests.Memory().IsZero() || res.Requests.Cpu().IsZero() || res.Limits.Memory().IsZero() {
			t.Error("container needs cpu and memory requests and a memory limit")
		}
		cfg := m.config(t)
		if k := cfg.Pinterest.TokenStore.Kind; k == "file" || k == "" {
			dir := filepath.Dir(cfg.Pinterest.TokenStore.Path)
			if !slices.ContainsFunc(m.container(t).VolumeMounts, func(vm corev1.VolumeMount) bool {
				return !vm.ReadOnly && strings.HasPrefix(dir, vm.MountPath)
			}) {
				t.Errorf("token_store.path %s is not on a writable volume (the root filesystem is read-only)", cfg.Pinterest.TokenStore.Path)
			}
		}
	})
}

// imageUID returns the numeric user of the Dockerfile's final stage.
func imageUID(t *testing.T) int64 {
	t.Helper()
	var uid int64 = -1
	for _, l := range strings.Split(string(readFile(t, "../Dockerfile")), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "USER" {
			u, _, _ := strings.Cut(f[1], ":")
			n, err := strconv.ParseInt(u, 10, 64)
			if err != nil {
				t.Fatalf("Dockerfile USER %s is not numeric: Kubernetes cannot check runAsNonRoot", f[1])
			}
			uid = n
		}
	}
	if uid <= 0 {
		t.Fatal("Dockerfile has no non-root numeric USER")
	}
	return uid
}

func TestDockerfileExposesTheContainerPort(t *testing.T) {
	m := loadManifests(t)
	want := fmt.Sprintf("EXPOSE %d", m.httpPort(t).ContainerPort)
	if !bytes.Contains(readFile(t, "../Dockerfile"), []byte(want+"\n")) {
		t.Errorf("Dockerfile lacks %q", want)
	}
}

func TestKEDAScalesOnPinsyncsGroupAndTopic(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		so := m.scaledObject
		r := m.statefulSet.Spec.Replicas
		if r != nil && *r > eventsPartitions {
			t.Errorf("StatefulSet replicas %d > %d partitions", *r, eventsPartitions)
		}
		switch {
		case so == nil && r == nil:
			t.Fatal("neither a ScaledObject nor spec.replicas")
		case so == nil:
			return
		case r != nil:
			t.Error("spec.replicas is set beside a ScaledObject: each apply would reset KEDA's count")
		}
		cfg := m.config(t)
		ref := so.Spec.ScaleTargetRef
		if ref.Kind != "StatefulSet" || ref.Name != m.statefulSet.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("ScaledObject targets %s %s %s, want apps/v1 StatefulSet %s", ref.APIVersion, ref.Kind, ref.Name, m.statefulSet.Name)
		}
		if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
			t.Error("minReplicaCount must be at least 1 (a group with no member commits nothing and loses its assignment)")
		}
		if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount > eventsPartitions {
			t.Errorf("maxReplicaCount must be set and at most %d, the partition count", eventsPartitions)
		}
		if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
			t.Fatalf("want exactly one kafka trigger, have %d", len(so.Spec.Triggers))
		}
		md := so.Spec.Triggers[0].Metadata
		for k := range md {
			if !slices.Contains(kedaKafkaKeys, k) {
				t.Errorf("kafka trigger metadata %q is not a KEDA kafka scaler key", k)
			}
		}
		group := cfg.Kafka.Group
		if group == "" {
			group = "pinsync"
		}
		if md["consumerGroup"] != group {
			t.Errorf("trigger consumerGroup = %q, kafka.group = %q", md["consumerGroup"], group)
		}
		if len(cfg.Kafka.Topics) != 1 || md["topic"] != cfg.Kafka.Topics[0] {
			t.Errorf("trigger topic = %q, kafka.topics = %q", md["topic"], cfg.Kafka.Topics)
		}
		if got, want := md["bootstrapServers"], strings.Join(cfg.Kafka.Brokers, ","); got != want {
			t.Errorf("trigger bootstrapServers = %q, kafka.brokers = %q", got, want)
		}
		if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n <= 0 {
			t.Errorf("trigger lagThreshold = %q, want a positive integer", md["lagThreshold"])
		}
		// sigs.k8s.io/yaml turns an unquoted 50000 into "50000" for a string
		// field; the API server would reject it, so look at the raw types.
		raw, err := yaml.YAMLToJSON(m.scaledDoc)
		if err != nil {
			t.Fatal(err)
		}
		var untyped struct {
			Spec struct {
				Triggers []struct {
					Metadata map[string]any `json:"metadata"`
				} `json:"triggers"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(raw, &untyped); err != nil {
			t.Fatal(err)
		}
		for _, tr := range untyped.Spec.Triggers {
			for k, v := range tr.Metadata {
				if _, ok := v.(string); !ok {
					t.Errorf("trigger metadata %s = %v is not a string: quote it", k, v)
				}
			}
		}
		if md["allowIdleConsumers"] == "true" {
			t.Error("allowIdleConsumers must not be true: members beyond the partition count do nothing")
		}
		// A partition pinsync has stopped on (its owner gone until the
		// session timeout, credentials refused, Pinterest away) keeps its
		// lag, and more replicas would not move it.
		if md["excludePersistentLag"] != "true" {
			t.Error("excludePersistentLag must be true: a stopped partition's lag must not scale out")
		}
		// A partition is read by one owner: replicas beyond the partitions
		// with lag take no lagging partition.
		if md["limitToPartitionsWithLag"] != "true" {
			t.Error("limitToPartitionsWithLag must be true: more replicas than lagging partitions do not help")
		}
	})
}

// TestPodsMayReadOnlyTheirStatefulSetsScale: with kafka.leave_on_shutdown
// statefulset, a pod asks the Kubernetes API at SIGTERM whether its
// StatefulSet still wants it, so its service account's token is mounted and
// may get that StatefulSet's scale, and nothing else. With another value
// the pods have no token and no role.
func TestPodsMayReadOnlyTheirStatefulSetsScale(t *testing.T) {
	forEachRender(t, func(t *testing.T, m *manifests) {
		spec := m.statefulSet.Spec.Template.Spec
		mounted := spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken
		if m.config(t).Kafka.LeaveOnShutdown != "statefulset" {
			if mounted || m.role != nil || m.roleBinding != nil || m.serviceAccount != nil {
				t.Errorf("kafka.leave_on_shutdown is not statefulset, yet the pods have a token (%v) or RBAC", mounted)
			}
			return
		}
		if !mounted || m.serviceAccount == nil || spec.ServiceAccountName != m.serviceAccount.Name {
			t.Fatalf("kafka.leave_on_shutdown statefulset: the pods need their service account's token (automount %v, serviceAccountName %q)", mounted, spec.ServiceAccountName)
		}
		if m.role == nil || m.roleBinding == nil {
			t.Fatal("kafka.leave_on_shutdown statefulset: no Role and RoleBinding")
		}
		want := []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"statefulsets/scale"},
			ResourceNames: []string{m.statefulSet.Name}, Verbs: []string{"get"}}}
		if !reflect.DeepEqual(m.role.Rules, want) {
			t.Errorf("Role rules %+v, want exactly %+v", m.role.Rules, want)
		}
		rb := m.roleBinding
		if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != m.role.Name || rb.RoleRef.APIGroup != rbacv1.GroupName {
			t.Errorf("RoleBinding refers to %+v, want the Role %s", rb.RoleRef, m.role.Name)
		}
		if len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != m.serviceAccount.Name {
			t.Errorf("RoleBinding subjects %+v, want the ServiceAccount %s", rb.Subjects, m.serviceAccount.Name)
		}
	})
}
