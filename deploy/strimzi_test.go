package deploy

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kafkaTopic is Strimzi's kafka.strimzi.io/v1 KafkaTopic, written from the
// CRD Strimzi installs (packaging/install/cluster-operator/043-Crd-kafkatopic.yaml);
// Strimzi publishes no Go types.
type kafkaTopic struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		TopicName  string         `json:"topicName,omitempty"`
		Partitions *int32         `json:"partitions,omitempty"`
		Replicas   *int32         `json:"replicas,omitempty"`
		Config     map[string]any `json:"config,omitempty"`
	} `json:"spec"`
}

// name is the Kafka topic's name.
func (k *kafkaTopic) name() string {
	if k.Spec.TopicName != "" {
		return k.Spec.TopicName
	}
	return k.Metadata.Name
}

// config returns a topic config as text, "" when unset.
func (k *kafkaTopic) config(key string) string {
	v, ok := k.Spec.Config[key]
	if !ok {
		return ""
	}
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func (k *kafkaTopic) validate() error {
	var errs []error
	if k.Metadata.Labels["strimzi.io/cluster"] == "" {
		errs = append(errs, errors.New("no strimzi.io/cluster label: no Topic Operator would take it"))
	}
	if p := k.Spec.Partitions; p != nil && *p < 1 {
		errs = append(errs, fmt.Errorf("spec.partitions %d: at least 1", *p))
	}
	if r := k.Spec.Replicas; r != nil && (*r < 1 || *r > 32767) {
		errs = append(errs, fmt.Errorf("spec.replicas %d: 1 to 32767", *r))
	}
	for key, v := range k.Spec.Config {
		switch v.(type) {
		case string, float64, bool:
		default:
			errs = append(errs, fmt.Errorf("spec.config.%s: %v is not a string, number or boolean", key, v))
		}
	}
	return errors.Join(errs...)
}

// kafkaUser is Strimzi's kafka.strimzi.io/v1 KafkaUser, written from its CRD
// (044-Crd-kafkauser.yaml).
type kafkaUser struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Authentication *struct {
			Type     string `json:"type"`
			Password *struct {
				ValueFrom struct {
					SecretKeyRef *corev1.SecretKeySelector `json:"secretKeyRef,omitempty"`
				} `json:"valueFrom"`
			} `json:"password,omitempty"`
			ValidityDays *int32 `json:"validityDays,omitempty"`
			RenewalDays  *int32 `json:"renewalDays,omitempty"`
		} `json:"authentication,omitempty"`
		Authorization *struct {
			Type string    `json:"type"`
			ACLs []aclRule `json:"acls"`
		} `json:"authorization,omitempty"`
		Quotas *struct {
			ProducerByteRate       *int64   `json:"producerByteRate,omitempty"`
			ConsumerByteRate       *int64   `json:"consumerByteRate,omitempty"`
			RequestPercentage      *int32   `json:"requestPercentage,omitempty"`
			ControllerMutationRate *float64 `json:"controllerMutationRate,omitempty"`
		} `json:"quotas,omitempty"`
		Template *struct {
			Secret *struct {
				Metadata *struct {
					Labels      map[string]string `json:"labels,omitempty"`
					Annotations map[string]string `json:"annotations,omitempty"`
				} `json:"metadata,omitempty"`
			} `json:"secret,omitempty"`
		} `json:"template,omitempty"`
	} `json:"spec"`
}

// aclRule is one of a KafkaUser's simple-authorization ACLs.
type aclRule struct {
	Type     string `json:"type,omitempty"`
	Resource struct {
		Type        string `json:"type"`
		Name        string `json:"name,omitempty"`
		PatternType string `json:"patternType,omitempty"`
	} `json:"resource"`
	Host       string   `json:"host,omitempty"`
	Operations []string `json:"operations"`
}

