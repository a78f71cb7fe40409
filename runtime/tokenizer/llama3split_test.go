package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

var llama3Regex = sync.OnceValues(func() (*pattern, error) {
	return parsePattern([]byte(fmt.Sprintf(`{"Regex": %q}`, llama3Pattern)))
})

// regexSplit splits with regexp2, the reference for llama3Split.
func regexSplit(t testing.TB, s string) [][2]int {
	p, err := llama3Regex()
	if err != nil {
		t.Fatal(err)
	}
	if p.fast == nil {
		t.Fatal("the Llama 3 pattern did not get the fast splitter")
	}
	spans, err := p.regexFind(s)
	if err != nil {
		t.Fatal(err)
	}
	return spans
}

// randomSplitText mixes the character classes the regex cares about.
func randomSplitText(r *rand.Rand) string {
	atoms := []string{"'", "s", "S", "t", "re", "RE", "ve", "m", "ll", "LL", "d", "x", "é", "Ж", "中", "7", "٣", "½", "Ⅻ",
		" ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2028", "\v", "!", "?", "...", "-", "😊", "\u0301", "\x00", "\ufffd"}
	var b strings.Builder
	for n := r.IntN(16); n >= 0; n-- {
		b.WriteString(atoms[r.IntN(len(atoms))])
	}
	return b.String()
}

func TestLlama3SplitMatchesRegex(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 20000; i++ {
		s := randomSplitText(r)
		if got, want := llama3Split(s), regexSplit(t, s); !slices.Equal(got, want) {
			t.Fatalf("%q: fast %v, regexp2 %v", s, got, want)
		}
	}
}

func FuzzLlama3Split(f *testing.F) {
	for _, s := range []string{"", "Hello world!", "I'm here\n\n  ok  ", "12345 abc'LL", "  \r\n\t x", "😊😊 中文", "a\u0301b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ToValidUTF8(s, "\ufffd")
		if got, want := llama3Split(s), regexSplit(t, s); !slices.Equal(got, want) {
			t.Fatalf("%q: fast %v, regexp2 %v", s, got, want)
		}
	})
}
