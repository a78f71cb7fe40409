package tokenizer

import (
	"testing"
)

// Cases from the Unicode standard's "U+FFFD substitution of maximal subparts"
// (Table 3-8 and the examples around it), which Rust's from_utf8_lossy and the
// WHATWG decoder follow.
func TestLossyMaximalSubparts(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"\xc3\xa9", "é"},
		{"\x80", "\uFFFD"},
		{"\x80\x80", "\uFFFD\uFFFD"},
		{"\xf0\x9f\x98", "\uFFFD"},             // truncated 4-byte sequence: one
		{"\xf0\x9f\x98a", "\uFFFDa"},           // cut short by an ASCII byte: one
		{"\xe0\x80\x80", "\uFFFD\uFFFD\uFFFD"}, // overlong: E0 needs A0..BF
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate: ED needs 80..9F
		{"\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xc0\xaf", "\uFFFD\uFFFD"},
		// Table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64
		{"\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64", "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd"},
	} {
		if got := string(appendLossy(nil, []byte(c.in))); got != c.want {
			t.Errorf("lossy(%q) = %q, want %q", c.in, got, c.want)
		}
		// Streaming: the settled part plus the lossy rest is the same.
		settled, used := appendLossySettled(nil, []byte(c.in))
		if got := string(appendLossy(settled, []byte(c.in)[used:])); got != c.want {
			t.Errorf("settled(%q) + rest = %q, want %q", c.in, got, c.want)
		}
	}
}
