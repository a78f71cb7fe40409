package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

const storiesDir = "../../testdata/stories260K"

func loadStories(t testing.TB) *pipeline {
	t.Helper()
	tk, err := Load(storiesDir)
	if err != nil {
		t.Fatal(err)
	}
	return tk.(*pipeline)
}

// llama2cEncode is an independent reference: llama2.c's encode() (run.c),
// greedy and quadratic. It prepends the dummy-prefix space, looks every code
// point up (bytes + 3 when absent: byte fallback), then repeatedly merges the
// adjacent pair whose concatenation is in the vocabulary with the best score.
// SentencePiece BPE scores fall with the piece id, so score = -id.
func llama2cEncode(vocab map[string]int32, text string) []int32 {
	if text == "" {
		return nil
	}
	strs := map[int32]string{}
	for s, id := range vocab {
		strs[id] = s
	}
	var toks []int32
	for _, r := range "▁" + strings.ReplaceAll(text, " ", "▁") {
		if id, ok := vocab[string(r)]; ok {
			toks = append(toks, id)
			continue
		}
		for _, b := range []byte(string(r)) {
			toks = append(toks, int32(b)+3)
		}
	}
	for {
		best, bestID := -1, int32(0)
		for i := 0; i+1 < len(toks); i++ {
			id, ok := vocab[strs[toks[i]]+strs[toks[i+1]]]
			if ok && (best < 0 || -id > -bestID) {
				best, bestID = i, id
			}
		}
		if best < 0 {
			return toks
		}
		toks[best] = bestID
		toks = slices.Delete(toks, best+1, best+2)
	}
}

// randomStoryText draws text from pieces a story model sees and pieces it
// does not (byte fallback): words, spaces, punctuation, digits, emoji, CJK.
func randomStoryText(r *rand.Rand) string {
	pieces := []func() string{
		func() string {
			return []string{"Once", "upon", "a", "time", "Lily", "Tim", "happy", "little", "friend", "the", "said", "play", "They", "named"}[r.IntN(14)]
		},
		func() string { return string(rune('a' + r.IntN(26))) },
		func() string { return string(rune('A' + r.IntN(26))) },
		func() string { return strings.Repeat(" ", 1+r.IntN(3)) },
		func() string { return string(".,!?\"'-:;()“”’…—"[r.IntN(20)]) },
		func() string { return string([]rune(".,!?\"'-:;()“”’…—")[r.IntN(16)]) },
		func() string { return string(rune('0' + r.IntN(10))) },
		func() string { return []string{"😊", "🦙", "👍🏽", "❤️"}[r.IntN(4)] },
		func() string { return string(rune(0x4E00 + r.IntN(0x5000))) },
		func() string { return []string{"é", "ñ", "ü", "ß", "\n", "\t", "\u00a0", "€", "™"}[r.IntN(9)] },
	}
	var b strings.Builder
	for n := 1 + r.IntN(20); n > 0; n-- {
		b.WriteString(pieces[r.IntN(len(pieces))]())
		if r.IntN(2) == 0 {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func TestStoriesHandVerified(t *testing.T) {
	tk := loadStories(t)
	// Ids read off tokenizer.json's vocab: ▁Once 403, ▁upon 407, ▁a 261,
	// ▁time 378, ▁Lily 317, ▁ 410; a byte b falls back to <0xXX> = b+3; <s> 1.
	cases := []struct {
		text       string
		addSpecial bool
		want       []int32
	}{
		{"", false, nil},
		{"", true, []int32{1}},
		{"Once upon a time", true, []int32{1, 403, 407, 261, 378}},
		{"Lily", false, []int32{317}},
		{"😊", false, []int32{410, 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x8A + 3}},
		{"<s>", false, []int32{1}},
		// "<s>" is cut out before normalization: each side gets its own "▁".
		{"Lily<s>Lily", false, []int32{317, 1, 317}},
	}
	for _, c := range cases {
		got, err := tk.Encode(c.text, c.addSpecial)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q, %v) = %v, want %v", c.text, c.addSpecial, got, c.want)
		}
	}
	decodes := []struct {
		ids         []int32
		skipSpecial bool
		want        string
	}{
		{[]int32{1, 403, 407, 261, 378}, false, "<s> Once upon a time"},
		{[]int32{1, 403, 407, 261, 378}, true, "Once upon a time"},
		{[]int32{410, 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x8A + 3}, false, "😊"},
		// A byte run that is not valid UTF-8 becomes one U+FFFD per byte.
		{[]int32{317, 0xF0 + 3, 0x9F + 3, 317}, false, "Lily\uFFFD\uFFFD Lily"},
		{[]int32{410, 410, 317}, false, "  Lily"}, // only one leading space is stripped
	}
	for _, c := range decodes {
		got, err := tk.Decode(c.ids, c.skipSpecial)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Decode(%v, %v) = %q, want %q", c.ids, c.skipSpecial, got, c.want)
		}
	}
	if _, err := tk.Decode([]int32{512}, false); err == nil {
		t.Error("Decode of an id past the vocabulary: no error")
	}
	if tk.VocabSize() != 512 || !tk.IsSpecial(1) || tk.IsSpecial(403) {
		t.Errorf("VocabSize %d, IsSpecial(1) %v, IsSpecial(403) %v", tk.VocabSize(), tk.IsSpecial(1), tk.IsSpecial(403))
	}
	if id, ok := tk.TokenID("▁Once"); !ok || id != 403 {
		t.Errorf("TokenID(▁Once) = %d, %v", id, ok)
	}
}

