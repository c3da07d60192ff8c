// Package openapi holds the part of Pinterest's official v5 OpenAPI
// description that pinsync uses (embedded, derived by ./derive), and a
// validating http.RoundTripper that checks every request a client sends and
// every response it gets against it. Contract tests put the transport
// between the client and the sandbox so that both stay faithful to the
// published API.
//
// It does not validate security (tokens are accepted as they are), the
// sandbox's own /sandbox endpoints, or anything outside /v5.
package openapi

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

// Trimmed is the embedded trimmed description (YAML).
//
//go:embed pinterest-v5-trimmed.yaml
var Trimmed []byte

// Load parses the embedded description and validates it as OpenAPI 3.
// Each call returns a new document the caller may change.
func Load() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(Trimmed)
	if err != nil {
		return nil, fmt.Errorf("openapi: loading trimmed description: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi: trimmed description is invalid: %w", err)
	}
	return doc, nil
}
