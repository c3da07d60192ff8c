// Package glob matches audience keys against the globs of
// sync.audiences.allow and deny. The syntax is path.Match's, except that
// '*' matches any sequence of characters, '/' included, and '?' any one
// character: audience keys are not paths, and "engage/*" must select
// "engage/space/audience" too.
package glob

import (
	"fmt"
	"regexp"
	"strings"
)

// Glob is a compiled pattern.
type Glob struct {
	pattern string
	re      *regexp.Regexp
}

// Compile parses pattern:
//
//	'*'         any sequence of characters, '/' included
//	'?'         any one character
//	'[' [ '^' ] { range } ']'   a character class (as in path.Match)
//	'\\' c      the character c
//	c           c itself
func Compile(pattern string) (*Glob, error) {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			if i+1 == len(pattern) {
				return nil, fmt.Errorf("glob %q: trailing backslash", pattern)
			}
			i++
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		case '[':
			end, class, err := parseClass(pattern, i)
			if err != nil {
				return nil, err
			}
			b.WriteString(class)
			i = end
		default:
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		}
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("glob %q: %v", pattern, err)
	}
	return &Glob{pattern: pattern, re: re}, nil
}

// parseClass translates the class that opens at pattern[start] ('[') and
// returns the index of its closing ']'.
func parseClass(pattern string, start int) (int, string, error) {
	var b strings.Builder
	b.WriteByte('[')
	i := start + 1
	if i < len(pattern) && pattern[i] == '^' {
		b.WriteByte('^')
		i++
	}
	n := 0
	for ; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == ']' && n > 0:
			b.WriteByte(']')
			return i, b.String(), nil
		case c == '\\':
			if i+1 == len(pattern) {
				return 0, "", fmt.Errorf("glob %q: trailing backslash", pattern)
			}
			i++
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		case c == '-' && n > 0 && i+1 < len(pattern) && pattern[i+1] != ']':
			b.WriteByte('-')
			continue // a range's dash is not a member of its own
		case c == '[' || c == ']':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		}
		n++
	}
	return 0, "", fmt.Errorf("glob %q: unclosed character class", pattern)
}

// Match reports whether s matches the whole pattern.
func (g *Glob) Match(s string) bool { return g.re.MatchString(s) }

// String returns the pattern.
func (g *Glob) String() string { return g.pattern }

// HasMeta reports whether pattern has any special character: without one
// it matches only itself.
func HasMeta(pattern string) bool { return strings.ContainsAny(pattern, `*?[\`) }
