package grammar

import (
	"strings"
	"testing"
)

// Memoised masks equal freshly computed ones, with a cache small enough
// that entries are evicted and reused.
func TestMemoisedMasksEqualFresh(t *testing.T) {
	files := loadBenchFiles(t, "corpus")
	for _, tc := range tokenizers(t) {
		v := tc.vocab
		got := make([]uint64, (v.Size()+63)/64)
		want := make([]uint64, len(got))
		hits, evicted := 0, 0
		for _, name := range sortedKeys(files) {
			g, err := CompileJSONSchema(v, files[name].Schema, Options{})
			if err != nil {
				t.Fatal(err)
			}
			g.masks.cap = 3
			for _, test := range files[name].Tests {
				val, _ := ParseValue(test.Data)
				text, _ := DumpsPython(val)
				toks, _ := tc.tok.Encode(text, false)
				m := g.NewMatcher()
				for step, tok := range toks {
					// Twice: the second call may be served by the cache.
					for range 2 {
						if err := m.FillMask(got); err != nil {
							t.Fatal(err)
						}
						if err := m.fillMask(want, false); err != nil {
							t.Fatal(err)
						}
						for i := range want {
							if got[i] != want[i] {
								t.Fatalf("%s/%s %q step %d: memoised mask word %d %x, fresh %x", tc.name, name, text, step, i, got[i], want[i])
							}
						}
					}
					if m.Consume(tok) != nil {
						break
					}
				}
			}
			hits, evicted = hits+g.masks.hits, evicted+g.masks.evicted
			if len(g.masks.ents) > 3 {
				t.Fatalf("%s: %d masks kept, cap 3", name, len(g.masks.ents))
			}
		}
		if hits == 0 || evicted == 0 {
			t.Errorf("%s: %d hits, %d evictions: the cache was not exercised", tc.name, hits, evicted)
		}
	}
}

// Inside a plain string run FillMask skips every subtree of string-safe
// tokens; tokens longer than the bulk masks reach (longSafe) are then set
// by their character count. Brute force at every length up to past the
// bound, for a maxLength and the default bound.
func TestStringRunLongTokens(t *testing.T) {
	var toks [][]byte
	for c := 0x20; c < 0x7f; c++ {
		toks = append(toks, []byte{byte(c)})
	}
	for _, s := range []string{strings.Repeat("a", 40), strings.Repeat("é", 35), strings.Repeat("b", 33) + `"`,
		strings.Repeat("c", 60), strings.Repeat("a", 45), strings.Repeat("a", 46), "é", "aé", `a"`, "\n", ""} {
		toks = append(toks, []byte(s))
	}
	v, err := NewVocab(toks, nil, []int32{int32(len(toks) - 1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.longSafe) != 5 {
		t.Fatalf("%d long safe tokens, want 5", len(v.longSafe))
	}
	mask := make([]uint64, (v.Size()+63)/64)
	for _, c := range []struct {
		schema string
		bound  int
	}{{`{"type": "string", "maxLength": 45}`, 45}, {`{"type": "string"}`, 50}} {
		g, err := CompileJSONSchema(v, []byte(c.schema), Options{MaxStringLength: 50})
		if err != nil {
			t.Fatal(err)
		}
		m := g.NewMatcher()
		if err := m.ConsumeBytes([]byte(`"`)); err != nil {
			t.Fatal(err)
		}
		for n := 0; n <= c.bound; n++ {
			if err := m.FillMask(mask); err != nil {
				t.Fatal(err)
			}
			for id := int32(0); int(id) < v.Size(); id++ {
				want := m.Accepting()
				if !v.isEOS(id) {
					want = len(v.TokenBytes(id)) > 0 && m.Clone().ConsumeBytes(v.TokenBytes(id)) == nil
				}
				if got := mask[id>>6]&(1<<(id&63)) != 0; got != want {
					t.Fatalf("%s after %d chars: token %q: mask %v, brute force %v", c.schema, n, v.TokenBytes(id), got, want)
				}
			}
			a := int32('a' - 0x20) // the token "a"
			aOK := mask[a>>6]&(1<<(a&63)) != 0
			if aOK != (n < c.bound) {
				t.Fatalf("%s after %d chars: one more character allowed=%v", c.schema, n, aOK)
			}
			if n < c.bound {
				if err := m.ConsumeBytes([]byte("a")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// The default string bound is exact: DefaultMaxStringLength characters,
// not one more.
func TestDefaultStringBound(t *testing.T) {
	g, err := CompileJSONSchema(tokenizers(t)[0].vocab, []byte(`{"type": "string"}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]bool{DefaultMaxStringLength: true, DefaultMaxStringLength + 1: false} {
		if got := walkText(t, g, `"`+strings.Repeat("x", n)+`"`); got != want {
			t.Errorf("%d characters: accepted %v, want %v", n, got, want)
		}
	}
}
