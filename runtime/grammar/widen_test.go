package grammar

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// widenVocab is a small vocabulary whose tokens cross every boundary the
// walk states and the bulk paths care about: single bytes, runs of plain
// characters up to and past the longest token, multi-byte characters
// (whole and split), escapes, quotes in the middle of tokens, and tokens
// mixing the characters of a pattern's class with others.
func widenVocab(t *testing.T) *Vocab {
	var toks [][]byte
	for c := 0x20; c < 0x7f; c++ {
		toks = append(toks, []byte{byte(c)})
	}
	for _, s := range []string{"ab", "aa", "aaa", "aaaa", "a@b", "x.y", "ab\"", "a\": ", "\": \"", "\", \"",
		"é", "aé", "日本", "\xe6", "\x97\xa5", "\xe6\x97", "\xa5", "\\n", "\\u00", "1f", "\\\"", "{\"", "\"}", "}",
		strings.Repeat("a", 7), strings.Repeat("a", 10), strings.Repeat("b", 8), strings.Repeat("z", 9) + "\"", "foo", "fo", "bar\"", "é\"",
		"12", "-1", "http", "://", "a-b", "a_b", "\n", ""} {
		toks = append(toks, []byte(s))
	}
	v, err := NewVocab(toks, nil, []int32{int32(len(toks) - 1)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestWalkStatesBruteForce compares FillMask with testing every token
// alone at every step of random walks, on schemas whose states the walk
// widens (string bounds at, below and above the longest token; patterns
// and formats under the bound; property names beside listed ones) and
// whose string states the closure test covers in bulk.
func TestWalkStatesBruteForce(t *testing.T) {
	v := widenVocab(t)
	if v.maxLen != 10 {
		t.Fatalf("longest token %d bytes, the test expects 10", v.maxLen)
	}
	schemas := []string{
		`{"type": "string"}`,
		`{"type": "string", "maxLength": 9}`,
		`{"type": "string", "maxLength": 10}`,
		`{"type": "string", "maxLength": 11}`,
		`{"type": "string", "maxLength": 14}`,
		`{"type": "string", "minLength": 3, "maxLength": 13}`,
		`{"type": "string", "pattern": "a+"}`,
		`{"type": "string", "pattern": "^a{3}b"}`,
		`{"type": "string", "pattern": "^[a-z]{12}$"}`,
		`{"type": "string", "pattern": "é"}`,
		`{"type": "string", "format": "email"}`,
		`{"type": "string", "format": "uri"}`,
		`{"type": "string", "format": "email", "maxLength": 12}`,
		`{"properties": {"foo": {"type": "string"}, "bar": {}}, "additionalProperties": {"type": "string", "maxLength": 11}}`,
		`{"anyOf": [{"type": "string", "maxLength": 11}, {"type": "string", "pattern": "^b"}]}`,
		`{"type": "array", "items": {"type": "string"}}`,
	}
	bruteWalks(t, v, schemas, []Options{{}, {MaxStringLength: 12}, {MaxStringLength: 10}})
}

// bruteWalks compares FillMask with testing every token alone, at every
// step of random walks through each schema under each of opts.
func bruteWalks(t *testing.T, v *Vocab, schemas []string, opts []Options) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	mask := make([]uint64, (v.Size()+63)/64)
	for _, schema := range schemas {
		for _, o := range opts {
			g, err := CompileJSONSchema(v, []byte(schema), o)
			if err != nil && strings.Contains(err.Error(), "admits no text") && o.MaxStringLength > 0 {
				continue // a pattern longer than the bound
			}
			if err != nil {
				t.Fatalf("%s: %v", schema, err)
			}
			for run := range 6 {
				m := g.NewMatcher()
				var text []byte
				for step := 0; step < 40 && !m.Done(); step++ {
					where := fmt.Sprintf("%s %+v run %d after %q", schema, o, run, text)
					if err := m.FillMask(mask); err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					var allowed []int32
					for id := int32(0); int(id) < v.Size(); id++ {
						want := m.Accepting()
						if !v.isEOS(id) {
							want = len(v.TokenBytes(id)) > 0 && m.Clone().ConsumeBytes(v.TokenBytes(id)) == nil
						}
						got := mask[id>>6]&(1<<(id&63)) != 0
						if got != want {
							t.Fatalf("%s: token %q: mask %v, brute force %v", where, v.TokenBytes(id), got, want)
						}
						if got {
							allowed = append(allowed, id)
						}
					}
					if len(allowed) == 0 {
						break // a dead end of this small vocabulary (brute force agrees)
					}
					// Prefer long string tokens, so walks reach the bounds.
					tok := allowed[rng.IntN(len(allowed))]
					if u := allowed[rng.IntN(len(allowed))]; len(v.TokenBytes(u)) > len(v.TokenBytes(tok)) {
						tok = u
					}
					if err := m.Consume(tok); err != nil {
						t.Fatal(err)
					}
					text = append(text, v.TokenBytes(tok)...)
				}
			}
		}
	}
}

// TestLongTokensBruteForce moves the boundary between the main trie and
// the long tokens (Vocab.split) across the tokens: the main walk widens
// runs for split bytes only, and the long tokens are walked from states
// widened for the longest token. Tokens of split-1, split and split+1
// bytes (and longer) of the characters of string runs and of a format's
// classes, on both sides of bounds near the split.
func TestLongTokensBruteForce(t *testing.T) {
	schemas := []string{
		`{"type": "string"}`,
		`{"type": "string", "maxLength": 3}`,
		`{"type": "string", "maxLength": 5}`,
		`{"type": "string", "maxLength": 9}`,
		`{"type": "string", "pattern": "^[a-z-]{0,6}$"}`,
		`{"type": "string", "pattern": "^a[a-z-]{2,7}b$"}`,
		`{"type": "string", "pattern": "^(x[a-z]{0,5}y)?z"}`,
		`{"type": "string", "format": "email"}`,
		`{"type": "string", "format": "uri"}`,
		`{"type": "array", "items": {"type": "string", "maxLength": 6}}`,
		`{"properties": {"foo": {"type": "string"}}, "additionalProperties": {"type": "string", "maxLength": 5}}`,
	}
	var toks [][]byte
	for c := 0x20; c < 0x7f; c++ {
		toks = append(toks, []byte{byte(c)})
	}
	for n := 2; n <= 9; n++ {
		for _, c := range []string{"a", "-", "é"} {
			toks = append(toks, []byte(strings.Repeat(c, n)))
		}
		toks = append(toks, []byte(strings.Repeat("a", n-1)+`"`), []byte("x"+strings.Repeat("b", n-2)+"y"))
	}
	toks = append(toks, []byte("a@b.c"), []byte("ab@cd-ef.gh"), []byte("http://a-b"), []byte("\n"), nil)
	for _, split := range []int{3, 4, 5} {
		v, err := newVocabSplit(toks, nil, []int32{int32(len(toks) - 1)}, split)
		if err != nil {
			t.Fatal(err)
		}
		if v.split != split || len(v.longTrie) < 2 {
			t.Fatalf("split %d: got %d, %d long nodes", split, v.split, len(v.longTrie))
		}
		bruteWalks(t, v, schemas, []Options{{}, {MaxStringLength: 7}})
	}
	// The real boundary: tokens of 31, 32 and 33 bytes.
	var real [][]byte
	for c := 0x20; c < 0x7f; c++ {
		real = append(real, []byte{byte(c)})
	}
	for _, n := range []int{30, 31, 32, 33, 34, 40} {
		real = append(real, []byte(strings.Repeat("a", n)), []byte(strings.Repeat("-", n)), []byte(strings.Repeat("a", n-1)+`"`))
	}
	real = append(real, []byte("\n"), nil)
	v, err := NewVocab(real, nil, []int32{int32(len(real) - 1)})
	if err != nil {
		t.Fatal(err)
	}
	if v.split != walkSplit {
		t.Fatalf("split %d, want %d", v.split, walkSplit)
	}
	bruteWalks(t, v, []string{`{"type": "string"}`, `{"type": "string", "maxLength": 32}`, `{"type": "string", "maxLength": 33}`,
		`{"type": "string", "maxLength": 38}`, `{"type": "string", "format": "email"}`, `{"type": "string", "pattern": "^[a-z-]{0,35}$"}`},
		[]Options{{}, {MaxStringLength: 36}})
}

// TestWidenKeepsBound checks that widening never leaks into Consume: a
// string bounded well past the longest token still stops at its bound,
// and at every length the mask allows one more character exactly when
// the bound does.
func TestWidenKeepsBound(t *testing.T) {
	v := widenVocab(t)
	a := int32('a' - 0x20)
	mask := make([]uint64, (v.Size()+63)/64)
	for _, schema := range []string{`{"type": "string", "maxLength": 30}`, `{"type": "string", "maxLength": 30, "pattern": "a"}`} {
		g, err := CompileJSONSchema(v, []byte(schema), Options{})
		if err != nil {
			t.Fatal(err)
		}
		m := g.NewMatcher()
		if err := m.ConsumeBytes([]byte(`"`)); err != nil {
			t.Fatal(err)
		}
		for n := 0; n <= 30; n++ {
			if err := m.FillMask(mask); err != nil {
				t.Fatal(err)
			}
			if ok := mask[a>>6]&(1<<(a&63)) != 0; ok != (n < 30) {
				t.Fatalf("%s after %d chars: one more allowed=%v", schema, n, ok)
			}
			if n < 30 {
				if err := m.Consume(a); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !walkText(t, g, `"`+strings.Repeat("a", 30)+`"`) || walkText(t, g, `"`+strings.Repeat("a", 31)+`"`) {
			t.Fatalf("%s: bound of 30 not kept", schema)
		}
	}
}

// TestWidenPatternNearBound walks texts that reach a string's bound under
// a pattern, where widening must stop (the pattern's shortest completion
// no longer fits), comparing FillMask with brute force at every byte.
func TestWidenPatternNearBound(t *testing.T) {
	v := widenVocab(t)
	mask := make([]uint64, (v.Size()+63)/64)
	for _, c := range []struct {
		schema string
		o      Options
		text   string
	}{
		{`{"type": "string", "pattern": "^a[a-z]*b$"}`, Options{MaxStringLength: 12}, `"aaaaaaaaaaab"`},
		{`{"type": "string", "pattern": "^a[a-z]*bb$"}`, Options{MaxStringLength: 14}, `"aaaaaaaaaaaabb"`},
		{`{"type": "string", "maxLength": 13, "format": "email"}`, Options{}, `"aaaaaaa@b.yy"`},
		{`{"type": "string", "pattern": "a+"}`, Options{MaxStringLength: 11}, `"bbbbbbbbbba"`},
	} {
		g, err := CompileJSONSchema(v, []byte(c.schema), c.o)
		if err != nil {
			t.Fatal(err)
		}
		m := g.NewMatcher()
		for i := 0; i <= len(c.text); i++ {
			if err := m.FillMask(mask); err != nil {
				t.Fatal(err)
			}
			for id := int32(0); int(id) < v.Size(); id++ {
				want := m.Accepting()
				if !v.isEOS(id) {
					want = len(v.TokenBytes(id)) > 0 && m.Clone().ConsumeBytes(v.TokenBytes(id)) == nil
				}
				if got := mask[id>>6]&(1<<(id&63)) != 0; got != want {
					t.Fatalf("%s after %q: token %q: mask %v, brute force %v", c.schema, c.text[:i], v.TokenBytes(id), got, want)
				}
			}
			if i < len(c.text) {
				if err := m.ConsumeBytes([]byte{c.text[i]}); err != nil {
					t.Fatalf("%s: %q: %v", c.schema, c.text[:i+1], err)
				}
			}
		}
		if !m.Accepting() {
			t.Fatalf("%s: %s not accepted", c.schema, c.text)
		}
	}
}
