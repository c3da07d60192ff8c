package stream

import (
	"time"

	"github.com/pinsync/pinsync/schemas"
)

// Records are written by appending to a byte slice rather than through
// encoding/json: the generator must write a million records in seconds.

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString[S ~string | ~[]byte](b []byte, s S) []byte {
	b, _ = schemas.AppendQuoted(b, s)
	return b
}

// appendKey appends "key": (key must need no escaping).
func appendKey(b []byte, key string) []byte {
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// appendTime appends t as a quoted RFC 3339 UTC time with milliseconds, the
// form Segment uses: "2026-03-01T12:00:00.000Z".
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	return append(b, '"')
}
