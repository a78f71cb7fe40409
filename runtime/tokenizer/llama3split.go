package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// llama3Pattern is the split regex of the Llama 3 tokenizer.json (and of
// tiktoken's cl100k_base).
const llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// llama3Split finds the matches of llama3Pattern without a regex engine: it
// tries the seven alternatives in order at each position, resolving the
// backtracking of each by hand. It matches regexp2 on the same pattern (tested
// differentially), several times faster. \s is Unicode White_Space
// (unicode.IsSpace), \p{L} unicode.IsLetter, \p{N} unicode.IsNumber; (?i) is
// ASCII case folding, as in regexp2.
func llama3Split(s string) [][2]int {
	spans := make([][2]int, 0, len(s)/4+1)
	for i := 0; i < len(s); {
		n := llama3Match(s, i)
		spans = append(spans, [2]int{i, i + n})
		i += n
	}
	return spans
}

// llama3Match returns the length in bytes of the match starting at s[i:];
// every position starts one (the last alternatives cover any character).
func llama3Match(s string, i int) int {
	r0, n0 := utf8.DecodeRuneInString(s[i:])
	r1, n1 := utf8.DecodeRuneInString(s[i+n0:]) // RuneError, 0 at the end
	// 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r0 == '\'' && n1 > 0 {
		switch lower(r1) {
		case 's', 't', 'm', 'd':
			return n0 + n1
		case 'r', 'v', 'l':
			r2, n2 := utf8.DecodeRuneInString(s[i+n0+n1:])
			if n2 > 0 && (lower(r1) == 'r' && lower(r2) == 'e' || lower(r1) == 'v' && lower(r2) == 'e' || lower(r1) == 'l' && lower(r2) == 'l') {
				return n0 + n1 + n2
			}
		}
	}
	// 2. [^\r\n\p{L}\p{N}]?\p{L}+
	if unicode.IsLetter(r0) {
		return n0 + runLen(s[i+n0:], unicode.IsLetter)
	}
	if r0 != '\r' && r0 != '\n' && !unicode.IsNumber(r0) && n1 > 0 && unicode.IsLetter(r1) {
		return n0 + n1 + runLen(s[i+n0+n1:], unicode.IsLetter)
	}
	// 3. \p{N}{1,3}
	if unicode.IsNumber(r0) {
		n := n0
		for k := 1; k < 3; k++ {
			r, size := utf8.DecodeRuneInString(s[i+n:])
			if size == 0 || !unicode.IsNumber(r) {
				break
			}
			n += size
		}
		return n
	}
	// 4. ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	if start := i + boolInt(r0 == ' '); start < len(s) {
		if r, _ := utf8.DecodeRuneInString(s[start:]); isPunct(r) {
			end := start + runLen(s[start:], isPunct)
			end += runLen(s[end:], isCRLF)
			return end - i
		}
	}
	// r0 is whitespace from here on: the other alternatives all need one.
	ws := n0 + runLen(s[i+n0:], unicode.IsSpace) // the whitespace run
	// 5. \s*[\r\n]+ : up to the last CR/LF of the run
	for k := i + ws; k > i; {
		r, size := utf8.DecodeLastRuneInString(s[i:k])
		if isCRLF(r) {
			return k - i
		}
		k -= size
	}
	// 6. \s+(?!\S) : the run, less its last character unless it ends the text
	if i+ws == len(s) {
		return ws
	}
	if ws > n0 {
		_, size := utf8.DecodeLastRuneInString(s[i : i+ws])
		return ws - size
	}
	// 7. \s+
	return ws
}

func lower(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + ('a' - 'A')
	}
	return r
}

func isCRLF(r rune) bool { return r == '\r' || r == '\n' }

// isPunct is [^\s\p{L}\p{N}].
func isPunct(r rune) bool { return !unicode.IsSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runLen is the length in bytes of the longest prefix of s whose runes satisfy f.
func runLen(s string, f func(rune) bool) int {
	n := 0
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		if !f(r) {
			break
		}
		n += size
	}
	return n
}