// The enums of the KafkaUser CRD.
var (
	aclOperations    = []string{"Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All"}
	aclResourceTypes = []string{"topic", "group", "cluster", "transactionalId"}
)

func (u *kafkaUser) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if u.Metadata.Labels["strimzi.io/cluster"] == "" {
		bad("no strimzi.io/cluster label: no User Operator would take it")
	}
	if a := u.Spec.Authentication; a != nil && !slices.Contains([]string{"tls", "tls-external", "scram-sha-512"}, a.Type) {
		bad("spec.authentication.type %q: tls, tls-external or scram-sha-512", a.Type)
	}
	z := u.Spec.Authorization
	if z == nil {
		return errors.Join(errs...)
	}
	if z.Type != "simple" {
		bad("spec.authorization.type %q: simple", z.Type)
	}
	for i, r := range z.ACLs {
		at := fmt.Sprintf("spec.authorization.acls[%d]", i)
		if !slices.Contains([]string{"", "allow", "deny"}, r.Type) {
			bad("%s.type %q: allow or deny", at, r.Type)
		}
		if !slices.Contains(aclResourceTypes, r.Resource.Type) {
			bad("%s.resource.type %q: one of %v", at, r.Resource.Type, aclResourceTypes)
		}
		if !slices.Contains([]string{"", "literal", "prefix"}, r.Resource.PatternType) {
			bad("%s.resource.patternType %q: literal or prefix", at, r.Resource.PatternType)
		}
		if (r.Resource.Type == "cluster") != (r.Resource.Name == "") {
			bad("%s.resource: a cluster has no name, anything else needs one", at)
		}
		if len(r.Operations) == 0 {
			bad("%s.operations: none", at)
		}
		for _, op := range r.Operations {
			if !slices.Contains(aclOperations, op) {
				bad("%s.operations: %q is not one of %v", at, op, aclOperations)
			}
		}
	}
	return errors.Join(errs...)
}

// grant is one operation allowed on one resource.
type grant struct{ resource, name, pattern, operation string }

func (g grant) String() string {
	return fmt.Sprintf("%s %s %q %s", g.operation, g.resource, g.name, g.pattern)
}

// pinsyncGrants are the ACLs pinsync needs with configuration cfg, each for
// the calls it makes (consumer/, control/). Read and Write imply Describe
// in Kafka; Describe is listed all the same, as tools and readers expect.
func pinsyncGrants(cfg pinsyncConfig) []grant {
	k := cfg.Kafka
	var gs []grant
	add := func(resource, name, pattern string, ops ...string) {
		for _, op := range ops {
			gs = append(gs, grant{resource, name, pattern, op})
		}
	}
	// Fetching the input; the lag's end offsets.
	add("topic", k.Topics[0], "literal", "Read", "Describe")
	// The profile stage's group: joining, committing input offsets.
	add("group", k.Group, "literal", "Read")
	// The list stage's group: joining, committing, the ownership check
	// before each Pinterest write; the profile stage reads its offsets.
	add("group", k.Group+".lists", "literal", "Read")
	// One transactional producer per input partition,
	// <group>.profiles.<topic>.<partition> (consumer/profiles/worker.go).
	add("transactionalId", k.Group+".profiles.", "prefix", "Write", "Describe")
	// Restored from, written in the transactions, its cleanup policy
	// checked at start (consumer/topics.go).
	add("topic", k.ChangelogTopic, "literal", "Read", "Write", "Describe", "DescribeConfigs")
	// Written by the profile stage, read by the list stage, trimmed with
	// DeleteRecords (consumer/lists/stage.go), its cleanup policy checked.
	add("topic", k.ChangesTopic, "literal", "Read", "Write", "Delete", "Describe", "DescribeConfigs")
	// The registry and the token, tailed and appended to; checked at start
	// (control/log.go).
	add("topic", k.ControlTopic, "literal", "Read", "Write", "Describe", "DescribeConfigs")
	// Dead letters: written, never read; max.message.bytes read at start
	// (consumer/topics.go).
	add("topic", k.DLQTopic, "literal", "Write", "Describe", "DescribeConfigs")
	return gs
}

