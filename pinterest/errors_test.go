package pinterest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCheckResponseClassifies(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		headers    map[string]string
		code       int
		msg        string
		retryable  bool
		tooLarge   bool
		retryAfter time.Duration
	}{
		{"bad request", 400, `{"code":1,"message":"Invalid."}`, nil, 1, "Invalid.", false, false, 0},
		{"not found", 404, `{"code":2,"message":"AdAccount not found."}`, nil, 2, "AdAccount not found.", false, false, 0},
		{"forbidden", 403, `{"code":29,"message":"no"}`, nil, 29, "no", false, false, 0},
		{"conflict", 409, `{"code":1,"message":"c"}`, nil, 1, "c", false, false, 0},
		{"timeout", 408, ``, nil, 0, "", true, false, 0},
		{"rate limited, reset seconds", 429, `{"code":8,"message":"slow down"}`,
			map[string]string{"x-ratelimit-reset": "17"}, 8, "slow down", true, false, 17 * time.Second},
		{"rate limited, reset epoch", 429, `{"code":8,"message":"x"}`,
			map[string]string{"x-ratelimit-reset": fmt.Sprint(now.Add(42 * time.Second).Unix())}, 8, "x", true, false, 42 * time.Second},
		{"rate limited, reset epoch in the past", 429, `{"code":8,"message":"x"}`,
			map[string]string{"x-ratelimit-reset": fmt.Sprint(now.Add(-time.Minute).Unix())}, 8, "x", true, false, 0},
		{"rate limited, Retry-After wins", 429, `{"code":8,"message":"x"}`,
			map[string]string{"Retry-After": "3", "x-ratelimit-reset": "50"}, 8, "x", true, false, 3 * time.Second},
		{"rate limited, Retry-After date", 429, `{}`,
			map[string]string{"Retry-After": now.Add(time.Minute).Format(http.TimeFormat)}, 0, "", true, false, time.Minute},
		{"rate limited, no headers", 429, `{"code":8,"message":"x"}`, nil, 8, "x", true, false, 0},
		{"server error", 500, `{"code":500,"message":"boom"}`, nil, 500, "boom", true, false, 0},
		{"unavailable, html", 503, "<html>\n<b>down</b></html>", nil, 0, "<html> <b>down</b></html>", true, false, 0},
		{"payload too large", 413, `{"code":413,"message":"Request body exceeds 1048576 bytes."}`, nil, 413, "Request body exceeds 1048576 bytes.", false, true, 0},
		{"400 saying too large", 400, `{"code":1,"message":"Records list is too large."}`, nil, 1, "Records list is too large.", false, true, 0},
		{"oauth error body", 400, `{"error":"invalid_grant","error_description":"expired"}`, nil, 0, "invalid_grant expired", false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tc.body))}
			resp.Header.Set("x-pinterest-rid", "rid1")
			for k, v := range tc.headers {
				resp.Header.Set(k, v)
			}
			err := checkResponse(resp, now)
			wrapped := fmt.Errorf("outer: %w", err)
			var e *Error
			if !errors.As(wrapped, &e) {
				t.Fatalf("checkResponse = %v, want *Error", err)
			}
			if e.StatusCode != tc.status || e.Code != tc.code || e.Message != tc.msg || e.RequestID != "rid1" {
				t.Errorf("error = %+v", e)
			}
			if IsRetryable(wrapped) != tc.retryable || e.Temporary() != tc.retryable {
				t.Errorf("retryable = %v, want %v", IsRetryable(wrapped), tc.retryable)
			}
			if e.PayloadTooLarge() != tc.tooLarge {
				t.Errorf("PayloadTooLarge = %v, want %v", e.PayloadTooLarge(), tc.tooLarge)
			}
			if e.RetryAfter != tc.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tc.retryAfter)
			}
		})
	}
	ok := &http.Response{StatusCode: 204, Body: http.NoBody}
	if err := checkResponse(ok, now); err != nil {
		t.Fatalf("204: %v", err)
	}
}

func TestErrorBodyReadIsCapped(t *testing.T) {
	body := strings.Repeat("x", 10<<20)
	r := &countingReader{r: strings.NewReader(body)}
	resp := &http.Response{StatusCode: 500, Header: http.Header{}, Body: io.NopCloser(r)}
	err := checkResponse(resp, time.Now())
	if r.n > maxErrorBody {
		t.Fatalf("read %d bytes of an error body, cap is %d", r.n, maxErrorBody)
	}
	var e *Error
	if !errors.As(err, &e) || len(e.Message) > 300 {
		t.Fatalf("message of %d bytes; want a short excerpt", len(e.Message))
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("other"), false},
		{&transportError{err: io.ErrUnexpectedEOF}, true},
		{fmt.Errorf("x: %w", ErrBreakerOpen), true},
		{&AuthError{Reason: "r", Err: &Error{StatusCode: 503}}, false},
		{&PermissionError{AdAccountID: "1"}, false},
	} {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	good := Config{AppID: "1", AppSecret: "s", TokenStore: NewFileTokenStore("t")}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for field, mutate := range map[string]func(*Config){
		"AppID":              func(c *Config) { c.AppID = "" },
		"AppSecret":          func(c *Config) { c.AppSecret = "" },
		"TokenStore":         func(c *Config) { c.TokenStore = nil },
		"BaseURL":            func(c *Config) { c.BaseURL = "api.pinterest.com" },
		"AuthURL":            func(c *Config) { c.AuthURL = "ftp://x/" },
		"MaxBytes":           func(c *Config) { c.MaxBytes = 100 },
		"MaxRecords":         func(c *Config) { c.MaxRecords = -1 },
		"MaxAttempts":        func(c *Config) { c.MaxAttempts = -1 },
		"MaxBackoff":         func(c *Config) { c.MaxBackoff = -1 },
		"BreakerOpenTimeout": func(c *Config) { c.BreakerOpenTimeout = -1 },
	} {
		c := good
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: Validate = %v, want an error naming the field", field, err)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted an invalid config", field)
		}
	}
}
