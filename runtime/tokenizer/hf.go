//go:build hftokenizers

package tokenizer

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	hf "github.com/daulet/tokenizers"
)

// HFTokenizer is a Tokenizer over Hugging Face's Rust tokenizers library, via
// github.com/daulet/tokenizers (cgo; linking needs libtokenizers.a, built from
// that module's Rust crate). Encode and Decode run in Rust; the vocabulary
// lookups, the tokenizer_config.json BOS/EOS rule and streaming use the pure-Go
// pipeline loaded from the same files, so both implementations agree on them.
type HFTokenizer struct {
	rust *hf.Tokenizer
	meta *pipeline
	// template replaces the Rust post-processor when tokenizer_config.json
	// rebuilds it (the LlamaTokenizer classes), as transformers does.
	template []templatePart
}

// LoadHF reads dir/tokenizer.json (and tokenizer_config.json if present) into
// the Rust library. Call Close to free it.
func LoadHF(dir string) (*HFTokenizer, error) {
	tj, cj, err := readFiles(dir)
	if err != nil {
		return nil, err
	}
	meta, err := newPipeline(tj, cj)
	if err != nil {
		return nil, err
	}
	rust, err := hf.FromBytes(tj)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: huggingface tokenizers: %w", err)
	}
	t := &HFTokenizer{rust: rust, meta: meta}
	if len(cj) > 0 {
		// newPipeline applied the config's template, if any; compare with the
		// file's own to see whether the config overrode it.
		plain, err := newPipeline(tj, nil)
		if err != nil {
			rust.Close()
			return nil, err
		}
		if !sameTemplate(plain.template, meta.template) {
			t.template = meta.template
		}
	}
	return t, nil
}

func sameTemplate(a, b []templatePart) bool {
	return (a == nil) == (b == nil) && slices.EqualFunc(a, b, func(x, y templatePart) bool {
		return x.sequence == y.sequence && slices.Equal(x.ids, y.ids)
	})
}

// Close frees the Rust tokenizer.
func (t *HFTokenizer) Close() error { return t.rust.Close() }

func (t *HFTokenizer) streamPipeline() *pipeline { return t.meta }

func (t *HFTokenizer) Encode(text string, addSpecial bool) ([]int32, error) {
	if !utf8.ValidString(text) {
		text = string(appendLossy(nil, []byte(text)))
	}
	if strings.IndexByte(text, 0) >= 0 {
		return nil, fmt.Errorf("tokenizer: text contains a NUL byte, which the tokenizers C API cannot take")
	}
	if !addSpecial || t.template == nil {
		ids, _ := t.rust.Encode(text, addSpecial)
		return toInt32(nil, ids), nil
	}
	var out []int32
	for _, part := range t.template {
		if part.sequence {
			ids, _ := t.rust.Encode(text, false)
			out = toInt32(out, ids)
		} else {
			out = append(out, part.ids...)
		}
	}
	return out, nil
}

func toInt32(dst []int32, ids []uint32) []int32 {
	for _, id := range ids {
		dst = append(dst, int32(id))
	}
	return dst
}

func (t *HFTokenizer) Decode(ids []int32, skipSpecial bool) (string, error) {
	u := make([]uint32, len(ids))
	for i, id := range ids {
		if _, _, ok := t.meta.idToToken(id); !ok {
			return "", fmt.Errorf("tokenizer: unknown token id %d", id)
		}
		u[i] = uint32(id)
	}
	return t.rust.Decode(u, skipSpecial), nil
}

func (t *HFTokenizer) VocabSize() int                     { return t.meta.VocabSize() }
func (t *HFTokenizer) TokenID(token string) (int32, bool) { return t.meta.TokenID(token) }
func (t *HFTokenizer) IsSpecial(id int32) bool            { return t.meta.IsSpecial(id) }