func sortedGrants(gs []grant) []string {
	var s []string
	for _, g := range gs {
		s = append(s, g.String())
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// strimziObjects decodes deploy/strimzi as kustomize renders it.
func strimziObjects(t *testing.T) (topics map[string]*kafkaTopic, users []*kafkaUser) {
	t.Helper()
	topics = map[string]*kafkaTopic{}
	for _, o := range renderKustomize(t, "strimzi") {
		switch v := o.decode(t).(type) {
		case *kafkaTopic:
			topics[v.name()] = v
		case *kafkaUser:
			users = append(users, v)
		default:
			t.Errorf("%s: not a KafkaTopic or KafkaUser", o)
		}
	}
	return topics, users
}

// TestStrimziTopicsAreWhatPinsyncAccepts: the KafkaTopics are the topics of
// the base configuration, laid out as compose creates them, with exactly
// the configs pinsync checks at start (consumer/topics.go, control/log.go)
// and creates a missing topic with.
func TestStrimziTopicsAreWhatPinsyncAccepts(t *testing.T) {
	cfg := loadManifests(t).config(t)
	topics, _ := strimziObjects(t)
	got := map[string]topicLayout{}
	for name, kt := range topics {
		if kt.Spec.Partitions == nil {
			t.Errorf("KafkaTopic %s: no partitions (the broker's default may not be the layout)", name)
			continue
		}
		got[name] = topicLayout{int(*kt.Spec.Partitions), strings.Contains(kt.config("cleanup.policy"), "compact"), kt.config("retention.ms") == "-1"}
	}
	want := wantTopics(cfg)
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("KafkaTopic %s is %+v (present: %v), want %+v", name, g, ok, w)
		}
	}
	if _, ok := got[cfg.Kafka.DLQTopic]; !ok {
		t.Errorf("no KafkaTopic for the dead-letter topic %s", cfg.Kafka.DLQTopic)
	}
	if len(got) != len(want)+1 {
		t.Errorf("KafkaTopics %v: want only pinsync's five", slices.Sorted(maps.Keys(got)))
	}
	// pinsync refuses a changelog or control topic compacted and deleted
	// both, a changes topic with compaction in its policy or with a
	// retention, and an internal topic with fewer replicas than the input.
	for name, policy := range map[string]string{cfg.Kafka.ChangelogTopic: "compact", cfg.Kafka.ControlTopic: "compact"} {
		if kt := topics[name]; kt != nil && kt.config("cleanup.policy") != policy {
			t.Errorf("KafkaTopic %s: cleanup.policy %q, pinsync accepts only %q", name, kt.config("cleanup.policy"), policy)
		}
	}
	if kt := topics[cfg.Kafka.ChangesTopic]; kt != nil {
		for _, k := range []string{"retention.ms", "retention.bytes"} {
			if v := kt.config(k); v != "-1" {
				t.Errorf("KafkaTopic %s: %s %q, pinsync accepts only -1 (set it: a broker default may differ)", kt.name(), k, v)
			}
		}
	}
	if in := topics[cfg.Kafka.Topics[0]]; in != nil {
		for _, name := range []string{cfg.Kafka.ChangelogTopic, cfg.Kafka.ChangesTopic, cfg.Kafka.ControlTopic} {
			kt := topics[name]
			if kt == nil {
				continue
			}
			if in.Spec.Replicas == nil || kt.Spec.Replicas == nil || *kt.Spec.Replicas < *in.Spec.Replicas {
				t.Errorf("KafkaTopic %s: replicas must be set and at least the input's", name)
			}
		}
	}
	// What pinsync creates the control topic with (control/log.go,
	// compactionLag): superseded claims stay a day.
	if kt := topics[cfg.Kafka.ControlTopic]; kt != nil && kt.config("min.compaction.lag.ms") != "86400000" {
		t.Errorf("KafkaTopic %s: min.compaction.lag.ms %q, pinsync creates it with 86400000", cfg.Kafka.ControlTopic, kt.config("min.compaction.lag.ms"))
	}
}