func TestStoriesMatchesLlama2c(t *testing.T) {
	tk := loadStories(t)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 3000
	bad := 0
	for i := 0; i < n; i++ {
		s := randomStoryText(r)
		if strings.Contains(s, "<s>") || strings.Contains(s, "</s>") || strings.Contains(s, "<unk>") {
			continue
		}
		want := llama2cEncode(tk.model.vocab, s)
		got, err := tk.Encode(s, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			if bad++; bad <= 5 {
				t.Errorf("Encode(%q) = %v, llama2.c gives %v", s, got, want)
			}
		}
		back, err := tk.Decode(got, false)
		if err != nil {
			t.Fatal(err)
		}
		if back != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, back)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d strings differ from llama2.c", bad, n)
	}
}

// The same tokenizer with merges written as ["a", "b"] pairs must encode the same.
func TestStoriesMergePairsFormat(t *testing.T) {
	raw, err := os.ReadFile(storiesDir + "/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	model := doc["model"].(map[string]any)
	var pairs [][]string
	for _, m := range model["merges"].([]any) {
		a, b, _ := strings.Cut(m.(string), " ")
		pairs = append(pairs, []string{a, b})
	}
	model["merges"] = pairs
	raw2, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	a := loadStories(t)
	b, err := FromJSON(raw2, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		s := randomStoryText(r)
		x, _ := a.Encode(s, true)
		y, _ := b.Encode(s, true)
		if !slices.Equal(x, y) {
			t.Fatalf("%q: string merges %v, pair merges %v", s, x, y)
		}
	}
}

// tokenizer_config.json decides BOS/EOS for the LlamaTokenizer classes.
func TestStoriesConfigTemplate(t *testing.T) {
	raw, err := os.ReadFile(storiesDir + "/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		config string
		want   []int32
	}{
		{``, []int32{1, 317}}, // no config: tokenizer.json's TemplateProcessing (BOS)
		{`{"tokenizer_class": "LlamaTokenizer", "add_bos_token": true, "add_eos_token": true, "bos_token": "<s>", "eos_token": {"content": "</s>"}}`, []int32{1, 317, 2}},
		{`{"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": false, "bos_token": "<s>"}`, []int32{317}},
		{`{"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": false}`, []int32{1, 317}},
	}
	for _, c := range cases {
		tk, err := FromJSON(raw, []byte(c.config))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := tk.Encode("Lily", true)
		if !slices.Equal(got, c.want) {
			t.Errorf("config %s: Encode = %v, want %v", c.config, got, c.want)
		}
	}
	if _, err := FromJSON(raw, []byte(`{"tokenizer_class": "LlamaTokenizer", "add_eos_token": true, "bos_token": "<s>"}`)); err == nil {
		t.Error("add_eos_token without eos_token: no error")
	}
}

// Encode is safe for concurrent use (the word cache is shared).
func TestConcurrentEncode(t *testing.T) {
	tk := loadStories(t)
	r := rand.New(rand.NewPCG(21, 22))
	texts := make([]string, 200)
	want := make([][]int32, len(texts))
	for i := range texts {
		texts[i] = randomStoryText(r)
		want[i] = llama2cEncode(tk.model.vocab, texts[i])
	}
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		go func() {
			msg := ""
			for i := range texts {
				if got, _ := tk.Encode(texts[i], false); !slices.Equal(got, want[i]) && msg == "" {
					msg = texts[i]
				}
			}
			errs <- msg
		}()
	}
	for g := 0; g < 4; g++ {
		if msg := <-errs; msg != "" {
			t.Errorf("concurrent Encode(%q) differs", msg)
		}
	}
}
