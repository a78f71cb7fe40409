package testmodel

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPreTokenize(t *testing.T) {
	// Expected splits worked out from the Llama 3 regex by hand (and checked
	// against the pattern with Python's regex module).
	cases := map[string][]string{
		"Hello, world!":          {"Hello", ",", " world", "!"},
		"It's 2024.\n\n  ok":     {"It", "'s", " ", "202", "4", ".\n\n", " ", " ok"},
		"a  b\tc":                {"a", " ", " b", "\tc"},
		"x \n\n y":               {"x", " \n\n", " y"},
		"WE'LL go...":            {"WE", "'LL", " go", "..."},
		"end  ":                  {"end", "  "},
		"(quoted) \"word\"":      {"(quoted", ")", " \"", "word", "\""},
		"don't":                  {"don", "'t"},
		"12345 6":                {"123", "45", " ", "6"},
		"caf\u00e9 na\u00efve":   {"caf\u00e9", " na\u00efve"},
		"line\r\nnext":           {"line", "\r\n", "next"},
		"'hello":                 {"'hello"},
		" ":                      {" "},
		"":                       nil,
		"a\n":                    {"a", "\n"},
		"tab\t\tx":               {"tab", "\t", "\tx"},
		"3.14":                   {"3", ".", "14"},
		"what?!\nyes":            {"what", "?!\n", "yes"},
		"U.S.A.":                 {"U", ".S", ".A", "."},
		"re-use":                 {"re", "-use"},
		"  leading":              {" ", " leading"},
		"many    spaces between": {"many", "   ", " spaces", " between"},
	}
	for in, want := range cases {
		if got := preTokenize(in); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

type tokenizerFile struct {
	Version     string `json:"version"`
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		Special    bool   `json:"special"`
		Normalized bool   `json:"normalized"`
	} `json:"added_tokens"`
	Normalizer   any `json:"normalizer"`
	PreTokenizer struct {
		Type          string `json:"type"`
		Pretokenizers []struct {
			Type           string            `json:"type"`
			Pattern        map[string]string `json:"pattern"`
			Behavior       string            `json:"behavior"`
			AddPrefixSpace *bool             `json:"add_prefix_space"`
			UseRegex       *bool             `json:"use_regex"`
		} `json:"pretokenizers"`
	} `json:"pre_tokenizer"`
	PostProcessor struct {
		Type       string `json:"type"`
		Processors []struct {
			Type          string `json:"type"`
			Single        []map[string]map[string]any
			SpecialTokens map[string]struct {
				IDs []int `json:"ids"`
			} `json:"special_tokens"`
		} `json:"processors"`
	} `json:"post_processor"`
	Decoder struct {
		Type string `json:"type"`
	} `json:"decoder"`
	Model struct {
		Type         string         `json:"type"`
		IgnoreMerges bool           `json:"ignore_merges"`
		ByteFallback bool           `json:"byte_fallback"`
		Vocab        map[string]int `json:"vocab"`
		Merges       []string       `json:"merges"`
	} `json:"model"`
}

func TestTokenizerJSON(t *testing.T) {
	o := Tiny()
	dir := t.TempDir()
	if err := Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tf tokenizerFile
	if err := json.Unmarshal(raw, &tf); err != nil {
		t.Fatal(err)
	}
	m := tf.Model
	if tf.Version != "1.0" || tf.Normalizer != nil || m.Type != "BPE" || !m.IgnoreMerges || m.ByteFallback || tf.Decoder.Type != "ByteLevel" {
		t.Errorf("model/decoder settings: %+v %+v", m.Type, tf.Decoder)
	}
	pt := tf.PreTokenizer
	if pt.Type != "Sequence" || len(pt.Pretokenizers) != 2 || pt.Pretokenizers[0].Type != "Split" ||
		pt.Pretokenizers[0].Pattern["Regex"] != llama3Split || pt.Pretokenizers[0].Behavior != "Isolated" ||
		pt.Pretokenizers[1].Type != "ByteLevel" || *pt.Pretokenizers[1].AddPrefixSpace || *pt.Pretokenizers[1].UseRegex {
		t.Errorf("pre_tokenizer %+v", pt)
	}
	pp := tf.PostProcessor
	if pp.Type != "Sequence" || len(pp.Processors) != 2 || pp.Processors[1].Type != "TemplateProcessing" ||
		!reflect.DeepEqual(pp.Processors[1].SpecialTokens["<|begin_of_text|>"].IDs, []int{768}) {
		t.Errorf("post_processor %+v", pp)
	}

	// Vocabulary: ids 0..767 are regular tokens, 0..255 the byte tokens in byte order.
	if len(m.Vocab) != 768 {
		t.Fatalf("%d vocab entries, want 768", len(m.Vocab))
	}
	byID := make([]string, 768)
	for tok, id := range m.Vocab {
		if id < 0 || id >= 768 || byID[id] != "" {
			t.Fatalf("bad or duplicate id %d for %q", id, tok)
		}
		byID[id] = tok
	}
	br := byteRunes()
	for b := 0; b < 256; b++ {
		if byID[b] != string(br[b]) {
			t.Fatalf("id %d is %q, want the byte token %q", b, byID[b], string(br[b]))
		}
	}
	if byID[32] != "\u0120" || byID[10] != "\u010a" { // GPT-2: space -> Ġ, newline -> Ċ
		t.Errorf("space/newline tokens %q %q", byID[32], byID[10])
	}
	// Every merge joins two vocabulary tokens into a vocabulary token.
	if len(m.Merges) != 512 {
		t.Errorf("%d merges, want 512", len(m.Merges))
	}
	for _, mg := range m.Merges {
		var a, b string
		for i := 0; i < len(mg); i++ {
			if mg[i] == ' ' {
				a, b = mg[:i], mg[i+1:]
				break
			}
		}
		_, okA := m.Vocab[a]
		_, okB := m.Vocab[b]
		_, okAB := m.Vocab[a+b]
		if !okA || !okB || !okAB {
			t.Fatalf("merge %q: parts or result missing from the vocabulary", mg)
		}
	}
	// Special tokens at 768..1023, named as Llama 3's.
	st := SpecialTokens()
	if len(tf.AddedTokens) != 256 {
		t.Fatalf("%d added tokens", len(tf.AddedTokens))
	}
	for i, at := range tf.AddedTokens {
		if at.ID != 768+i || at.Content != st[i] || !at.Special || at.Normalized {
			t.Errorf("added token %d: %+v", i, at)
		}
	}
	if st[9] != "<|eot_id|>" || tf.AddedTokens[9].ID != 777 {
		t.Errorf("eot: %s %d", st[9], tf.AddedTokens[9].ID)
	}

	// A naive BPE over the merges (lowest rank first) turns frequent
	// English words into single tokens.
	rank := map[[2]string]int{}
	for i, mg := range m.Merges {
		for j := 0; j < len(mg); j++ {
			if mg[j] == ' ' {
				rank[[2]string{mg[:j], mg[j+1:]}] = i
				break
			}
		}
	}
	encode := func(word string) []string {
		var syms []string
		for _, b := range []byte(word) {
			syms = append(syms, string(br[b]))
		}
		for {
			best, at := len(m.Merges), -1
			for k := 0; k+1 < len(syms); k++ {
				if r, ok := rank[[2]string{syms[k], syms[k+1]}]; ok && r < best {
					best, at = r, k
				}
			}
			if at < 0 {
				return syms
			}
			syms = append(syms[:at], append([]string{syms[at] + syms[at+1]}, syms[at+2:]...)...)
		}
	}
	for _, w := range []string{" the", " and", " of", " to"} {
		if got := encode(w); len(got) != 1 {
			t.Errorf("%q encodes to %q, want one token", w, got)
		}
	}
}

// The large vocabulary fills past what the corpus teaches with merges of an
// existing token and a byte, keeping the vocabulary consistent.
func TestBPEVocabLarge(t *testing.T) {
	tokens, merges := bpeVocab(128000)
	if len(tokens) != 128000 {
		t.Fatalf("%d tokens", len(tokens))
	}
	seen := map[string]bool{}
	for _, tok := range tokens {
		if seen[tok] {
			t.Fatalf("duplicate token %q", tok)
		}
		seen[tok] = true
	}
	for _, mg := range merges {
		if !seen[mg[0]] || !seen[mg[1]] || !seen[mg[0]+mg[1]] {
			t.Fatalf("merge %q", mg)
		}
	}
	if len(merges) < 128000-256 {
		t.Errorf("%d merges for %d learned tokens", len(merges), 128000-256)
	}
}