// aclRow matches a row of the README's ACL table:
// | topic | `pinsync.changes` | literal | Read, Write, ... | why |
var aclRow = regexp.MustCompile("^\\| *(topic|group|cluster|transactionalId) *\\| *`([^`]*)` *\\| *(literal|prefix) *\\| *([A-Za-z, ]+?) *\\|")

// readmeGrants are the ACLs the README's Operations section lists.
func readmeGrants(t *testing.T) []grant {
	t.Helper()
	var gs []grant
	for _, line := range strings.Split(string(readFile(t, "../README.md")), "\n") {
		m := aclRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, op := range strings.Split(m[4], ",") {
			gs = append(gs, grant{m[1], m[2], m[3], strings.TrimSpace(op)})
		}
	}
	if len(gs) == 0 {
		t.Fatal("README.md has no ACL table (rows like | topic | `pinsync.events` | literal | Read, Describe | ... |)")
	}
	return gs
}

// TestStrimziUserHasExactlyTheACLsPinsyncNeeds: the KafkaUser grants what
// pinsync's calls need with the base configuration, and nothing more; the
// README's table says the same.
func TestStrimziUserHasExactlyTheACLsPinsyncNeeds(t *testing.T) {
	cfg := loadManifests(t).config(t)
	_, users := strimziObjects(t)
	if len(users) != 1 {
		t.Fatalf("%d KafkaUsers, want 1", len(users))
	}
	u := users[0]
	if u.Spec.Authorization == nil {
		t.Fatal("the KafkaUser has no authorization")
	}
	var granted []grant
	for _, r := range u.Spec.Authorization.ACLs {
		if r.Type == "deny" || (r.Host != "" && r.Host != "*") {
			t.Errorf("ACL on %s %s: only allow rules for any host are expected", r.Resource.Type, r.Resource.Name)
		}
		pattern := r.Resource.PatternType
		if pattern == "" {
			pattern = "literal"
		}
		for _, op := range r.Operations {
			granted = append(granted, grant{r.Resource.Type, r.Resource.Name, pattern, op})
		}
	}
	want := sortedGrants(pinsyncGrants(cfg))
	if got := sortedGrants(granted); !slices.Equal(got, want) {
		t.Errorf("the KafkaUser grants\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if got := sortedGrants(readmeGrants(t)); !slices.Equal(got, want) {
		t.Errorf("the README's ACL table grants\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestStrimziValuesUseTheStrimziUser: the chart's Strimzi example connects
// as the KafkaUser, with the mechanism its authentication gives.
func TestStrimziValuesUseTheStrimziUser(t *testing.T) {
	_, users := strimziObjects(t)
	if len(users) != 1 || users[0].Spec.Authentication == nil {
		t.Fatal("want one KafkaUser with authentication")
	}
	u := users[0]
	var cfg pinsyncConfig
	for _, m := range chartManifests(t) {
		if m.source == "chart with ci/strimzi-values.yaml" {
			cfg = m.config(t)
		}
	}
	if cfg.Kafka.SASL == nil || cfg.Kafka.SASL.Username != u.Metadata.Name {
		t.Errorf("ci/strimzi-values.yaml: kafka.sasl.username is not the KafkaUser %s", u.Metadata.Name)
	}
	if u.Spec.Authentication.Type == "scram-sha-512" && (cfg.Kafka.SASL == nil || cfg.Kafka.SASL.Mechanism != "SCRAM-SHA-512") {
		t.Error("ci/strimzi-values.yaml: the KafkaUser authenticates with scram-sha-512, kafka.sasl.mechanism is not SCRAM-SHA-512")
	}
}
