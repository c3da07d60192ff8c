package service

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas/format"
)

// validFromEnv holds, for the keys whose value envValue makes up would not
// pass validation, a value that does. A new key needs an entry only when
// the test says its made-up value is refused.
var validFromEnv = map[string]any{
	"kafka.brokers":                  []string{"b1.example:9092", "b2.example:9092"},
	"kafka.topics":                   []string{"events-from-env"},
	"kafka.sasl.mechanism":           "SCRAM-SHA-512",
	"kafka.leave_on_shutdown":        "always",
	"pinterest.base_url":             "https://api.example.com",
	"pinterest.auth_url":             "https://www.example.com/oauth/",
	"pinterest.ad_account_id":        "549755885176",
	"pinterest.token_store.kind":     "kafka",
	"pinterest.audience_ad_accounts": map[string]string{"buyers": "549755885175", "churned": "549755885176"},
	"sync.list_name_template":        "crm {{.Audience}} {{.ListType}}",
	"http.listen":                    ":9090",
	"log.level":                      "debug",
	"kafka.input_format.kind":        format.Avro,
	"kafka.input_format.schema_id":   format.SchemaIDInValue,
	"kafka.schema_registry.url":      "https://registry-from-env.example:8081",
}

// companions are, for the keys that are valid only beside another (a
// registry password needs its user), the other key and its value, set
// from the environment together.
var companions = map[string]struct {
	key string
	val any
}{
	"kafka.schema_registry.password":      {"kafka.schema_registry.username", "user-from-env"},
	"kafka.schema_registry.password_file": {"kafka.schema_registry.username", "user-from-env"},
}

// filledFromFile are the keys that name a file, with the key the loader
// fills with the file's content.
var filledFromFile = map[string]string{
	"pinterest.app_secret_file":               "pinterest.app_secret",
	"kafka.sasl.password_file":                "kafka.sasl.password",
	"kafka.schema_registry.password_file":     "kafka.schema_registry.password",
	"kafka.schema_registry.bearer_token_file": "kafka.schema_registry.bearer_token",
}

// TestEveryKeyCanBeSetFromTheEnvironment walks Config by reflection, so that
// a key added later is covered too: each key, set alone from its PINSYNC_
// variable to a value other than the one in force, over a valid file, gives
// a valid configuration in which that key, and nothing else, changed.
func TestEveryKeyCanBeSetFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fileSecret := write("file-secret", "from the file\n")
	envSecret := write("env-secret", "from the variable's file\n")
	file := write("pinsync.yaml", fmt.Sprintf(`kafka:
  tls: {cert_file: /etc/tls/cert.pem, key_file: /etc/tls/key.pem}
  sasl: {username: pinsync, password_file: %q}
  input_format: {kind: protobuf, schema_id: header, mapping: {type: kind, profile: user.id}}
  schema_registry: {url: "https://registry.example:8081"}
pinterest:
  ad_account_id: "549755885175"
  app_id: "1234"
  app_secret_file: %q
`, fileSecret, fileSecret))
	noEnv := func(string) string { return "" }
	base, err := Load(file, noEnv)
	if err != nil {
		t.Fatalf("the test's file is not valid: %v", err)
	}

	fields := map[string][]int{} // key -> index path in Config
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(typ reflect.Type, prefix string, index []int) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" {
				t.Errorf("%s%s has no yaml key", prefix, f.Name)
				continue
			}
			idx := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+tag+".", idx)
				continue
			}
			fields[prefix+tag] = idx
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	if len(fields) < 50 {
		t.Fatalf("found %d keys; the walk is broken", len(fields))
	}

	for _, key := range slices.Sorted(maps.Keys(fields)) {
		t.Run(key, func(t *testing.T) {
			field := reflect.ValueOf(&base).Elem().FieldByIndex(fields[key])
			val, ok := validFromEnv[key]
			if !ok {
				val = envValue(field.Interface())
			}
			if filledFromFile[key] != "" {
				val = envSecret
			}
			if val == nil {
				t.Fatalf("the test makes up no value for a %s: teach envValue (and the loader) the type", field.Type())
			}
			text := envText(val)
			want := base
			reflect.ValueOf(&want).Elem().FieldByIndex(fields[key]).Set(reflect.ValueOf(val).Convert(field.Type()))
			if reflect.DeepEqual(want, base) {
				t.Fatalf("%v is the value already in force; the test proves nothing", val)
			}
			if filled := filledFromFile[key]; filled != "" {
				reflect.ValueOf(&want).Elem().FieldByIndex(fields[filled]).SetString("from the variable's file")
			}
			env := map[string]string{EnvName(key): text}
			if c, ok := companions[key]; ok {
				f := reflect.ValueOf(&want).Elem().FieldByIndex(fields[c.key])
				f.Set(reflect.ValueOf(c.val).Convert(f.Type()))
				env[EnvName(c.key)] = envText(c.val)
			}

			name := EnvName(key)
			got, err := Load(file, func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("%s=%s: %v", name, text, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s=%s: got\n%+v\nwant\n%+v", name, text, got, want)
			}
		})
	}
}

