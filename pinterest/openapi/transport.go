package openapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// specHost is where the description's servers entry puts the API; requests
// are matched as if sent there, whatever their real host (a test server).
const specHost = "api.pinterest.com"

// maxBody bounds how much of a request or response body is buffered for
// validation.
const maxBody = 64 << 20

// ViolationError is one request or response that does not match the
// description.
type ViolationError struct {
	Method, Path string
	// Response is true when the response, not the request, is at fault.
	Response bool
	Status   int // response status, when Response
	Err      error
}

func (e *ViolationError) Error() string {
	what := "request"
	if e.Response {
		what = fmt.Sprintf("response %d", e.Status)
	}
	return fmt.Sprintf("openapi: %s %s: %s violates the Pinterest v5 description: %v", e.Method, e.Path, what, e.Err)
}

func (e *ViolationError) Unwrap() error { return e.Err }

// Transport is an http.RoundTripper that validates every /v5 request
// before sending it and every response after receiving it, reporting each
// violation. It never changes what is sent or received. It is safe for
// concurrent use if report is.
type Transport struct {
	base   http.RoundTripper
	router routers.Router
	report func(error)
}

// NewValidatingTransport wraps base (nil: http.DefaultTransport). report
// receives a *ViolationError for each violation, including a /v5 request
// that matches no operation of the description.
func NewValidatingTransport(base http.RoundTripper, report func(error)) (*Transport, error) {
	if base == nil {
		base = http.DefaultTransport
	}
	if report == nil {
		return nil, fmt.Errorf("openapi: NewValidatingTransport needs a report function")
	}
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: building router: %w", err)
	}
	return &Transport{base: base, router: router, report: report}, nil
}

// acceptAuth accepts every security requirement: the contract is about
// shapes, and the sandbox checks tokens itself.
func acceptAuth(context.Context, *openapi3filter.AuthenticationInput) error { return nil }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path != "/v5" && !strings.HasPrefix(req.URL.Path, "/v5/") {
		return t.base.RoundTrip(req)
	}
	violation := func(resp bool, status int, err error) {
		t.report(&ViolationError{Method: req.Method, Path: req.URL.Path, Response: resp, Status: status, Err: err})
	}

	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxBody))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	// The request actually sent gets a fresh copy of the body.
	out := req.Clone(req.Context())
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		out.ContentLength = int64(len(body))
	}

	vreq := req.Clone(req.Context())
	vreq.URL.Scheme, vreq.URL.Host, vreq.Host = "https", specHost, specHost
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := t.router.FindRoute(vreq)
	if err != nil {
		violation(false, 0, fmt.Errorf("no operation matches: %w", err))
		return t.base.RoundTrip(out)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: acceptAuth, MultiError: true, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		violation(false, 0, err)
	}

	resp, err := t.base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(rb)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(req.Context(), rin); err != nil {
		violation(true, resp.StatusCode, err)
	}
	return resp, nil
}
