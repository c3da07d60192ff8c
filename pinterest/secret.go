package pinterest

import (
	"fmt"
	"log/slog"
)

// Secret is a credential (app secret, token). Every way of printing or
// logging it yields a placeholder; use string(s) where the value is needed.
type Secret string

const redacted = "[REDACTED]"

func (s Secret) redacted() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String returns a placeholder, never the secret.
func (s Secret) String() string { return s.redacted() }

// GoString returns a placeholder, so %#v does not leak the secret either.
func (s Secret) GoString() string { return fmt.Sprintf("pinterest.Secret(%q)", s.redacted()) }

// Format prints a placeholder for every verb (%s, %v, %q, %x, ...).
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.redacted())
}

// LogValue makes slog print a placeholder.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// MarshalText redacts the secret in JSON, YAML or any text encoding, so a
// dumped configuration does not leak it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.redacted()), nil }
