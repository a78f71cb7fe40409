package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// storiesVariant returns stories260K's tokenizer.json with edit applied.
func storiesVariant(t *testing.T, edit func(doc map[string]any)) []byte {
	t.Helper()
	raw, err := os.ReadFile(storiesDir + "/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// bpe is the model's encoding of one already-normalized word.
func bpe(t *testing.T, tk Tokenizer, w string) []int32 {
	t.Helper()
	ids, err := tk.(*pipeline).model.appendTokens(nil, w)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func cat(parts ...[]int32) []int32 { return slices.Concat(parts...) }

// Added-token options, worked by hand from tokenizers' AddedVocabulary:
// raw-text tokens are cut out first, lstrip/rstrip swallow the whitespace
// beside them, single_word needs non-word characters on both sides, and
// normalized tokens are matched in the normalized text ("time" -> "▁time").
func TestAddedTokenOptions(t *testing.T) {
	tk, err := FromJSON(storiesVariant(t, func(doc map[string]any) {
		doc["added_tokens"] = append(doc["added_tokens"].([]any), jsonValue(t, `[
			{"id": 512, "content": "[X]", "lstrip": true, "normalized": false, "special": false},
			{"id": 513, "content": "[Y]", "rstrip": true, "normalized": false, "special": false},
			{"id": 514, "content": "Lily", "single_word": true, "normalized": false, "special": false},
			{"id": 515, "content": "time", "normalized": true, "special": false}]`).([]any)...)
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		text string
		want []int32
	}{
		{"Tim   [X]b", cat(bpe(t, tk, "▁Tim"), []int32{512}, bpe(t, tk, "▁b"))},
		{"a[Y]   b", cat(bpe(t, tk, "▁a"), []int32{513}, bpe(t, tk, "▁b"))},
		{"Lily is", cat([]int32{514}, bpe(t, tk, "▁▁is"))},
		{"Lilyx", bpe(t, tk, "▁Lilyx")},
		{"a Lily", cat(bpe(t, tk, "▁a▁"), []int32{514})},
		{"Once upon a time", cat(bpe(t, tk, "▁Once▁upon▁a"), []int32{515})},
		{"timely", cat([]int32{515}, bpe(t, tk, "ly"))},
	}
	for _, c := range cases {
		got, err := tk.Encode(c.text, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
	if tk.VocabSize() != 516 || tk.IsSpecial(512) {
		t.Errorf("VocabSize %d, IsSpecial(512) %v", tk.VocabSize(), tk.IsSpecial(512))
	}
}

// The Metaspace pre-tokenizer (newer Llama 2 / Mistral files) instead of the
// Prepend+Replace normalizer: "first" adds "▁" only at the start of the input,
// not after an added token; "always" after it too.
func TestMetaspacePreTokenizer(t *testing.T) {
	for _, c := range []struct {
		preTok string
		text   string
		want   func(tk Tokenizer) []int32
	}{
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}`, "Once upon",
			func(tk Tokenizer) []int32 { return []int32{403, 407} }},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}`, "<s>Once",
			func(tk Tokenizer) []int32 { return cat([]int32{1}, bpe(t, tk, "Once")) }},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}`, "<s>Once upon",
			func(tk Tokenizer) []int32 { return []int32{1, 403, 407} }},
		{`{"type": "Metaspace", "replacement": "▁", "add_prefix_space": false}`, "Once upon",
			func(tk Tokenizer) []int32 { return cat(bpe(t, tk, "Once"), []int32{407}) }},
	} {
		tk, err := FromJSON(storiesVariant(t, func(doc map[string]any) {
			doc["normalizer"] = nil
			doc["pre_tokenizer"] = jsonValue(t, c.preTok)
		}), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tk.Encode(c.text, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.want(tk); !slices.Equal(got, want) {
			t.Errorf("%s %q: got %v, want %v", c.preTok, c.text, got, want)
		}
	}
}

// Split behaviors on "a-b--c" cut at "-", as tokenizers' split tests list them.
func TestSplitBehaviors(t *testing.T) {
	for _, c := range []struct {
		behavior string
		invert   bool
		want     []string
	}{
		{"Removed", false, []string{"a", "b", "c"}},
		{"Isolated", false, []string{"a", "-", "b", "-", "-", "c"}},
		{"MergedWithPrevious", false, []string{"a-", "b-", "-", "c"}},
		{"MergedWithNext", false, []string{"a", "-b", "-", "-c"}},
		{"Contiguous", false, []string{"a", "-", "b", "--", "c"}},
		{"Removed", true, []string{"-", "-", "-"}},
	} {
		p, err := parsePreTokenizer(json.RawMessage(`{"type": "Split", "pattern": {"String": "-"}, "behavior": "`+c.behavior+`", "invert": `+map[bool]string{true: "true", false: "false"}[c.invert]+`}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		ws, err := p.split(word{text: "a-b--c"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range ws {
			got = append(got, w.text)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s invert=%v: %q, want %q", c.behavior, c.invert, got, c.want)
		}
	}
}

func TestUnsupportedComponents(t *testing.T) {
	for _, c := range []struct {
		field, value, wantErr string
	}{
		{"normalizer", `{"type": "Lowercase"}`, `normalizer type "Lowercase" is not supported`},
		{"pre_tokenizer", `{"type": "Whitespace"}`, `pre_tokenizer type "Whitespace" is not supported`},
		{"decoder", `{"type": "WordPiece"}`, `decoder type "WordPiece" is not supported`},
		{"post_processor", `{"type": "RobertaProcessing"}`, `post_processor type "RobertaProcessing" is not supported`},
		{"model", `{"type": "Unigram", "vocab": [["a", 0]]}`, `model type "Unigram" is not supported`},
		{"model", `{"type": "BPE", "dropout": 0.1, "vocab": {"a": 0}, "merges": []}`, `dropout`},
		{"model", `{"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}`, `not in the vocabulary`},
		{"model", `{"type": "BPE", "vocab": {"a": 0}, "merges": ["a a a"]}`, `not two tokens`},
		{"pre_tokenizer", `{"type": "Split", "pattern": {"Regex": "(?<=x"}, "behavior": "Isolated"}`, `regex`},
	} {
		_, err := FromJSON(storiesVariant(t, func(doc map[string]any) { doc[c.field] = jsonValue(t, c.value) }), nil)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s %s: error %v, want one containing %q", c.field, c.value, err, c.wantErr)
		}
	}
	if _, err := FromJSON([]byte(`{`), nil); err == nil {
		t.Error("truncated JSON: no error")
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load of a folder without tokenizer.json: no error")
	}
}

// Ill-formed UTF-8 input is read as U+FFFD per maximal ill-formed subpart.
func TestEncodeInvalidUTF8(t *testing.T) {
	tk := loadStories(t)
	got, err := tk.Encode("a\xff\xf0\x9f b", false)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tk.Encode("a\uFFFD\uFFFD b", false)
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
