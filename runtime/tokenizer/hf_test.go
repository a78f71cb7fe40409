//go:build hftokenizers

package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Differential test of the pure-Go tokenizer against Hugging Face's Rust
// library. Runs where libtokenizers.a is available: go test -tags hftokenizers.

func compareWithHF(t *testing.T, dir string, goTok Tokenizer, texts []string) {
	t.Helper()
	rust, err := LoadHF(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rust.Close()
	bad := 0
	for _, s := range texts {
		if strings.IndexByte(s, 0) >= 0 {
			continue // the C API cannot take NUL
		}
		for _, add := range []bool{false, true} {
			want, err := rust.Encode(s, add)
			if err != nil {
				t.Fatal(err)
			}
			got, err := goTok.Encode(s, add)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				if bad++; bad <= 5 {
					t.Errorf("Encode(%q, %v): Go %v, Rust %v", s, add, got, want)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(13, 14))
	for n := 0; n < 2000; n++ {
		ids := make([]int32, r.IntN(30))
		for i := range ids {
			ids[i] = int32(r.IntN(goTok.VocabSize()))
		}
		for _, skip := range []bool{false, true} {
			want, _ := rust.Decode(ids, skip)
			got, _ := goTok.Decode(ids, skip)
			if got != want {
				if bad++; bad <= 10 {
					t.Errorf("Decode(%v, %v): Go %q, Rust %q", ids, skip, got, want)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d differences", bad)
	}
}

func TestHFStories(t *testing.T) {
	tk := loadStories(t)
	r := rand.New(rand.NewPCG(15, 16))
	var texts []string
	for i := 0; i < 3000; i++ {
		texts = append(texts, randomStoryText(r))
	}
	texts = append(texts, "Lily<s>Lily", "</s>x<unk>", "")
	compareWithHF(t, storiesDir, tk, texts)
}

func TestHFLlama3(t *testing.T) {
	tk, cases := loadLlama3(t)
	var texts []string
	for _, c := range cases.Encode {
		texts = append(texts, c.Text)
	}
	compareWithHF(t, llama3Gen, tk, texts)
}
