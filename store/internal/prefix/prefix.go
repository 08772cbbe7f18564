// Package prefix turns a prefix match into a range, so that the stores can
// answer "starts with" from an ordered index with two comparisons in byte
// order (SQLite's BINARY collation, PostgreSQL's "C").
package prefix

import "unicode/utf8"

// Upper returns the least string greater than every string that starts
// with p, in byte order (which for UTF-8 is code point order), and false
// when there is none (p empty or made only of utf8.MaxRune). Every string s
// with prefix p satisfies p <= s < Upper(p). p must be valid UTF-8.
func Upper(p string) (string, bool) {
	for p != "" {
		r, size := utf8.DecodeLastRuneInString(p)
		p = p[:len(p)-size]
		next := r + 1
		if next >= 0xD800 && next <= 0xDFFF { // surrogates are not code points
			next = 0xE000
		}
		if next <= utf8.MaxRune {
			return p + string(next), true
		}
	}
	return "", false
}
