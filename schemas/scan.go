package schemas

import (
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is the JSON scanner under the decoder. It validates the whole
// record as RFC 8259 JSON (stricter than encoding/json only in rejecting
// invalid UTF-8 and nesting deeper than maxDepth), but remembers only where
// the values it is asked about are: a span of the input. Nothing is copied or
// allocated while scanning; strings are unescaped later, and only those that
// are read.

// maxDepth bounds the nesting of objects and arrays, so that a hostile record
// cannot exhaust the stack. Segment messages nest four or five levels.
const maxDepth = 128

// valueKind is the JSON type of a span.
type valueKind uint8

const (
	kindAbsent valueKind = iota // the member was not there
	kindNull
	kindTrue
	kindFalse
	kindNumber
	kindString
	kindObject
	kindArray
)

// span locates one JSON value in the input. For a string, start and end
// exclude the quotes and esc says whether it holds escapes.
type span struct {
	start, end int
	kind       valueKind
	esc        bool
}

func (s span) present() bool { return s.kind != kindAbsent && s.kind != kindNull }

// scanner walks one JSON text. The first error stops it: err is the reason
// and every method returns false from then on.
type scanner struct {
	data  []byte
	pos   int
	depth int
	err   string
	// rawKey is the current member name as it is in the input; key holds
	// it unescaped when it had escapes.
	rawKey span
	key    [32]byte
}

func (s *scanner) fail(reason string) bool {
	if s.err == "" {
		s.err = reason
	}
	return false
}

func (s *scanner) ws() {
	d := s.data
	for s.pos < len(d) && d[s.pos] <= ' ' {
		switch d[s.pos] {
		case ' ':
			s.pos++
			// Runs of indentation: eight spaces at a time.
			for s.pos+8 <= len(d) && binary.LittleEndian.Uint64(d[s.pos:]) == ones*' ' {
				s.pos += 8
			}
		case '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// beginObject consumes '{', which peek returned.
func (s *scanner) beginObject() bool {
	s.pos++
	s.depth++
	if s.depth > maxDepth {
		return s.fail(ReasonTooDeep)
	}
	return true
}

// member advances to the next member of the current object and returns its
// name (unescaped, or nil when too long to be one pinsync reads) with the
// scanner placed on its value. It returns false after the closing brace, or
// on error. first must point to a variable that is true before the first
// call.
func (s *scanner) member(first *bool) ([]byte, bool) {
	if s.err != "" {
		return nil, false
	}
	c := s.peek()
	if *first {
		*first = false
		if c == '}' {
			s.pos++
			s.depth--
			return nil, false
		}
	} else {
		switch c {
		case '}':
			s.pos++
			s.depth--
			return nil, false
		case ',':
			s.pos++
			c = s.peek()
		default:
			return nil, s.fail(ReasonInvalidJSON)
		}
	}
	if c != '"' {
		return nil, s.fail(ReasonInvalidJSON)
	}
	k, ok := s.str()
	if !ok {
		return nil, false
	}
	if s.peek() != ':' {
		return nil, s.fail(ReasonInvalidJSON)
	}
	s.pos++
	s.rawKey = k
	name := s.data[k.start:k.end]
	if k.esc {
		switch {
		case len(name) <= len(s.key):
			// Unescaping never lengthens a string.
			name = appendUnescaped(s.key[:0], name)
		case len(name) <= 6*len(s.key):
			// Rare: a long escaped name that may still be one we read.
			name = appendUnescaped(nil, name)
		default:
			// Too long to unescape to any name pinsync reads.
			name = nil
		}
	}
	return name, true
}

// value scans any value and returns its span; for objects and arrays the
// span covers the brackets.
func (s *scanner) value() span {
	if s.err != "" {
		return span{}
	}
	c := s.peek()
	start := s.pos
	switch {
	case c == '"':
		sp, _ := s.str()
		return sp
	case c == '{':
		if !s.beginObject() {
			return span{}
		}
		first := true
		for {
			if _, ok := s.member(&first); !ok {
				break
			}
			if s.value().kind == kindAbsent {
				return span{}
			}
		}
		if s.err != "" {
			return span{}
		}
		return span{start: start, end: s.pos, kind: kindObject}
	case c == '[':
		if !s.beginArray() {
			return span{}
		}
		first := true
		for s.element(&first) {
			if s.value().kind == kindAbsent {
				return span{}
			}
		}
		if s.err != "" {
			return span{}
		}
		return span{start: start, end: s.pos, kind: kindArray}
	case c == 't':
		return s.literal("true", kindTrue)
	case c == 'f':
		return s.literal("false", kindFalse)
	case c == 'n':
		return s.literal("null", kindNull)
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	}
	s.fail(ReasonInvalidJSON)
	return span{}
}

// beginArray consumes '[', which peek returned.
func (s *scanner) beginArray() bool {
	s.pos++
	s.depth++
	if s.depth > maxDepth {
		return s.fail(ReasonTooDeep)
	}
	return true
}

// element advances to the next array element; false after ']' or on error.
func (s *scanner) element(first *bool) bool {
	if s.err != "" {
		return false
	}
	c := s.peek()
	if c == ']' && *first {
		s.pos++
		s.depth--
		*first = false
		return false
	}
	if !*first {
		switch c {
		case ']':
			s.pos++
			s.depth--
			return false
		case ',':
			s.pos++
		default:
			return s.fail(ReasonInvalidJSON)
		}
	}
	*first = false
	return s.err == ""
}

func (s *scanner) literal(lit string, k valueKind) span {
	start := s.pos
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		s.fail(ReasonInvalidJSON)
		return span{}
	}
	s.pos += len(lit)
	return span{start: start, end: s.pos, kind: k}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number validates -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() span {
	d, i := s.data, s.pos
	start := i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && isDigit(d[i]):
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	default:
		s.fail(ReasonInvalidJSON)
		return span{}
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			s.fail(ReasonInvalidJSON)
			return span{}
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			s.fail(ReasonInvalidJSON)
			return span{}
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	s.pos = i
	return span{start: start, end: i, kind: kindNumber}
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain reports whether none of the eight bytes in w needs a closer look in
// a string: no control character, quote, backslash or non-ASCII byte.
func plain(w uint64) bool {
	ctl := (w - ones*0x20) & ^w & highs
	q := w ^ (ones * '"')
	q = (q - ones) & ^q & highs
	b := w ^ (ones * '\\')
	b = (b - ones) & ^b & highs
	return (ctl | q | b | w&highs) == 0
}

// str scans the string at s.pos (on its opening quote), checking escapes
// and UTF-8.
func (s *scanner) str() (span, bool) {
	d := s.data
	i := s.pos + 1
	sp := span{start: i, kind: kindString}
	for {
		for i < len(d) && plainByte[d[i]] != 0 {
			i++
		}
		if i >= len(d) {
			s.fail(ReasonInvalidJSON)
			return span{}, false
		}
		switch c := d[i]; {
		case c == '"':
			sp.end = i
			s.pos = i + 1
			return sp, true
		case c == '\\':
			sp.esc = true
			if i+1 >= len(d) {
				s.fail(ReasonInvalidJSON)
				return span{}, false
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(d, i+2); !ok {
					s.fail(ReasonInvalidJSON)
					return span{}, false
				}
				i += 6
			default:
				s.fail(ReasonInvalidJSON)
				return span{}, false
			}
		case c < 0x20:
			s.fail(ReasonInvalidJSON)
			return span{}, false
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				s.fail(ReasonInvalidJSON)
				return span{}, false
			}
			i += size
		}
	}
}

// hex4 decodes the four hex digits at d[i:].
func hex4(d []byte, i int) (rune, bool) {
	if len(d)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendUnescaped appends the unescaped form of raw, the inside of a string
// the scanner validated. A lone surrogate becomes U+FFFD, as in
// encoding/json.
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw, i+2)
			i += 6
			if utf16.IsSurrogate(r) {
				dec := utf8.RuneError
				if len(raw)-i >= 6 && raw[i] == '\\' && raw[i+1] == 'u' {
					r2, _ := hex4(raw, i+2)
					if p := utf16.DecodeRune(r, r2); p != utf8.RuneError {
						dec = p
						i += 6
					}
				}
				r = dec
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

// plainByte[c] is 1 when c needs no closer look inside a string: not a
// control character, quote, backslash or non-ASCII byte. (A constant, so
// that the table is not package state.)
const plainByte = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x00\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
