// Package ident normalises and hashes the identifiers pinsync sends to
// Pinterest: emails, iOS advertising ids (IDFA) and Android advertising ids
// (MAID). Every identifier leaves pinsync as the lowercase hex SHA-256 of its
// normalised form, normalised as Pinterest matches it: an email trimmed and
// lowercased, an IDFA trimmed and UPPERCASED, an Android advertising id
// trimmed and lowercased, both device ids in the 8-4-4-4-12 form. A hash
// cannot be re-cased, so a value normalised otherwise matches no Pinterest
// user. A value that already is a 64-hex digest passes through (lowercased)
// so that nothing is ever hashed twice.
//
// The package knows nothing about events or Kafka; it only turns one value of
// one type into a Hash, or says why it cannot.
package ident

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Type is the kind of an identifier. Its String is the Pinterest list_type.
type Type uint8

// The identifier types pinsync handles. The zero Type is invalid.
const (
	Email Type = iota + 1
	IDFA
	MAID
)

// Types lists every valid Type in a stable order.
var Types = [...]Type{Email, IDFA, MAID}

// NumTypes is the number of valid types; arrays indexed by Type have
// NumTypes+1 elements (index 0 unused).
const NumTypes = 3

// String returns the Pinterest list_type of t (EMAIL, IDFA, MAID).
func (t Type) String() string {
	switch t {
	case Email:
		return "EMAIL"
	case IDFA:
		return "IDFA"
	case MAID:
		return "MAID"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Valid reports whether t is one of the defined types.
func (t Type) Valid() bool { return t >= Email && t <= MAID }

// ParseType accepts the names users type: email, idfa, maid (any case), and
// the Pinterest list types EMAIL, IDFA, MAID.
func ParseType(s string) (Type, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "email":
		return Email, nil
	case "idfa":
		return IDFA, nil
	case "maid", "gaid", "aaid":
		return MAID, nil
	}
	return 0, fmt.Errorf("unknown identifier type %q (want email, idfa or maid)", s)
}

// Hash is the SHA-256 digest of a normalised identifier. It is what pinsync
// keeps in memory and in its changelog, and (hex-encoded) what it sends.
type Hash [32]byte

// String returns the lowercase hex form, as Pinterest receives it.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// AppendHex appends the 64-character lowercase hex form of h to b.
func (h Hash) AppendHex(b []byte) []byte {
	const digits = "0123456789abcdef"
	for _, c := range h {
		b = append(b, digits[c>>4], digits[c&0x0f])
	}
	return b
}

// ParseHex decodes a 64-character hex digest (any case).
func ParseHex(s string) (Hash, bool) { return parseHex(s) }

// parseHex is generic so that a []byte is parsed without the allocation a
// 64-byte string conversion would cost.
func parseHex[S []byte | string](s S) (Hash, bool) {
	var h Hash
	if len(s) != 64 {
		return h, false
	}
	for i := 0; i < 32; i++ {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return Hash{}, false
		}
		h[i] = hi<<4 | lo
	}
	return h, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Reason says why a value was rejected. Reasons never contain the value.
type Reason string

// The rejection reasons. They are stable: metrics and dead letters use them.
const (
	ReasonEmpty      Reason = "empty"
	ReasonTooLong    Reason = "too_long"
	ReasonNotEmail   Reason = "not_an_email"
	ReasonNotUUID    Reason = "not_a_uuid"
	ReasonZeroDevice Reason = "zero_device_id"
	ReasonBadType    Reason = "unknown_type"
	// ReasonNotString is used by decoders for an identifier field whose JSON
	// value is not a string (a number, an object...).
	ReasonNotString Reason = "not_a_string"
)

// Reasons lists every Reason, for pre-initialising metric label values.
func Reasons() []Reason {
	return []Reason{ReasonEmpty, ReasonTooLong, ReasonNotEmail, ReasonNotUUID, ReasonZeroDevice, ReasonBadType, ReasonNotString}
}

// RejectError tells why a value of a type was rejected. It never holds the
// value itself, so it may be logged.
type RejectError struct {
	Type   Type
	Reason Reason
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("%s identifier rejected: %s", e.Type, e.Reason)
}

// maxLen bounds what is looked at: RFC 5321 caps an address at 254 octets.
const maxLen = 320

// Of normalises value as an identifier of type t and returns its hash.
// A 64-hex value is taken as already hashed. It allocates nothing unless it
// rejects the value.
func Of(t Type, value []byte) (Hash, error) {
	h, reason := Parse(t, value)
	if reason != "" {
		return Hash{}, &RejectError{t, reason}
	}
	return h, nil
}

// Parse is Of for hot paths: it returns the reason a value is rejected
// instead of an error, and never allocates. The reason is "" on success.
func Parse(t Type, value []byte) (Hash, Reason) {
	if !t.Valid() {
		return Hash{}, ReasonBadType
	}
	v := trimSpace(value)
	if len(v) == 0 {
		return Hash{}, ReasonEmpty
	}
	if len(v) == 64 {
		if h, ok := parseHex(v); ok {
			return h, ""
		}
	}
	if len(v) > maxLen {
		return Hash{}, ReasonTooLong
	}
	// Lower-casing may grow a UTF-8 sequence by half; twice maxLen is room
	// enough for the normalised form to stay on the stack.
	var buf [maxLen * 2]byte
	var (
		n      []byte
		reason Reason
	)
	if t == Email {
		n, reason = normaliseEmail(buf[:0], v)
	} else {
		n, reason = normaliseUUID(buf[:0], v, t == IDFA)
	}
	if reason != "" {
		return Hash{}, reason
	}
	return sha256.Sum256(n), ""
}

// OfString is Of for a string value.
func OfString(t Type, value string) (Hash, error) { return Of(t, []byte(value)) }

// Normalise returns the normalised plaintext form that Of hashes (for a
// 64-hex value: the value lowercased). It is for tools that explain a hash
// (pinsync hash); the sync path never keeps it.
func Normalise(t Type, value string) (string, error) {
	if !t.Valid() {
		return "", &RejectError{t, ReasonBadType}
	}
	v := trimSpace([]byte(value))
	if len(v) == 0 {
		return "", &RejectError{t, ReasonEmpty}
	}
	if len(v) == 64 {
		if _, ok := parseHex(v); ok {
			return strings.ToLower(string(v)), nil
		}
	}
	if len(v) > maxLen {
		return "", &RejectError{t, ReasonTooLong}
	}
	var (
		n      []byte
		reason Reason
	)
	if t == Email {
		n, reason = normaliseEmail(nil, v)
	} else {
		n, reason = normaliseUUID(nil, v, t == IDFA)
	}
	if reason != "" {
		return "", &RejectError{t, reason}
	}
	return string(n), nil
}

// trimSpace removes leading and trailing white space, ASCII and Unicode
// (as strings.TrimSpace), without allocating.
func trimSpace(b []byte) []byte {
	for len(b) > 0 {
		if c := b[0]; c < utf8.RuneSelf {
			if !isSpace(c) {
				break
			}
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		if !unicode.IsSpace(r) {
			break
		}
		b = b[size:]
	}
	for len(b) > 0 {
		if c := b[len(b)-1]; c < utf8.RuneSelf {
			if !isSpace(c) {
				break
			}
			b = b[:len(b)-1]
			continue
		}
		r, size := utf8.DecodeLastRune(b)
		if !unicode.IsSpace(r) {
			break
		}
		b = b[:len(b)-size]
	}
	return b
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// normaliseEmail lowercases (Unicode-aware) and checks the address shape:
// one '@', a non-empty local part, a domain with a dot, no spaces, commas or
// control characters (a comma would split Pinterest's records string).
func normaliseEmail(dst, v []byte) ([]byte, Reason) {
	at := -1
	ascii := true
	for i, c := range v {
		switch {
		case c == '@':
			if at >= 0 {
				return nil, ReasonNotEmail
			}
			at = i
		case c <= ' ' || c == ',' || c == 0x7f || c == '"' || c == '<' || c == '>':
			return nil, ReasonNotEmail
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if at <= 0 || at == len(v)-1 {
		return nil, ReasonNotEmail
	}
	domain := v[at+1:]
	dot := false
	for i, c := range domain {
		if c == '.' {
			if i == 0 || i == len(domain)-1 || domain[i-1] == '.' {
				return nil, ReasonNotEmail
			}
			dot = true
		}
	}
	if !dot {
		return nil, ReasonNotEmail
	}
	if ascii {
		for _, c := range v {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		return dst, ""
	}
	if !utf8.Valid(v) {
		return nil, ReasonNotEmail
	}
	// The same mapping as strings.ToLower, without its allocation.
	for len(v) > 0 {
		r, size := utf8.DecodeRune(v)
		dst = utf8.AppendRune(dst, unicode.ToLower(r))
		v = v[size:]
	}
	return dst, ""
}

// normaliseUUID checks an 8-4-4-4-12 hex id, rejects the all-zero one and
// writes it in one case: upper for an IDFA (as iOS prints it and Pinterest
// matches it), lower for an Android advertising id.
func normaliseUUID(dst, v []byte, upper bool) ([]byte, Reason) {
	if len(v) != 36 {
		return nil, ReasonNotUUID
	}
	zero := true
	for i, c := range v {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return nil, ReasonNotUUID
			}
			dst = append(dst, c)
			continue
		}
		if _, ok := unhex(c); !ok {
			return nil, ReasonNotUUID
		}
		switch {
		case upper && 'a' <= c && c <= 'f':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'F':
			c += 'a' - 'A'
		}
		if c != '0' {
			zero = false
		}
		dst = append(dst, c)
	}
	if zero {
		return nil, ReasonZeroDevice
	}
	return dst, ""
}
