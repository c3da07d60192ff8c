package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/pinsync/pinsync/schemas/format"
)

// formatFlags are the flags of validate and produce that choose a value
// format (package schemas/format) and reach a schema registry. The
// registry's password and token come from the environment, never from the
// command line.
type formatFlags struct {
	kind, schemaID, header, message string
	registry                        format.RegistryConfig
}

// Environment variables of the registry's credentials: those of
// kafka.schema_registry's password and bearer_token, as pinsync run reads
// them, so that one environment serves run, validate and produce.
const (
	envRegistryPassword = "PINSYNC_KAFKA_SCHEMA_REGISTRY_PASSWORD"
	envRegistryToken    = "PINSYNC_KAFKA_SCHEMA_REGISTRY_BEARER_TOKEN"
)

func (f *formatFlags) register(fs *flag.FlagSet) {
	kinds := make([]string, 0, 6)
	for _, k := range format.Kinds() {
		kinds = append(kinds, string(k))
	}
	fs.StringVar(&f.kind, "format", string(format.JSON), "value format: "+strings.Join(kinds, ", "))
	fs.StringVar(&f.registry.URL, "registry", "", "schema registry URL (avro, protobuf, json-schema)")
	fs.StringVar(&f.registry.Username, "registry-user", "", "schema registry basic-auth user (password from $"+envRegistryPassword+"; a bearer token from $"+envRegistryToken+")")
	fs.StringVar(&f.schemaID, "schema-id", "", `where a registry record's schema id is: "value" (the Confluent wire prefix, default) or "header"`)
	fs.StringVar(&f.header, "schema-id-header", "", "header of the schema id with --schema-id header (default "+format.DefaultSchemaIDHeader+")")
	fs.StringVar(&f.message, "protobuf-message", "", "full name of the Protobuf message (default: the record's message indexes)")
}

// config returns the format's configuration and, for a registry format,
// its Registry.
func (f *formatFlags) config(getenv func(string) string, mapping format.Mapping) (format.Config, *format.Registry, error) {
	cfg := format.Config{Kind: format.Kind(f.kind), SchemaID: f.schemaID, SchemaIDHeader: f.header,
		ProtobufMessage: f.message, Mapping: mapping}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, fmt.Errorf("--format: %w", err)
	}
	if !cfg.Kind.Registered() {
		if f.registry.URL != "" {
			return cfg, nil, fmt.Errorf("--registry: only for avro, protobuf and json-schema, not %s", cfg.Kind)
		}
		return cfg, nil, nil
	}
	if f.registry.URL == "" {
		return cfg, nil, fmt.Errorf("--format %s needs --registry URL", cfg.Kind)
	}
	f.registry.Password = getenv(envRegistryPassword)
	f.registry.BearerToken = getenv(envRegistryToken)
	reg, err := format.NewRegistry(f.registry)
	return cfg, reg, err
}
