package tokenizer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The Llama 3 reference lives in testdata/llama3/gen (git-ignored): a
// tokenizer.json built from the vocabulary of the npm package
// llama3-tokenizer-js, and cases encoded/decoded by that package. Its script
// (node + npm) writes it; .ci/run runs the script when the reference is
// missing or older than it, and the tests fail until it has been run.
const (
	llama3Script = "testdata/llama3/make_tokenizer_json.mjs"
	llama3Gen    = "testdata/llama3/gen"
)

type llama3Cases struct {
	Package string `json:"package"`
	Encode  []struct {
		Source string  `json:"source"`
		Text   string  `json:"text"`
		IDs    []int32 `json:"ids"`
		BOS    bool    `json:"bos"`
		EOS    bool    `json:"eos"`
	} `json:"encode"`
	Decode []struct {
		Source string  `json:"source"`
		IDs    []int32 `json:"ids"`
		Text   string  `json:"text"`
	} `json:"decode"`
}

var llama3 struct {
	once  sync.Once
	tk    *pipeline
	cases *llama3Cases
	err   string
}

// loadLlama3 returns the Llama 3 tokenizer and reference cases; it fails,
// naming the command that generates them, if they are missing or stale.
func loadLlama3(t testing.TB) (*pipeline, *llama3Cases) {
	t.Helper()
	llama3.once.Do(func() {
		if !llama3Fresh() {
			llama3.err = "the Llama 3 reference in runtime/tokenizer/" + llama3Gen + " is missing or older than its script; " +
				"generate it (needs node and npm; .ci/run does this) with:\n\tnode runtime/tokenizer/" + llama3Script
			return
		}
		tk, err := Load(llama3Gen)
		if err != nil {
			llama3.err = err.Error()
			return
		}
		raw, err := os.ReadFile(filepath.Join(llama3Gen, "cases.json"))
		if err != nil {
			llama3.err = err.Error()
			return
		}
		var c llama3Cases
		if err := json.Unmarshal(raw, &c); err != nil {
			llama3.err = err.Error()
			return
		}
		llama3.tk, llama3.cases = tk.(*pipeline), &c
	})
	if llama3.err != "" {
		t.Fatal(llama3.err)
	}
	return llama3.tk, llama3.cases
}

// llama3Fresh reports whether gen/stamp holds the SHA-256 of the script.
func llama3Fresh() bool {
	script, err := os.ReadFile(llama3Script)
	if err != nil {
		return false
	}
	stamp, err := os.ReadFile(filepath.Join(llama3Gen, "stamp"))
	if err != nil {
		return false
	}
	sum := sha256.Sum256(script)
	return strings.TrimSpace(string(stamp)) == hex.EncodeToString(sum[:])
}

const (
	llama3BOS = 128000
	llama3EOS = 128001 // <|end_of_text|>, which the package appends when eos is set
)

// Every encoding the package produced (its own test suite and ~3000 random
// strings) must come out token for token. The package's bos option is
// addSpecial (Llama 3's post-processor adds only BOS); its eos option appends
// <|end_of_text|>, which HF's template does not, so it is appended here.
//
// Special tokens: the package cuts exactly the 256 Llama 3.1 special-token
// strings out of the text before the regex split, which is what HF does with
// added tokens that are special, normalized=false and not lstrip/rstrip (as in
// Meta's file and the generated one), so embedded special tokens and near
// misses ("<|eot_id|", "<|reserved_special_token_300|>") are compared too.
// The random strings leave out U+0085, U+FEFF and U+017F, where the package's
// JavaScript regex and HF's Oniguruma regex disagree (see the script).
func TestLlama3MatchesReference(t *testing.T) {
	tk, cases := loadLlama3(t)
	counts := map[string]int{}
	bad := 0
	for _, c := range cases.Encode {
		got, err := tk.Encode(c.Text, c.BOS)
		if err != nil {
			t.Fatal(err)
		}
		if c.EOS {
			got = append(got, llama3EOS)
		}
		counts[c.Source]++
		if !slices.Equal(got, c.IDs) {
			if bad++; bad <= 5 {
				t.Errorf("%s case %q:\n got %v\nwant %v", c.Source, c.Text, got, c.IDs)
			}
			continue
		}
		if c.BOS || c.EOS {
			continue
		}
		back, err := tk.Decode(got, false)
		if err != nil || back != c.Text {
			t.Errorf("Decode(Encode(%q)) = %q, %v", c.Text, back, err)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d encodings differ from %s", bad, len(cases.Encode), cases.Package)
	}
	if counts["package"] < 20 || counts["random"] < 3000 {
		t.Errorf("too few reference cases: %v", counts)
	}
	t.Logf("compared %v encodings with %s", counts, cases.Package)
}

func TestLlama3DecodeMatchesReference(t *testing.T) {
	tk, cases := loadLlama3(t)
	for _, c := range cases.Decode {
		got, err := tk.Decode(c.IDs, false)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.Text {
			t.Errorf("%s: Decode(%v) = %q, want %q", c.Source, c.IDs, got, c.Text)
		}
	}
	t.Logf("compared %d decodings", len(cases.Decode))
}

// meta-llama/Llama-3.1-8B-Instruct's encoding of the rendered chat (user
// "Hello!", generation prompt) from HF discussion #97, and the double BOS
// that add_special_tokens=True gives on the rendered string.
func TestLlama3ChatEncoding(t *testing.T) {
	tk, _ := loadLlama3(t)
	text := "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
		"Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\n"
	want := []int32{128000, 128006, 9125, 128007, 271, 38766, 1303, 33025, 2696, 25, 6790, 220, 2366, 18, 198,
		15724, 2696, 25, 220, 1627, 10263, 220, 2366, 19, 271, 128009, 128006, 882, 128007, 271,
		9906, 0, 128009, 128006, 78191, 128007, 271}
	got, err := tk.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("chat encoding:\n got %v\nwant %v", got, want)
	}
	got, _ = tk.Encode(text, true)
	if !slices.Equal(got, append([]int32{128000}, want...)) {
		t.Errorf("with addSpecial: got %v, want a double BOS then the same ids", got[:3])
	}
	back, _ := tk.Decode(want, true)
	if back != "system\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nuser\n\nHello!assistant\n\n" {
		t.Errorf("Decode(skipSpecial) = %q", back)
	}
}

func TestLlama3Vocabulary(t *testing.T) {
	tk, _ := loadLlama3(t)
	if tk.VocabSize() != 128256 {
		t.Errorf("VocabSize = %d, want 128256", tk.VocabSize())
	}
	// The ids of transformers' convert_llama_weights_to_hf.py special tokens.
	for tok, want := range map[string]int32{
		"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|finetune_right_pad_id|>": 128004,
		"<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eom_id|>": 128008,
		"<|eot_id|>": 128009, "<|python_tag|>": 128010, "<|reserved_special_token_247|>": 128255,
		"system": 9125, "user": 882, "assistant": 78191, "ĊĊ": 271,
	} {
		if id, ok := tk.TokenID(tok); !ok || id != want {
			t.Errorf("TokenID(%q) = %d, %v; want %d", tok, id, ok, want)
		}
	}
	if !tk.IsSpecial(128009) || tk.IsSpecial(271) {
		t.Error("IsSpecial wrong for 128009 or 271")
	}
}
