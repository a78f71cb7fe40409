package grammar

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func loadBenchFiles(t *testing.T, dir string) map[string]*BenchFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no files in testdata/%s: %v", dir, err)
	}
	out := map[string]*BenchFile{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f := new(BenchFile)
		if err := json.Unmarshal(raw, f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[filepath.Base(p)] = f
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestCorpus is MaskBench's token-by-token protocol on the hand-written
// corpus: every file must pass on both tokenizers.
func TestCorpus(t *testing.T) {
	files := loadBenchFiles(t, "corpus")
	for _, tc := range tokenizers(t) {
		for _, name := range sortedKeys(files) {
			r := RunBench(files[name], tc.vocab, tc.tok, SchemaCompiler(tc.vocab, Options{}))
			if r.Status != StatusPassing {
				t.Errorf("%s/%s: %s: %s", tc.name, name, r.Status, r.Error)
			}
		}
	}
}

// suiteRefused are the converted JSON-Schema-Test-Suite groups whose
// schemas use what the compiler refuses; every other group must pass.
var suiteRefused = map[string]string{
	"additionalProperties_00.json": "patternProperties",
	"properties_01.json":           "patternProperties",
	"definitions_00.json":          "unsupported $ref",
	"definitions_01.json":          "unsupported $ref",
	"ref_05.json":                  "unsupported $ref",
	"ref_03.json":                  "tilda~field",
	"multipleOf_01.json":           "multipleOf 1.5",
	"multipleOf_02.json":           "multipleOf 0.0001",
	"optional_bignum_06.json":      "beyond 18 digits",
	"optional_bignum_08.json":      "beyond 18 digits",
	"optional_format_04.json":      "ipv6",
	"optional_format_05.json":      "hostname",
}

func TestSuite(t *testing.T) {
	files := loadBenchFiles(t, "suite")
	tc := tokenizers(t)[0]
	passing := 0
	for _, name := range sortedKeys(files) {
		r := RunBench(files[name], tc.vocab, tc.tok, SchemaCompiler(tc.vocab, Options{}))
		want, refused := suiteRefused[name]
		switch {
		case refused && r.Status != StatusCompileError:
			t.Errorf("%s: status %s, want a compile error naming %s", name, r.Status, want)
		case refused && !strings.Contains(r.Error, want):
			t.Errorf("%s: error %q does not name %q", name, r.Error, want)
		case !refused && r.Status != StatusPassing:
			t.Errorf("%s: %s: %s", name, r.Status, r.Error)
		case !refused:
			passing++
		}
	}
	t.Logf("suite: %d files passing, %d refused", passing, len(suiteRefused))
}

// allowAll is a deliberately broken matcher: it allows every token.
type allowAll struct{ size int }

func (a allowAll) FillMask(mask []uint64) error {
	for i := range mask {
		mask[i] = ^uint64(0)
	}
	return nil
}
func (allowAll) Consume(int32) error { return nil }
func (allowAll) Accepting() bool     { return true }

// refuseAll allows nothing.
type refuseAll struct{}

func (refuseAll) FillMask(mask []uint64) error { clear(mask); return nil }
func (refuseAll) Consume(int32) error          { return os.ErrInvalid }
func (refuseAll) Accepting() bool              { return false }

// TestWalkCatchesBrokenMatchers: the acceptance check must fail a matcher
// that allows everything (on the invalid instances) and one that allows
// nothing (on the valid ones).
func TestWalkCatchesBrokenMatchers(t *testing.T) {
	files := loadBenchFiles(t, "corpus")
	tc := tokenizers(t)[0]
	for _, name := range sortedKeys(files) {
		r := RunBench(files[name], tc.vocab, tc.tok, func([]byte) (func() MaskMatcher, error) {
			return func() MaskMatcher { return allowAll{} }, nil
		})
		if r.Status != StatusInvalidationError {
			t.Errorf("%s: allow-all matcher got %s, want %s", name, r.Status, StatusInvalidationError)
		}
		r = RunBench(files[name], tc.vocab, tc.tok, func([]byte) (func() MaskMatcher, error) {
			return func() MaskMatcher { return refuseAll{} }, nil
		})
		if r.Status != StatusValidationError {
			t.Errorf("%s: refuse-all matcher got %s, want %s", name, r.Status, StatusValidationError)
		}
	}
}

// TestMaskMatchesBruteForce compares the trie walk (with its bulk path for
// plain string bytes) against testing every token on its own, at every
// step of every valid corpus instance.
func TestMaskMatchesBruteForce(t *testing.T) {
	files := loadBenchFiles(t, "corpus")
	for _, tc := range tokenizers(t) {
		v := tc.vocab
		mask := make([]uint64, (v.Size()+63)/64)
		for _, name := range sortedKeys(files) {
			g, err := CompileJSONSchema(v, files[name].Schema, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, test := range files[name].Tests {
				if !test.Valid {
					continue
				}
				val, _ := ParseValue(test.Data)
				text, _ := DumpsPython(val)
				toks, _ := tc.tok.Encode(text, false)
				m := g.NewMatcher()
				for step, tok := range toks {
					if err := m.FillMask(mask); err != nil {
						t.Fatal(err)
					}
					for id := int32(0); int(id) < v.Size(); id++ {
						c := m.Clone()
						var want bool
						if v.isEOS(id) {
							want = m.Accepting()
						} else if b := v.TokenBytes(id); len(b) > 0 && !v.IsSpecial(id) {
							want = c.ConsumeBytes(b) == nil
						}
						if got := mask[id>>6]&(1<<(id&63)) != 0; got != want {
							t.Fatalf("%s/%s %q step %d: token %d %q: mask %v, brute force %v", tc.name, name, text, step, id, v.TokenBytes(id), got, want)
						}
					}
					if err := m.Consume(tok); err != nil {
						t.Fatalf("%s/%s: %v", tc.name, name, err)
					}
				}
			}
		}
	}
}

// TestRandomWalk generates from each non-recursive corpus schema with a
// "model" that picks uniformly among the allowed tokens: generation must
// end with EOS within a bounded number of tokens, and the text must be JSON
// valid under the schema (an independent validator).
func TestRandomWalk(t *testing.T) {
	files := loadBenchFiles(t, "corpus")
	o := Options{MaxWhitespace: 2, MaxStringLength: 12, MaxItems: 4, MaxAdditionalProperties: 2, MaxDepth: 2}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range tokenizers(t) {
		v := tc.vocab
		mask := make([]uint64, (v.Size()+63)/64)
		for _, name := range sortedKeys(files) {
			recursive := strings.Contains(string(files[name].Schema), "$ref")
			g, err := CompileJSONSchema(v, files[name].Schema, o)
			if err != nil {
				t.Fatal(err)
			}
			schema, _ := ParseValue(files[name].Schema)
			for run := range 4 {
				m := g.NewMatcher()
				var text []byte
				const limit = 3000
				n := 0
				for ; n < limit && !m.Done(); n++ {
					if err := m.FillMask(mask); err != nil {
						t.Fatal(err)
					}
					var allowed []int32
					for id := int32(0); int(id) < v.Size(); id++ {
						if mask[id>>6]&(1<<(id&63)) != 0 {
							allowed = append(allowed, id)
						}
					}
					if len(allowed) == 0 {
						t.Fatalf("%s/%s run %d: no token allowed after %q", tc.name, name, run, text)
					}
					tok := allowed[rng.IntN(len(allowed))]
					if err := m.Consume(tok); err != nil {
						t.Fatal(err)
					}
					text = append(text, v.TokenBytes(tok)...)
				}
				if !m.Done() {
					if recursive {
						continue // unbounded recursion: no length bound to check
					}
					t.Fatalf("%s/%s run %d: no EOS within %d tokens: %q", tc.name, name, run, limit, text)
				}
				inst, err := ParseValue(bytes.TrimSpace(text))
				if err != nil || !utf8.Valid(text) {
					t.Fatalf("%s/%s run %d: output is not JSON (%v): %q", tc.name, name, run, err, text)
				}
				vl := &validator{root: schema, oneOfAsAnyOf: true}
				if !vl.valid(schema, inst) {
					t.Fatalf("%s/%s run %d: output does not validate: %s", tc.name, name, run, text)
				}
			}
		}
	}
}

func TestVocabBytes(t *testing.T) {
	for _, tc := range tokenizers(t) {
		v := tc.vocab
		if v.Size() != tc.tok.VocabSize() {
			t.Errorf("%s: size %d, tokenizer says %d", tc.name, v.Size(), tc.tok.VocabSize())
		}
		checked := 0
		for id := int32(0); int(id) < v.Size(); id++ {
			b := v.TokenBytes(id)
			if tc.tok.IsSpecial(id) != v.IsSpecial(id) && !v.isEOS(id) {
				t.Errorf("%s: token %d special %v, tokenizer says %v", tc.name, id, v.IsSpecial(id), tc.tok.IsSpecial(id))
			}
			if len(b) == 0 || !utf8.Valid(b) {
				continue
			}
			// Decoding after a fixed prefix token sidesteps decoders that
			// strip a leading space from the first token.
			pre, _ := tc.tok.Encode("a", false)
			base, err := tc.tok.Decode(pre, false)
			if err != nil {
				t.Fatal(err)
			}
			s, err := tc.tok.Decode(append(slices.Clone(pre), id), false)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimPrefix(s, base); got != string(b) {
				t.Fatalf("%s: token %d bytes %q, tokenizer decodes %q", tc.name, id, b, got)
			}
			checked++
		}
		if checked < v.Size()/4 {
			t.Errorf("%s: only %d tokens checked", tc.name, checked)
		}
	}
	tc := tokenizers(t)
	if got := tc[0].vocab.EOS(); !slices.Equal(got, []int32{769, 776, 777}) {
		t.Errorf("tiny EOS %v", got)
	}
	if got := tc[1].vocab.EOS(); !slices.Equal(got, []int32{2}) {
		t.Errorf("stories260K EOS %v", got)
	}
}

func TestDumpsPython(t *testing.T) {
	// Expected output from CPython 3: json.dumps(json.loads(src), ensure_ascii=False).
	src := `{"a": 1.0, "b": 1e100, "c": 1e-7, "d": "é\n\"\\\u0001\t/", "e": [1, 2.5, 100000000000000000000, -0, -0.0], "f": 1e16, "g": 123456789012345.6, "h": 0.1, "i": 1E+2, "j": 0.0001, "k": 0.00001234, "l": 9007199254740993.0, "m": {}, "n": [], "o": null, "p": true}`
	want := `{"a": 1.0, "b": 1e+100, "c": 1e-07, "d": "é\n\"\\\u0001\t/", "e": [1, 2.5, 100000000000000000000, 0, -0.0], "f": 1e+16, "g": 123456789012345.6, "h": 0.1, "i": 100.0, "j": 0.0001, "k": 1.234e-05, "l": 9007199254740992.0, "m": {}, "n": [], "o": null, "p": true}`
	v, err := ParseValue([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DumpsPython(v)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestCompileRefusals(t *testing.T) {
	v := tokenizers(t)[0].vocab
	for schema, want := range map[string]string{
		`{"type": "object", "patternProperties": {"^a": {}}}`: `"patternProperties"`,
		`{"type": "array", "uniqueItems": true}`:              `uniqueItems`,
		`{"not": {"type": "string"}}`:                         `"not"`,
		`{"$ref": "http://example.com/s.json"}`:               `unsupported $ref`,
		`{"type": "string", "format": "hostname"}`:            `unsupported format "hostname"`,
		`{"$ref": "#"}`: `refers to itself`,
		`{"anyOf": [{"$ref": "#"}, {"type": "null"}]}`:          `refers to itself`,
		`{"type": "string", "pattern": "(?=a)"}`:                `lookaround`,
		`{"type": "string", "pattern": "(a)\\1"}`:               `backreferences`,
		`{"type": "number", "multipleOf": 0.5}`:                 `multipleOf 0.5`,
		`{"type": "object", "minProperties": 1}`:                `"minProperties"`,
		`{"type": "array", "contains": {"type": "integer"}}`:    `"contains"`,
		`{"type": "object", "unevaluatedProperties": false}`:    `"unevaluatedProperties"`,
		`{"type": "object", "properties": {"a": {"if": true}}}`: `"if"`,
		`{"type": "integer", "minimum": true}`:                  `minimum must be a number`,
		`{"type": "string", "enum": "x"}`:                       `enum must be an array`,
		`{"type": "strin"}`:                                     `unknown type "strin"`,
	} {
		_, err := CompileJSONSchema(v, []byte(schema), Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %s", schema, err, want)
		}
	}
	// Malformed or unsatisfiable schemas are errors, not panics.
	for _, schema := range []string{`{"type": "integer", "minimum": 5, "maximum": 4}`, `{"type": "integer", "minimum": 1e30}`,
		`[]`, `"x"`, `{"type": 5}`, `{"properties": []}`, `{"items": 3}`, `{"enum": [1, {"a": [}]}`, `{"required": "a"}`,
		`{"minLength": -1}`, `{"maxItems": 1.5}`, `{"allOf": []}`, `{"anyOf": [{"type": "string"}, 7]}`, `{"$ref": 3}`,
		`{"$ref": "#/nope"}`, `{"type": "string", "pattern": "(["}`, `{"type": "string", "pattern": "a{3,1}"}`, `false`,
		`{"type": "object", "properties": {"a": false}, "required": ["a"]}`, `{"type": "string", "maxLength": 1, "minLength": 2}`} {
		if _, err := CompileJSONSchema(v, []byte(schema), Options{}); err == nil {
			t.Errorf("%s compiled", schema)
		}
	}
}

// walkText consumes text byte-wise and reports whether it ends accepting.
func walkText(t *testing.T, g *Grammar, text string) bool {
	t.Helper()
	m := g.NewMatcher()
	return m.ConsumeBytes([]byte(text)) == nil && m.Accepting()
}

func TestChoiceRegexJSONObject(t *testing.T) {
	v := tokenizers(t)[0].vocab
	g, err := CompileChoice(v, []string{"yes", "no", "not sure"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"yes": true, "no": true, "not sure": true, "not": false, "yess": false, "": false, " yes": false} {
		if got := walkText(t, g, s); got != want {
			t.Errorf("choice %q: %v, want %v", s, got, want)
		}
	}
	g, err = CompileRegex(v, `[A-Z][a-z]+ \d{2,3}(\.\d)?`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"Abc 12": true, "Xy 123.4": true, "abc 12": false, "Abc 1": false, "Abc 1234": false} {
		if got := walkText(t, g, s); got != want {
			t.Errorf("regex %q: %v, want %v", s, got, want)
		}
	}
	g, err = CompileJSONObject(v, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{`{}`: true, `{"a": [1, {"b": null}], "c": "d"}`: true, ` {"a":1} `: true,
		`[]`: false, `"x"`: false, `{"a"}`: false, `{"a": 1,}`: false, `{"a": tru}`: false} {
		if got := walkText(t, g, s); got != want {
			t.Errorf("json_object %q: %v, want %v", s, got, want)
		}
	}
}

func TestWhitespaceAndLengthBounds(t *testing.T) {
	v := tokenizers(t)[0].vocab
	g, err := CompileJSONSchema(v, []byte(`{"type": "array", "items": {"type": "string"}}`), Options{MaxWhitespace: 3, MaxStringLength: 5, MaxItems: 2})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{
		`["abcde"]`: true, `["abcdef"]`: false, `[ "a" ,  "b"   ]`: true, `["a",    "b"]`: false,
		`["a", "b"]`: true, `["a", "b", "c"]`: false, `["é\n\u0001"]`: true, `["\u0041"]`: false,
	} {
		if got := walkText(t, g, s); got != want {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
	g, err = CompileJSONSchema(v, []byte(`{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}`), Options{MaxWhitespace: -1})
	if err != nil {
		t.Fatal(err)
	}
	// Property order follows the schema; additional members may sit
	// anywhere but never reuse a listed name.
	for s, want := range map[string]bool{`{"a":1,"b":2}`: true, `{"b":2,"a":1}`: false, `{"x":0,"a":1,"y":2,"b":3}`: true,
		`{"a":1,"a":2}`: false, `{"a": 1}`: false, `{}`: true} {
		if got := walkText(t, g, s); got != want {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
}

func TestCloneAndReset(t *testing.T) {
	tc := tokenizers(t)[0]
	g, err := CompileChoice(tc.vocab, []string{"ab", "ac"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := g.NewMatcher()
	a, _ := tc.tok.Encode("a", false)
	b, _ := tc.tok.Encode("b", false)
	c, _ := tc.tok.Encode("c", false)
	if err := m.Consume(a[0]); err != nil {
		t.Fatal(err)
	}
	m2 := m.Clone()
	if err := m.Consume(b[0]); err != nil || !m.Accepting() {
		t.Fatalf("ab: %v accepting %v", err, m.Accepting())
	}
	if m2.Accepting() {
		t.Fatal("clone moved with the original")
	}
	if err := m2.Consume(c[0]); err != nil || !m2.Accepting() {
		t.Fatalf("clone ac: %v", err)
	}
	if err := m.Consume(c[0]); err == nil {
		t.Fatal("abc accepted")
	}
	if err := m.Consume(tc.vocab.EOS()[0]); err != nil || !m.Done() {
		t.Fatalf("EOS: %v", err)
	}
	m.Reset()
	if m.Accepting() || m.Done() {
		t.Fatal("Reset did not return to the start")
	}
	if err := m.Consume(tc.vocab.EOS()[0]); err == nil {
		t.Fatal("EOS at the start accepted")
	}
	if err := m.FillMask(make([]uint64, 1)); err == nil {
		t.Fatal("short mask accepted")
	}
}

// TestMaskBruteForceRandomStates compares FillMask with testing every
// token alone at states a random walk reaches under tight bounds (short
// strings, so the bulk path's length limit is exercised). Set
// GRAMMAR_BRUTE_TOKENIZER to a model directory to run it on a large
// vocabulary too (slow).
func TestMaskBruteForceRandomStates(t *testing.T) {
	files := loadBenchFiles(t, "corpus")
	cases := tokenizers(t)
	steps := 40
	if dir := os.Getenv("GRAMMAR_BRUTE_TOKENIZER"); dir != "" {
		cases = []tokenizerCase{loadCase(t, "env", dir)}
		steps = 12
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range cases {
		v := tc.vocab
		mask := make([]uint64, (v.Size()+63)/64)
		for _, name := range sortedKeys(files) {
			for _, o := range []Options{{MaxStringLength: 3, MaxItems: 2, MaxAdditionalProperties: 2, MaxDepth: 2}, {}} {
				g, err := CompileJSONSchema(v, files[name].Schema, o)
				if err != nil {
					t.Fatalf("%s %+v: %v", name, o, err)
				}
				m := g.NewMatcher()
				for step := 0; step < steps && !m.Done(); step++ {
					if err := m.FillMask(mask); err != nil {
						t.Fatal(err)
					}
					var allowed []int32
					for id := int32(0); int(id) < v.Size(); id++ {
						var want bool
						if v.isEOS(id) {
							want = m.Accepting()
						} else if b := v.TokenBytes(id); len(b) > 0 && !v.IsSpecial(id) {
							want = m.Clone().ConsumeBytes(b) == nil
						}
						got := mask[id>>6]&(1<<(id&63)) != 0
						if got != want {
							t.Fatalf("%s/%s step %d: token %d %q: mask %v, brute force %v", tc.name, name, step, id, v.TokenBytes(id), got, want)
						}
						if got {
							allowed = append(allowed, id)
						}
					}
					if len(allowed) == 0 {
						t.Fatalf("%s/%s step %d: nothing allowed", tc.name, name, step)
					}
					if err := m.Consume(allowed[rng.IntN(len(allowed))]); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// TestConcurrentMatchers runs matchers of one Grammar on several
// goroutines (meaningful under -race): the lazily built automaton is shared.
func TestConcurrentMatchers(t *testing.T) {
	tc := tokenizers(t)[0]
	g, err := CompileJSONObject(tc.vocab, Options{})
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := tc.tok.Encode(`{"a": [1, 2, {"b": "cé"}], "d": null}`, false)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			m := g.NewMatcher()
			_, ok, _, err := Walk(m, tc.vocab, toks, nil)
			if err == nil && !ok {
				err = os.ErrInvalid
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
