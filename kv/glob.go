package kv

import "strings"

// maxGlobNesting bounds the recursion of Match, as Redis 7 does against
// abusive patterns.
const maxGlobNesting = 1000

// Match reports whether s matches the Redis glob pattern (KEYS, SCAN MATCH):
// '*' any run of bytes, '?' one byte, '[abc]', '[^abc]', '[a-z]' a byte in
// (or not in) a set, and '\x' the byte x. It works on bytes, not runes, as
// Redis does. This is a port of Redis 7's stringmatchlen, including its
// defence against exponential backtracking (skipLongerMatches) and nesting.
func Match(pattern, s string) bool {
	if pattern == "*" {
		return true
	}
	if s == "" {
		// stringmatchlen never matches the empty string, but Redis's KEYS and
		// SCAN skip matching for "*", so "*" lists the empty key; do the
		// same for any run of stars.
		return strings.Trim(pattern, "*") == ""
	}
	skipLonger := false
	return globMatch(pattern, s, &skipLonger, 0)
}

func globMatch(p, s string, skipLonger *bool, nesting int) bool {
	if nesting > maxGlobNesting {
		return false
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if globMatch(p[1:], s, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			// No match for the rest of the pattern anywhere in the rest of
			// the string: longer matches of earlier stars cannot help either.
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			p = p[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			matched := false
			for {
				if len(p) >= 2 && p[0] == '\\' {
					p = p[1:]
					if p[0] == s[0] {
						matched = true
					}
				} else if len(p) == 0 {
					// Unterminated class: Redis treats the end of the
					// pattern as closing it.
					break
				} else if p[0] == ']' {
					break
				} else if len(p) >= 3 && p[1] == '-' {
					lo, hi := p[0], p[2]
					if lo > hi {
						lo, hi = hi, lo
					}
					p = p[2:]
					if s[0] >= lo && s[0] <= hi {
						matched = true
					}
				} else if p[0] == s[0] {
					matched = true
				}
				p = p[1:]
			}
			if not {
				matched = !matched
			}
			if !matched {
				return false
			}
			s = s[1:]
			if len(p) == 0 {
				// The class ran to the end of the pattern.
				return len(s) == 0
			}
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}
