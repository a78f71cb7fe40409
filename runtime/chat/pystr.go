package chat

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// Python str semantics for the methods and filters chat templates use.

// pyIsSpace is str.isspace for one code point: Go's unicode.IsSpace plus
// the ASCII file/group/record/unit separators that Python also counts.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// pyStrip implements str.strip/lstrip/rstrip; chars == nil strips whitespace.
func pyStrip(s string, chars *string, left, right bool) string {
	cut := pyIsSpace
	if chars != nil {
		set := *chars
		cut = func(r rune) bool { return strings.ContainsRune(set, r) }
	}
	if left {
		s = strings.TrimLeftFunc(s, cut)
	}
	if right {
		s = strings.TrimRightFunc(s, cut)
	}
	return s
}

// pySplit implements str.split (sep == nil: runs of whitespace).
func pySplit(s string, sep *string, maxsplit int) ([]string, error) {
	if sep == nil {
		return splitWhitespace(s, maxsplit), nil
	}
	if *sep == "" {
		return nil, fmt.Errorf("split: empty separator")
	}
	return strings.SplitN(s, *sep, maxsplitToN(maxsplit)), nil
}

// pyRSplit implements str.rsplit.
func pyRSplit(s string, sep *string, maxsplit int) ([]string, error) {
	if maxsplit < 0 {
		return pySplit(s, sep, maxsplit)
	}
	if sep == nil {
		// Split from the right: reverse, split, reverse back.
		parts := splitWhitespace(reverseString(s), maxsplit)
		out := make([]string, len(parts))
		for i, p := range parts {
			out[len(parts)-1-i] = reverseString(p)
		}
		return out, nil
	}
	if *sep == "" {
		return nil, fmt.Errorf("rsplit: empty separator")
	}
	var out []string
	for range maxsplit {
		i := strings.LastIndex(s, *sep)
		if i < 0 {
			break
		}
		out = append(out, s[i+len(*sep):])
		s = s[:i]
	}
	out = append(out, s)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func maxsplitToN(maxsplit int) int {
	if maxsplit < 0 {
		return -1
	}
	return maxsplit + 1
}

// splitWhitespace is str.split() with no separator: leading whitespace is
// skipped, and after maxsplit splits the rest is kept with its trailing
// whitespace.
func splitWhitespace(s string, maxsplit int) []string {
	out := []string{}
	for {
		s = strings.TrimLeftFunc(s, pyIsSpace)
		if s == "" {
			return out
		}
		if maxsplit >= 0 && len(out) == maxsplit {
			return append(out, s)
		}
		i := strings.IndexFunc(s, pyIsSpace)
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
}

func reverseString(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}

// pyReplace implements str.replace(old, new, count=-1).
func pyReplace(s, old, new string, count int) string {
	return strings.Replace(s, old, new, count)
}

// pyUpper and pyLower use full Unicode case mapping, as Python does
// ("ß".upper() == "SS"). A Caser is stateful, so each call makes its own.
func pyUpper(s string) string { return cases.Upper(language.Und).String(s) }
func pyLower(s string) string { return cases.Lower(language.Und).String(s) }

func isCased(r rune) bool { return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) }

// titleRune is the title-case mapping of one rune (full mapping for ß).
func titleRune(r rune) string {
	if r == 'ß' {
		return "Ss"
	}
	return string(unicode.ToTitle(r))
}

// pyTitle implements str.title: a cased character following an uncased one
// is title-cased, every other cased character is lower-cased.
func pyTitle(s string) string {
	var b strings.Builder
	prevCased := false
	for _, r := range s {
		if prevCased {
			b.WriteString(pyLower(string(r)))
		} else {
			b.WriteString(titleRune(r))
		}
		prevCased = isCased(r)
	}
	return b.String()
}

// pyCapitalize implements str.capitalize (Python >= 3.8: first character
// title-cased, the rest lower-cased).
func pyCapitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return titleRune(r) + pyLower(s[n:])
}

// pyFind implements str.find over code point indices.
func pyFind(s, sub string, reverse bool) int {
	var i int
	if reverse {
		i = strings.LastIndex(s, sub)
	} else {
		i = strings.Index(s, sub)
	}
	if i < 0 {
		return -1
	}
	return utf8.RuneCountInString(s[:i])
}

// jinjaTitle is Jinja's |title filter: words start after whitespace or one of
// "-([{<"; the first character of a word is upper-cased, the rest lower-cased.
func jinjaTitle(s string) string {
	var b strings.Builder
	start := true
	for _, r := range s {
		if pyIsSpace(r) || strings.ContainsRune("-([{<", r) {
			b.WriteRune(r)
			start = true
			continue
		}
		if start {
			b.WriteString(pyUpper(string(r)))
		} else {
			b.WriteString(pyLower(string(r)))
		}
		start = false
	}
	return b.String()
}
