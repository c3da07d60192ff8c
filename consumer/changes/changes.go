// Package changes is the contract of the changes topic, the internal topic
// that joins pinsync's two stages the way a repartition topic joins two
// Kafka Streams processors: the profile stage (keyed by profile) writes
// each list's changes to it keyed by list, and the list stage (keyed by
// list) reads them. A list lives in exactly one partition of the topic, so
// exactly one member of the list stage's group owns it.
//
// A record carries changes to one list. Its Kafka key is the list's key,
// "<TYPE>:<audience key>" (for example "EMAIL:vip_customers"); its value is
// a header (the ad account and the audience's display name, as the profile
// stage resolved them) followed by the changes, each a SHA-256 digest with
// its operation, whether the profile state vouches for where the list stood
// before it (see Change.Vouched) and its event time. No plaintext
// identifier is ever written.
//
// It does not decide what the changes are (package profiles) or what is
// done with them (package lists).
package changes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/schemas/ident"
)

// Op is what a change does to a list.
type Op uint8

// The operations. Zero is no operation.
const (
	Add Op = iota + 1
	Remove
)

// String returns "add" or "remove".
func (o Op) String() string {
	switch o {
	case Add:
		return "add"
	case Remove:
		return "remove"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Change is one record to add to or remove from one list.
type Change struct {
	Hash ident.Hash
	Op   Op
	// Vouched is set when the profile state vouches for where the list
	// stood for the record before this change: out before an add, in
	// before a remove. The list stage cancels a vouched change that brings
	// a record back to where it stood (an add then a remove of a record
	// never sent). An exit pinsync never saw enter is not vouched: the
	// list may be older than the state.
	Vouched bool
	// TS is the event time, Unix milliseconds (0 when unknown).
	TS int64
	// Legacy is set on a change written by a version of pinsync that
	// hashed IDFAs from their lower-case form, which Pinterest does not
	// match: such an IDFA add is never uploaded. Writers leave it unset.
	Legacy bool
}

// List names one Pinterest list: an audience and an identifier type.
type List struct {
	Audience string
	Type     ident.Type
}

// String returns the list's key.
func (l List) String() string { return string(l.AppendKey(nil)) }

// AppendKey appends the list's record key, "<TYPE>:<audience>".
func (l List) AppendKey(b []byte) []byte {
	b = append(b, l.Type.String()...)
	b = append(b, ':')
	return append(b, l.Audience...)
}

// ErrMalformed is returned (wrapped) for a key or value that is not a
// changes record.
var ErrMalformed = errors.New("changes: malformed record")

// ErrUnknownVersion is returned (wrapped) for a value of a format version
// newer than this pinsync reads: written by a newer pinsync. Unlike a
// malformed record it is not skipped: its reader stops there.
var ErrUnknownVersion = errors.New("changes: a record of a newer format version")

// Version is the format version of the values this pinsync writes, and
// the newest it reads.
const Version = version

// ParseKey reads a record key written by AppendKey, and only that form: a
// key spelt otherwise ("email:vip", " MAID:vip") would be another key for
// the same list, partitioned elsewhere.
func ParseKey(k []byte) (List, error) {
	s := string(k)
	typ, aud, ok := strings.Cut(s, ":")
	if !ok || aud == "" {
		return List{}, fmt.Errorf("%w: key is not TYPE:audience", ErrMalformed)
	}
	t, err := ident.ParseType(typ)
	if err != nil {
		return List{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if typ != t.String() {
		return List{}, fmt.Errorf("%w: list type %q is not written %s", ErrMalformed, typ, t)
	}
	return List{Audience: aud, Type: t}, nil
}

// Partitioner places each list in its partition of the changes topic:
// murmur2 of the list key, as franz-go's and the Java client's default
// partitioner do, so that every replica agrees on a list's owner for a
// given partition count.
type Partitioner struct {
	n    int
	part kgo.TopicPartitioner
	rec  kgo.Record
}

// NewPartitioner returns the partitioner for a topic of n partitions.
func NewPartitioner(n int) *Partitioner {
	return &Partitioner{n: n, part: kgo.StickyKeyPartitioner(nil).ForTopic("")}
}

// Partition returns the partition of list key k. It is not safe for
// concurrent use (it reuses one record).
func (p *Partitioner) Partition(k []byte) int32 {
	p.rec.Key = k
	return int32(p.part.Partition(&p.rec, p.n))
}

// Header is what a record says of its list besides the changes.
type Header struct {
	// AdAccount is the ad account the list belongs to.
	AdAccount string
	// Name is the audience's display name, when an event carried one.
	Name string
}

// version is the first byte of every value.
const version = 1

// changeSize is the encoded size of a change before its time: flags and
// the digest.
const changeSize = 1 + len(ident.Hash{})

// MaxChanges is the most changes a writer puts in one record: a record
// stays far below Kafka's default message size, and a reader bounds its
// memory by records.
const MaxChanges = 1024

const (
	flagOp      = 0x03
	flagVouched = 0x04
	// flagRules marks a change hashed under Pinterest's identifier rules
	// (IDFAs uppercased). Versions before them did not set it; they ignore
	// it when they read, so the value keeps version 1.
	flagRules = 0x08
)

// AppendValue appends a record value holding h and cs.
//
// The value is: version; the ad account and the name, each as a uvarint
// length and bytes; the event time of the first change (varint); the count
// of changes (uvarint); then each change as a flags byte (the op in bits
// 0-1, vouched in bit 2, hashed under Pinterest's identifier rules in bit
// 3, unless Legacy), its 32-byte digest and its event time as a varint
// difference from the first.
func AppendValue(b []byte, h Header, cs []Change) []byte {
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(len(h.AdAccount)))
	b = append(b, h.AdAccount...)
	b = binary.AppendUvarint(b, uint64(len(h.Name)))
	b = append(b, h.Name...)
	var base int64
	if len(cs) > 0 {
		base = cs[0].TS
	}
	b = binary.AppendVarint(b, base)
	b = binary.AppendUvarint(b, uint64(len(cs)))
	for i := range cs {
		c := &cs[i]
		f := byte(c.Op) & flagOp
		if c.Vouched {
			f |= flagVouched
		}
		if !c.Legacy {
			f |= flagRules
		}
		b = append(b, f)
		b = append(b, c.Hash[:]...)
		b = binary.AppendVarint(b, c.TS-base)
	}
	return b
}

// Value is a parsed record value. Its strings alias the record.
type Value struct {
	Header Header
	n      int
	base   int64
	rest   []byte
}

// Len is the number of changes.
func (v *Value) Len() int { return v.n }

// Parse reads the header of a record value; Each reads its changes.
func Parse(b []byte) (Value, error) {
	var v Value
	switch {
	case len(b) >= 1 && b[0] > version:
		return v, fmt.Errorf("%w: version %d, this pinsync reads up to %d", ErrUnknownVersion, b[0], version)
	case len(b) < 1 || b[0] != version:
		return v, fmt.Errorf("%w: unknown version", ErrMalformed)
	}
	b = b[1:]
	var err error
	var acct, name []byte
	if acct, b, err = lengthPrefixed(b); err != nil {
		return v, err
	}
	if name, b, err = lengthPrefixed(b); err != nil {
		return v, err
	}
	base, k := binary.Varint(b)
	if k <= 0 {
		return v, fmt.Errorf("%w: bad time", ErrMalformed)
	}
	b = b[k:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)/changeSize) {
		return v, fmt.Errorf("%w: bad count", ErrMalformed)
	}
	v.Header = Header{AdAccount: string(acct), Name: string(name)}
	v.n, v.base, v.rest = int(n), base, b[k:]
	return v, nil
}

func lengthPrefixed(b []byte) (s, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("%w: bad length", ErrMalformed)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// Each calls fn with each change in order. It stops at, and returns, a
// malformed change.
func (v *Value) Each(fn func(Change)) error {
	b := v.rest
	var c Change
	for i := 0; i < v.n; i++ {
		if len(b) < changeSize+1 {
			return fmt.Errorf("%w: truncated change", ErrMalformed)
		}
		f := b[0]
		c.Op = Op(f & flagOp)
		if c.Op != Add && c.Op != Remove {
			return fmt.Errorf("%w: bad operation", ErrMalformed)
		}
		c.Vouched = f&flagVouched != 0
		c.Legacy = f&flagRules == 0
		copy(c.Hash[:], b[1:changeSize])
		d, k := binary.Varint(b[changeSize:])
		if k <= 0 {
			return fmt.Errorf("%w: bad time", ErrMalformed)
		}
		c.TS = v.base + d
		b = b[changeSize+k:]
		fn(c)
	}
	return nil
}