// envValue makes up a value of v's type other than v, or returns nil for a
// type it does not know.
func envValue(v any) any {
	switch x := v.(type) {
	case Duration:
		return x / 2
	case format.Kind:
		return x + "-from-env"
	case string:
		return x + "-from-env"
	case bool:
		return !x
	case int:
		return half(x)
	case int64:
		return half(x)
	case uint32:
		return half(x)
	case float64:
		return half(x)
	case []string:
		return []string{"env-a", "env-b"}
	case map[string]string:
		return map[string]string{"a": "1", "b": "2"}
	}
	return nil
}

// half returns n/2, or n+1 when n is below 2 (its half would be 0 or n).
func half[N int | int64 | uint32 | float64](n N) N {
	if n < 2 {
		return n + 1
	}
	return n / 2
}

// envText writes v as a PINSYNC_ variable holds it.
func envText(v any) string {
	switch x := v.(type) {
	case Duration:
		return time.Duration(x).String()
	case []string:
		return strings.Join(x, ", ")
	case map[string]string:
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(x)) {
			kv = append(kv, k+"="+x[k])
		}
		return strings.Join(kv, ",")
	}
	return fmt.Sprint(v)
}

// TestEnvErrorsNameTheVariableAndTheKey: a value that cannot be read is
// refused, naming the variable, the key and the value.
func TestEnvErrorsNameTheVariableAndTheKey(t *testing.T) {
	for _, tc := range []struct{ name, value, key string }{
		{"PINSYNC_SYNC_MAX_BUFFERED_BYTES", "lots", "sync.max_buffered_bytes"},
		{"PINSYNC_SYNC_FLUSH_INTERVAL", "10", "sync.flush_interval"},
		{"PINSYNC_PINTEREST_BREAKER_FAILURES", "-1", "pinterest.breaker_failures"},
		{"PINSYNC_PINTEREST_WRITES_PER_MINUTE", "many", "pinterest.writes_per_minute"},
		{"PINSYNC_KAFKA_TLS_ENABLED", "sometimes", "kafka.tls.enabled"},
		{"PINSYNC_PINTEREST_AUDIENCE_AD_ACCOUNTS", "buyers", "pinterest.audience_ad_accounts"},
	} {
		_, err := LoadUnvalidated("", func(k string) string {
			if k == tc.name {
				return tc.value
			}
			return ""
		})
		if err == nil {
			t.Errorf("%s=%s: accepted", tc.name, tc.value)
			continue
		}
		for _, w := range []string{tc.name, tc.key, fmt.Sprintf("%q", tc.value)} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s=%s: error %q does not say %s", tc.name, tc.value, err, w)
			}
		}
	}
}

// TestInputFormatAndItsRegistryAreCheckedTogether: a registry format
// needs kafka.schema_registry.url, the other formats refuse one, a bad
// kind and credentials in the URL are refused, each error naming its key;
// the password comes from its file and never from the URL.
func TestInputFormatAndItsRegistryAreCheckedTogether(t *testing.T) {
	pass := filepath.Join(t.TempDir(), "registry-password")
	if err := os.WriteFile(pass, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, kafka string
		want        string // in the error; "": valid
	}{
		{"json by default", ``, ""},
		{"avro with a registry", `input_format: {kind: avro}
  schema_registry: {url: "https://registry.example:8081", username: u, password_file: ` + strconv.Quote(pass) + `}`, ""},
		{"avro without a registry", `input_format: {kind: avro}`, "kafka.schema_registry.url: required for kafka.input_format.kind avro"},
		{"a registry for json", `schema_registry: {url: "https://registry.example:8081"}`, "kafka.schema_registry.url: only for"},
		{"an unknown kind", `input_format: {kind: thrift}`, `kafka.input_format.kind: "thrift" is not one of`},
		{"credentials in the URL", `input_format: {kind: protobuf}
  schema_registry: {url: "https://u:p@registry.example:8081"}`, "kafka.schema_registry.url: credentials go in username and password"},
		{"a schema id header for connect-json", `input_format: {kind: connect-json, schema_id: header}`, "kafka.input_format.schema_id: only for the registry formats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "pinsync.yaml")
			cfg := "kafka:\n  " + tc.kafka + "\npinterest:\n  ad_account_id: \"549755885175\"\n  app_id: \"1234\"\n  app_secret: x\n"
			if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Load(file, func(string) string { return "" })
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case tc.want == "" && tc.kafka != "" && got.Kafka.SchemaRegistry.Password != "s3cret":
				t.Errorf("password %q, want the file's", got.Kafka.SchemaRegistry.Password)
			}
		})
	}
}
