package grammar

import (
	"strings"
	"testing"
)

// The string spelling the grammar matches is internal/pyjson's; this pins it
// to CPython's: want is json.dumps(s, ensure_ascii=False) (CPython 3) for s
// = every character below U+0080, then U+0080, U+00A0, U+2028, U+2029,
// U+FEFF and U+10FFFF. Only '"', '\' and the controls below U+0020 are
// escaped; DEL and the line separators are raw.
func TestPyStringMatchesPython(t *testing.T) {
	var sb strings.Builder
	for c := rune(0); c < 0x80; c++ {
		sb.WriteRune(c)
	}
	sb.WriteString("\u0080\u00a0\u2028\u2029\ufeff\U0010ffff")
	want := `"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f` +
		`\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f` +
		` !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_` + "`" +
		"abcdefghijklmnopqrstuvwxyz{|}~\x7f\u0080\u00a0\u2028\u2029\ufeff\U0010ffff\""
	if got := pyString(sb.String()); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	for c, esc := range map[rune]string{'"': `\"`, '\\': `\\`, '\n': `\n`, '\r': `\r`, '\t': `\t`, '\b': `\b`, '\f': `\f`, 0: `\u0000`, 0x1f: `\u001f`} {
		if got := jsonEscape(c); got != esc {
			t.Errorf("jsonEscape(%q) = %q, want %q", c, got, esc)
		}
	}
}

// Numbers become what json.loads makes of them; a literal past a float's
// range is refused rather than written as Infinity.
func TestDumpsPythonNumbers(t *testing.T) {
	for src, want := range map[string]string{
		`-0`: `0`, `007`: ``, `123456789012345678901234567890`: `123456789012345678901234567890`,
		`-12.50`: `-12.5`, `1e400`: ``, `1e-400`: `0.0`, `[1E2, -0.0]`: `[100.0, -0.0]`,
	} {
		v, err := ParseValue([]byte(src))
		if err != nil {
			if want != "" {
				t.Errorf("%s: %v", src, err)
			}
			continue
		}
		got, err := DumpsPython(v)
		if want == "" {
			if err == nil {
				t.Errorf("%s: got %s, want an error", src, got)
			}
		} else if err != nil || got != want {
			t.Errorf("%s: got %s, %v; want %s", src, got, err, want)
		}
	}
}
