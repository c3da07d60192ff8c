package pinterest

import (
	"errors"
	"net/http"
	"testing"

	"github.com/pinsync/pinsync/pinterest/openapi"
)

// contractCheck wraps rt with the validating transport of
// pinterest/openapi, so that every request the client sends, and every
// response it gets, is checked against Pinterest's published description.
// A request that violates it fails the test. So does a response, unless
// lenient is set: some tests answer with deliberately odd bodies (an HTML
// 502 from a gateway) to check how the client copes.
func contractCheck(t *testing.T, rt http.RoundTripper, lenient bool) http.RoundTripper {
	t.Helper()
	v, err := openapi.NewValidatingTransport(rt, func(err error) {
		var ve *openapi.ViolationError
		if lenient && errors.As(err, &ve) && ve.Response {
			return
		}
		t.Errorf("contract: %v", err)
	})
	if err != nil {
		t.Fatalf("openapi.NewValidatingTransport: %v", err)
	}
	return v
}
