package format

import (
	"errors"
	"strconv"
)

// ErrRegistryUnavailable matches (errors.Is) every *RegistryUnavailableError.
var ErrRegistryUnavailable = errors.New("schema registry unavailable")

// RegistryUnavailableError says that the schema registry could not tell a
// record's schema: it was unreachable, timed out, answered 5xx, refused
// the credentials (401, 403), answered something that is not the
// registry's own "schema not found", or the caller's context ended. The
// record is not malformed: the consumer must pause and try it again, not
// dead-letter it. It never holds a value from the record.
type RegistryUnavailableError struct {
	// SchemaID is the schema asked for.
	SchemaID int
	// Status is the HTTP status the registry answered, 0 when none.
	Status int
	// Err is the cause (a *sr.ResponseError, a net or context error).
	Err error
}

func (e *RegistryUnavailableError) Error() string {
	s := "schema registry unavailable for schema " + strconv.Itoa(e.SchemaID)
	if e.Status != 0 {
		s += " (HTTP " + strconv.Itoa(e.Status) + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *RegistryUnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRegistryUnavailable) true.
func (e *RegistryUnavailableError) Is(target error) bool { return target == ErrRegistryUnavailable }
