package format

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestConfigValidateNamesTheSetting(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // the start of the error; "" for none
	}{
		{Config{}, ""},
		{Config{Kind: ConnectJSON}, ""},
		{Config{Kind: Avro, SchemaID: SchemaIDInHeader}, ""},
		{Config{Kind: Protobuf, ProtobufMessage: "pinsync.v1.NativeEvent"}, ""},
		{Config{Kind: Avro, Mapping: audienceChangeMapping}, ""},
		{Config{Kind: "xml"}, "kind:"},
		{Config{Kind: CloudEvents, SchemaID: SchemaIDInValue}, "schema_id:"},
		{Config{Kind: JSON, Mapping: Mapping{Profile: "id", Type: "=forget"}}, "mapping:"},
		{Config{Kind: Avro, SchemaID: "key"}, "schema_id:"},
		{Config{Kind: Avro, SchemaIDHeader: "h"}, "schema_id_header:"},
		{Config{Kind: Avro, ProtobufMessage: "x.Y"}, "protobuf_message:"},
		{Config{Kind: Avro, Mapping: Mapping{Profile: "id"}}, "mapping.profile and mapping.type:"},
		{Config{Kind: Avro, Mapping: Mapping{Profile: "user..id", Type: "=forget"}}, "mapping.profile:"},
		{Config{Kind: Avro, Mapping: Mapping{Profile: "id", Type: "t", Member: "=yes"}}, "mapping.member:"},
		{Config{Kind: Avro, Mapping: Mapping{Profile: "id", Type: "t", Email: "=a@b.c"}}, "mapping.email:"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestRegistryConfigValidateNamesTheSetting(t *testing.T) {
	for _, tc := range []struct {
		cfg  RegistryConfig
		want string
	}{
		{RegistryConfig{URL: "https://registry.example:8081"}, ""},
		{RegistryConfig{URL: "http://r", Username: "key", Password: "secret", Timeout: time.Second}, ""},
		{RegistryConfig{}, "url:"},
		{RegistryConfig{URL: "registry:8081"}, "url:"},
		{RegistryConfig{URL: "http://u:p@r"}, "url:"},
		{RegistryConfig{URL: "http://r", Password: "p"}, "username:"},
		{RegistryConfig{URL: "http://r", Username: "u", BearerToken: "t"}, "bearer_token:"},
		{RegistryConfig{URL: "http://r", Timeout: -1}, "timeout:"},
		{RegistryConfig{URL: "http://r", CacheSize: -1}, "cache_size:"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestRegistryFormatNeedsARegistry(t *testing.T) {
	if _, err := NewDecoder(Config{Kind: Avro}, nil, eventDecoder(t)); !errors.Is(err, errNoRegistry) {
		t.Fatalf("error %v", err)
	}
}

func TestRegistryConfigLogsNoSecret(t *testing.T) {
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("registry", "cfg", RegistryConfig{URL: "http://r", Username: "u", Password: "pa55", BearerToken: "t0ken"})
	if strings.Contains(b.String(), "pa55") || strings.Contains(b.String(), "t0ken") || !strings.Contains(b.String(), "password_set=true") {
		t.Fatalf("logged %s", b.String())
	}
}
