// Package schemas is pinsync's event contract: the JSON Schema documents for
// every record shape pinsync accepts (Segment Engage identify and track
// messages, and a compact native format), and the decoder that turns any
// accepted Kafka record into one Event with hashed identifiers.
//
// It does not keep state: what an event means for a profile's audiences is
// decided in package consumer.
package schemas

import "github.com/pinsync/pinsync/schemas/ident"

// Kind says what an Event does to a profile.
type Kind uint8

const (
	// KindIdentify adds identifiers to a profile (Segment identify), or
	// replaces its whole identifier set when Replace is set (native identify).
	KindIdentify Kind = iota + 1
	// KindMembership says whether the profile is in Audience, and may carry
	// identifiers, which are added to the profile as by an identify.
	KindMembership
	// KindForget is a privacy deletion: the profile leaves every audience and
	// its state is dropped.
	KindForget
)

func (k Kind) String() string {
	switch k {
	case KindIdentify:
		return "identify"
	case KindMembership:
		return "membership"
	case KindForget:
		return "forget"
	}
	return "unknown"
}

// Identifier is one hashed identifier of a profile.
type Identifier struct {
	Type ident.Type
	Hash ident.Hash
}

// Event is the one internal form of every accepted record. The decoder
// reuses an Event's slices between calls: a caller that keeps an Event past
// the next Decode must copy it.
type Event struct {
	Kind    Kind
	Profile string
	// Audience is the audience key (membership only); AudienceName its display
	// name when the record carries one; AdAccount an ad-account override from
	// the record (Segment audience_settings), used only when configured so.
	Audience     string
	AudienceName string
	AdAccount    string
	Member       bool
	// Replace is set by a native identify: Identifiers is the profile's whole
	// set and any identifier not in it leaves the profile.
	Replace bool
	// Identifiers to add to the profile, hashed.
	Identifiers []Identifier
	// Drop lists identifiers that must leave the profile (and so every list),
	// for example a device id whose ad tracking was turned off.
	Drop []Identifier
	// NoConsent is set when the record's consent preferences withhold the
	// configured category: the profile leaves every audience.
	NoConsent bool
	// Timestamp is the event time in Unix milliseconds (0 when absent), used
	// for the event-to-upload latency.
	Timestamp int64
	// Rejected counts identifier values that were present but invalid and
	// were skipped (the event itself was accepted).
	Rejected int
	// RejectReasons holds the reasons for the Rejected values (never values).
	RejectReasons []ident.Reason
	// Key says whether the record's Kafka key is the profile id its payload
	// names (Segment userId, else anonymousId; native profile): records of a
	// profile keyed otherwise may reach several partitions.
	Key KeyState
}

// KeyState is how a record's Kafka key stands to the profile id of its
// payload.
type KeyState uint8

const (
	// KeyIsProfile: the key is the payload's profile id, or the payload
	// names none (a Segment record identified by its key alone).
	KeyIsProfile KeyState = iota
	// KeyMissing: the record has no key (or an empty one).
	KeyMissing
	// KeyNotProfile: the key is not the payload's profile id.
	KeyNotProfile
)

// String names the state as metrics and /status do.
func (k KeyState) String() string {
	switch k {
	case KeyMissing:
		return "missing"
	case KeyNotProfile:
		return "not_profile"
	}
	return "profile"
}
