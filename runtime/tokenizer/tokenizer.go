// Package tokenizer implements the Hugging Face tokenizer.json pipeline
// (normalizer, pre-tokenizer, BPE model, post-processor, decoder) in pure Go,
// for the components Llama-family tokenizers use: byte-level BPE with the
// Llama 3 split regex and ignore_merges, and SentencePiece-style BPE with byte
// fallback and the "▁" normalizer (Llama 2, TinyLlama, stories260K). Anything
// else is refused at load time with an error that names the component.
//
// The semantics follow huggingface/tokenizers (tokenizers/src): added tokens
// are cut out of the text first (leftmost-longest), the rest is normalized,
// pre-tokenized and merged; Decode passes the token strings through the
// decoder chain. A second implementation over github.com/daulet/tokenizers is
// behind the build tag hftokenizers (hf.go).
package tokenizer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Tokenizer turns text into token ids and back.
type Tokenizer interface {
	// Encode tokenizes text. Special-token strings in text (added tokens) are matched as single tokens.
	// addSpecial adds what the tokenizer's post_processor/tokenizer_config adds (e.g. BOS).
	Encode(text string, addSpecial bool) ([]int32, error)
	// Decode turns ids back into text; skipSpecial drops special (added, special=true) tokens.
	Decode(ids []int32, skipSpecial bool) (string, error)
	// VocabSize is one more than the largest id (model vocabulary and added tokens).
	VocabSize() int
	// TokenID maps a vocabulary or added token string to its id.
	TokenID(token string) (int32, bool)
	// IsSpecial reports whether id is an added token marked special.
	IsSpecial(id int32) bool
}

// Load reads dir/tokenizer.json and, if present, dir/tokenizer_config.json,
// and checks that the special tokens these and special_tokens_map.json name
// are in the vocabulary.
func Load(dir string) (Tokenizer, error) {
	tj, cj, err := readFiles(dir)
	if err != nil {
		return nil, err
	}
	p, err := newPipeline(tj, cj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "tokenizer.json"), err)
	}
	if err := p.checkSpecialFiles(dir); err != nil {
		return nil, err
	}
	return p, nil
}

// FromJSON builds a tokenizer from the contents of tokenizer.json and
// tokenizer_config.json (nil if there is none).
func FromJSON(tokenizerJSON []byte, tokenizerConfigJSON []byte) (Tokenizer, error) {
	return newPipeline(tokenizerJSON, tokenizerConfigJSON)
}

func readFiles(dir string) (tokenizerJSON, configJSON []byte, err error) {
	tokenizerJSON, err = os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	configJSON, err = os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return tokenizerJSON, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	return tokenizerJSON, configJSON, nil
}

// pipeline is the pure-Go Tokenizer.
type pipeline struct {
	model      *bpeModel
	normalizer normalizer   // nil: none
	preTok     preTokenizer // nil: the whole piece is one word
	decoder    decoder      // nil: tokens joined by spaces

	added     map[int32]*addedToken
	addedIDs  map[string]int32
	rawTrie   *trie // added tokens matched on the raw text (normalized=false)
	rawToks   []*addedToken
	normTrie  *trie // added tokens matched on normalized text (normalized=true)
	normToks  []*addedToken
	template  []templatePart // what addSpecial wraps around the ids; nil: nothing
	vocabSize int
}

// templatePart is one element of TemplateProcessing's "single": fixed ids, or
// the encoded sequence itself.
type templatePart struct {
	ids      []int32
	sequence bool
}

func (p *pipeline) streamPipeline() *pipeline { return p }

func (p *pipeline) VocabSize() int { return p.vocabSize }

func (p *pipeline) TokenID(token string) (int32, bool) {
	if id, ok := p.addedIDs[token]; ok {
		return id, true
	}
	id, ok := p.model.vocab[token]
	return id, ok
}

func (p *pipeline) IsSpecial(id int32) bool {
	t, ok := p.added[id]
	return ok && t.Special
}

// idToToken is HF's id_to_token: added tokens first, then the model.
func (p *pipeline) idToToken(id int32) (tok string, special, ok bool) {
	if t, ok := p.added[id]; ok {
		return t.Content, t.Special, true
	}
	if id >= 0 && int(id) < len(p.model.vocabR) && p.model.vocabR[id] != "" {
		return p.model.vocabR[id], false, true
	}
	return "", false, false
}

func (p *pipeline) Encode(text string, addSpecial bool) ([]int32, error) {
	if !utf8.ValidString(text) {
		// Ill-formed input becomes U+FFFD, as Python's errors="replace" would.
		text = string(appendLossy(nil, []byte(text)))
	}
	var ids []int32
	if addSpecial && p.template != nil {
		for _, part := range p.template {
			if !part.sequence {
				ids = append(ids, part.ids...)
				continue
			}
			var err error
			if ids, err = p.encodeText(ids, text); err != nil {
				return nil, err
			}
		}
		return ids, nil
	}
	return p.encodeText(ids, text)
}

func (p *pipeline) encodeText(ids []int32, text string) ([]int32, error) {
	var words []word
	for _, pc := range splitAdded(text, true, p.rawTrie, p.rawToks, nil) {
		if pc.id >= 0 {
			ids = append(ids, pc.id)
			continue
		}
		s := pc.text
		if p.normalizer != nil {
			var err error
			if s, err = p.normalizer.normalize(s); err != nil {
				return nil, fmt.Errorf("tokenizer: normalizer: %w", err)
			}
		}
		for _, sub := range splitAdded(s, pc.atStart, p.normTrie, p.normToks, nil) {
			if sub.id >= 0 {
				ids = append(ids, sub.id)
				continue
			}
			words = append(words[:0], word{text: sub.text, atStart: sub.atStart})
			if p.preTok != nil {
				var err error
				if words, err = p.preTok.split(words[0], words[:0]); err != nil {
					return nil, fmt.Errorf("tokenizer: pre_tokenizer: %w", err)
				}
			}
			for _, w := range words {
				var err error
				if ids, err = p.model.appendTokens(ids, w.text); err != nil {
					return nil, err
				}
			}
		}
	}
	return ids, nil
}

func (p *pipeline) Decode(ids []int32, skipSpecial bool) (string, error) {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		tok, special, ok := p.idToToken(id)
		if !ok {
			return "", fmt.Errorf("tokenizer: unknown token id %d", id)
		}
		if special && skipSpecial {
			continue
		}
		tokens = append(tokens, tok)
	}
	if p.decoder == nil {
		return strings.Join(tokens, " "), nil
	}
	out, err := p.decoder.decodeChain(tokens)
	if err != nil {
		return "", fmt.Errorf("tokenizer: decoder: %w", err)
	}
	return strings.Join(out, ""), nil
}
