package schemas

import "unicode/utf8"

// This file lets the envelopes of package schemas/format (a Kafka Connect
// envelope, a structured CloudEvent) be read with the decoder's own JSON
// scanner, so that a wrapped record is validated exactly as a plain one,
// and gives the writers of JSON records (the formats, the stream
// generator) one way to quote a string.

// Members scans value, which must be one JSON object, and sets raw[i] to the
// JSON text of its top-level member names[i] (the last one when repeated;
// nil when absent). The whole value is validated as Decode validates a
// record; the error is a *DecodeError (empty_record, invalid_json, too_deep,
// not_an_object). raw must be as long as names; its slices point into value.
func Members(value []byte, names []string, raw [][]byte) error {
	clear(raw)
	s := scanner{data: value}
	if err := s.object(); err != nil {
		return err
	}
	s.beginObject()
	for first := true; ; {
		name, ok := s.member(&first)
		if !ok {
			break
		}
		i := -1
		for j, n := range names {
			if string(name) == n {
				i = j
			}
		}
		v := s.value()
		if i < 0 || s.err != "" {
			continue
		}
		start, end := v.start, v.end
		if v.kind == kindString {
			start, end = start-1, end+1 // the quotes
		}
		raw[i] = value[start:end]
	}
	if err := s.end(); err != nil {
		clear(raw)
		return err
	}
	return nil
}

// Unquote appends to dst the unescaped content of raw, a JSON string as
// Members returns it (quotes included). ok is false when raw is not a
// string.
func Unquote(dst, raw []byte) (out []byte, ok bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return dst, false
	}
	return appendUnescaped(dst, raw[1:len(raw)-1]), true
}

// AppendQuoted appends s to b as a JSON string, escaping quotes,
// backslashes and control characters. Valid UTF-8 passes through; an
// invalid byte becomes U+FFFD (as encoding/json does) and makes valid
// false.
func AppendQuoted[S ~string | ~[]byte](b []byte, s S) (out []byte, valid bool) {
	const hex = "0123456789abcdef"
	valid = true
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			// At most UTFMax bytes: converting them does not allocate.
			r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				valid = false
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0x0f])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), valid
}
