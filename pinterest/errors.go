package pinterest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxErrorBody caps how much of an error response is read: Pinterest error
// bodies are a small {code, message} object, and a misbehaving proxy must
// not make us buffer megabytes.
const maxErrorBody = 64 << 10

// Error is a non-2xx response from Pinterest. It is the only error type the
// client builds from a response; use errors.As to get at it.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is Pinterest's numeric error code from the body (0 if absent).
	Code int
	// Message is Pinterest's message from the body, or a bounded excerpt of
	// a body that was not the documented {code, message} object.
	Message string
	// RequestID is the x-pinterest-rid response header, for Pinterest support.
	RequestID string
	// RetryAfter is how long the server asked us to wait (Retry-After or
	// x-ratelimit-reset), zero if it did not say.
	RetryAfter time.Duration

	tooLarge bool // the request body was too large (413, or a 400 saying so)
}

// Error describes the response: status, code, message and request id.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pinterest: HTTP %d", e.StatusCode)
	if e.Code != 0 {
		fmt.Fprintf(&b, " code %d", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (x-pinterest-rid %s)", e.RequestID)
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later: rate
// limiting (429), request timeouts (408) and server errors (5xx). Every
// other status is permanent.
func (e *Error) Retryable() bool {
	return e.StatusCode == http.StatusTooManyRequests ||
		e.StatusCode == http.StatusRequestTimeout ||
		e.StatusCode >= 500
}

// Temporary is Retryable, under the name net.Error used to use.
func (e *Error) Temporary() bool { return e.Retryable() }

// RateLimited reports whether the response was a 429.
func (e *Error) RateLimited() bool { return e.StatusCode == http.StatusTooManyRequests }

// PayloadTooLarge reports whether Pinterest refused the request because its
// body was too large (a 413, or a 400 whose message says so). The client
// halves the batch and tries again when it sees one.
func (e *Error) PayloadTooLarge() bool { return e.tooLarge }

// AuthError says Pinterest rejected pinsync's credentials for good: the
// refresh token is invalid, expired or revoked, or the app credentials are
// wrong. Retrying cannot help; an operator must run `pinsync auth`.
type AuthError struct {
	// Reason says what was rejected, without any secret.
	Reason string
	// Err is the underlying error (often an *Error), if any.
	Err error
}

// Error says what was rejected and that `pinsync auth` is needed.
func (e *AuthError) Error() string {
	msg := "pinterest: credentials rejected: " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + "; re-authorise with `pinsync auth`"
}

// Unwrap returns the underlying error.
func (e *AuthError) Unwrap() error { return e.Err }

// PermissionError says the token's user lacks a role on an ad account that
// pinsync needs.
type PermissionError struct {
	AdAccountID string
	// Permissions are the roles the user has on the account.
	Permissions []string
}

// Error names the account, its roles and the roles needed.
func (e *PermissionError) Error() string {
	roles := "no roles"
	if len(e.Permissions) > 0 {
		roles = "roles " + strings.Join(e.Permissions, ", ")
	}
	return fmt.Sprintf("pinterest: ad account %s grants this token %s; managing customer lists needs OWNER, ADMIN or AUDIENCE_MANAGER",
		e.AdAccountID, roles)
}

// ErrBreakerOpen is returned (wrapped) when an ad account's circuit breaker
// is open after repeated failures: the call was not sent. Try again later.
var ErrBreakerOpen = errors.New("pinterest: circuit breaker open")

// ErrNoToken is returned by a TokenStore that holds no token yet.
var ErrNoToken = errors.New("pinterest: no token stored")

// transportError is a request that got no HTTP response (connection
// refused, reset, timeout) or whose response body could not be read.
type transportError struct{ err error }

// Error returns the transport failure.
func (e *transportError) Error() string { return "pinterest: transport: " + e.err.Error() }

// Unwrap returns the transport failure.
func (e *transportError) Unwrap() error { return e.err }

// Class is what a failed Pinterest call means to its caller. Classify is
// the one place that decides it; callers switch on the class, never on
// status codes.
type Class int

// The classes, from the most to the least specific.
const (
	// ClassNone is no error.
	ClassNone Class = iota
	// ClassCredentials: Pinterest refused pinsync's credentials for good
	// (the refresh token was refused, or a request still answered 401
	// after a refresh). Nothing can be sent until `pinsync auth` stores a
	// new token; the request's content was not judged.
	ClassCredentials
	// ClassPermission: the token's user lacks a role on the ad account
	// (403, or write access checked and missing).
	ClassPermission
	// ClassNotFound: the ad account, customer list or audience does not
	// exist (404).
	ClassNotFound
	// ClassRateLimited: Pinterest answered 429; wait for the reset.
	ClassRateLimited
	// ClassUnavailable: a server error, a timeout, no response at all, or
	// the ad account's circuit breaker is open. The same request may
	// succeed later.
	ClassUnavailable
	// ClassRefused: Pinterest refused the request's content for good
	// (another 4xx): sending it again cannot succeed.
	ClassRefused
	// ClassCanceled: the caller's context ended first.
	ClassCanceled
	// ClassOther: an error that is none of the above (a bug, a response
	// that could not be decoded).
	ClassOther
)

var classNames = [...]string{"none", "credentials", "permission", "not_found", "rate_limited", "unavailable", "refused", "canceled", "other"}

// String returns the class's name, as used in logs and metric labels.
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Classify says what err, returned by a Client method, means.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	// The credential and permission types wrap the *Error that showed
	// them: they decide before its status does (a refused refresh is a
	// 400 of the token endpoint, not a refused request).
	var ae *AuthError
	if errors.As(err, &ae) {
		return ClassCredentials
	}
	var pe *PermissionError
	if errors.As(err, &pe) {
		return ClassPermission
	}
	if errors.Is(err, ErrBreakerOpen) {
		return ClassUnavailable
	}
	var e *Error
	if errors.As(err, &e) {
		switch {
		case e.StatusCode == http.StatusUnauthorized:
			// Still refused after a refresh, or a missing scope: a new
			// consent is needed either way.
			return ClassCredentials
		case e.StatusCode == http.StatusForbidden:
			return ClassPermission
		case e.StatusCode == http.StatusNotFound:
			return ClassNotFound
		case e.StatusCode == http.StatusTooManyRequests:
			return ClassRateLimited
		case e.Retryable():
			return ClassUnavailable
		case e.StatusCode >= 400 && e.StatusCode < 500:
			return ClassRefused
		}
		return ClassOther
	}
	var te *transportError
	if errors.As(err, &te) {
		return ClassUnavailable
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ClassCanceled
	}
	return ClassOther
}

// IsRetryable reports whether err is worth retrying later: rate limiting,
// unavailability (5xx, 408, transport failures) or an open circuit breaker.
// Credential rejections, permission errors, other 4xx responses and
// context cancellation are not.
func IsRetryable(err error) bool {
	c := Classify(err)
	return c == ClassRateLimited || c == ClassUnavailable
}

// IsRefused reports whether Pinterest refused the request's content for
// good: the only failure for which the records themselves are at fault.
func IsRefused(err error) bool { return Classify(err) == ClassRefused }

// checkResponse is the one place where a response becomes an error: it
// returns nil for a 2xx and an *Error for anything else, reading at most
// maxErrorBody bytes of the body. now converts an epoch x-ratelimit-reset.
func checkResponse(resp *http.Response, now time.Time) error {
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return errorFromBody(resp.StatusCode, resp.Header, body, now)
}

func errorFromBody(status int, h http.Header, body []byte, now time.Time) *Error {
	e := &Error{StatusCode: status, RequestID: h.Get("x-pinterest-rid")}
	var eb struct {
		Code    json.Number `json:"code"`
		Message string      `json:"message"`
		// OAuth 2.0 (RFC 6749) error bodies, in case the token endpoint
		// answers that way.
		OAuthError       string `json:"error"`
		OAuthDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &eb) == nil {
		if c, err := eb.Code.Int64(); err == nil {
			e.Code = int(c)
		}
		e.Message = eb.Message
		if e.Message == "" && eb.OAuthError != "" {
			e.Message = strings.TrimSpace(eb.OAuthError + " " + eb.OAuthDescription)
		}
	} else {
		e.Message = excerpt(body)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		e.RetryAfter = retryAfter(h, now)
	}
	e.tooLarge = status == http.StatusRequestEntityTooLarge ||
		status == http.StatusBadRequest && saysTooLarge(e.Message)
	return e
}

// saysTooLarge recognises a 400 refusing a body for its size. Pinterest
// documents no wording; these are the phrasings gateways use.
func saysTooLarge(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"too large", "too big", "too long", "too many records", "exceeds the maximum", "payload size", "request entity"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// excerpt returns a short, printable prefix of a body that is not JSON.
func excerpt(body []byte) string {
	const max = 200
	s := strings.TrimSpace(string(body))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// epochThreshold separates "seconds until reset" from "epoch seconds" in
// x-ratelimit-reset: no reset window is 30 years long.
const epochThreshold = 1e9

// retryAfter reads how long the server asked us to wait: Retry-After
// (seconds or HTTP date), else x-ratelimit-reset (seconds until the reset,
// or the reset time in epoch seconds). Zero when absent or in the past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			return secondsDuration(s)
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return t.Sub(now)
		}
	}
	if v := strings.TrimSpace(h.Get("x-ratelimit-reset")); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			return 0
		}
		if s >= epochThreshold {
			if t := time.Unix(0, int64(s*1e9)); t.After(now) {
				return t.Sub(now)
			}
			return 0
		}
		return secondsDuration(s)
	}
	return 0
}

func secondsDuration(s float64) time.Duration {
	const max = 24 * time.Hour
	if s > max.Seconds() {
		return max
	}
	return time.Duration(s * float64(time.Second))
}
