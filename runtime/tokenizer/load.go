package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// fileJSON is the part of tokenizer.json this package reads.
type fileJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

type modelJSON struct {
	Type                    string           `json:"type"`
	Dropout                 *float64         `json:"dropout"`
	UnkToken                *string          `json:"unk_token"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	FuseUnk                 bool             `json:"fuse_unk"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
	Vocab                   map[string]int32 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
}

// configJSON is the part of tokenizer_config.json this package reads.
type configJSON struct {
	TokenizerClass string          `json:"tokenizer_class"`
	AddBOSToken    *bool           `json:"add_bos_token"`
	AddEOSToken    *bool           `json:"add_eos_token"`
	BOSToken       json.RawMessage `json:"bos_token"`
	EOSToken       json.RawMessage `json:"eos_token"`
}

func isNull(raw json.RawMessage) bool {
	return len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func newPipeline(tokenizerJSON, configJSONBytes []byte) (*pipeline, error) {
	var f fileJSON
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.json: %w", err)
	}
	if isNull(f.Model) {
		return nil, fmt.Errorf("tokenizer: tokenizer.json has no model")
	}
	model, err := parseModel(f.Model)
	if err != nil {
		return nil, err
	}
	table := newByteLevelTable()
	p := &pipeline{model: model, added: map[int32]*addedToken{}, addedIDs: map[string]int32{}}
	if !isNull(f.Normalizer) {
		if p.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
	}
	if !isNull(f.PreTokenizer) {
		if p.preTok, err = parsePreTokenizer(f.PreTokenizer, table); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
	}
	if !isNull(f.Decoder) {
		if p.decoder, err = parseDecoder(f.Decoder, table); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
	}
	if err := p.addTokens(f.AddedTokens); err != nil {
		return nil, err
	}
	if !isNull(f.PostProcessor) {
		if p.template, err = p.parsePostProcessor(f.PostProcessor); err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
	}
	if len(configJSONBytes) > 0 {
		if err := p.applyConfig(configJSONBytes); err != nil {
			return nil, err
		}
	}
	p.vocabSize = len(model.vocabR)
	for id := range p.added {
		p.vocabSize = max(p.vocabSize, int(id)+1)
	}
	return p, nil
}

func parseModel(raw json.RawMessage) (*bpeModel, error) {
	var ct componentType
	if err := json.Unmarshal(raw, &ct); err != nil {
		return nil, fmt.Errorf("tokenizer: model: %w", err)
	}
	if ct.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer: model type %q is not supported (only BPE)", ct.Type)
	}
	var m modelJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("tokenizer: model: %w", err)
	}
	if m.Dropout != nil && *m.Dropout > 0 {
		return nil, fmt.Errorf("tokenizer: BPE dropout %g is not supported", *m.Dropout)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, fmt.Errorf("tokenizer: BPE continuing_subword_prefix is not supported")
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, fmt.Errorf("tokenizer: BPE end_of_word_suffix is not supported")
	}
	if len(m.Vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: BPE model has an empty vocab")
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	unk := ""
	if m.UnkToken != nil {
		unk = *m.UnkToken
	}
	return newBPEModel(m.Vocab, merges, unk, m.FuseUnk, m.ByteFallback, m.IgnoreMerges)
}

// addTokens registers added_tokens. A token whose content is already in the
// model vocabulary keeps the model's id, as HF does.
func (p *pipeline) addTokens(toks []addedToken) error {
	var raw, norm []string
	for i := range toks {
		t := &toks[i]
		if t.Content == "" {
			return fmt.Errorf("tokenizer: added token %d has empty content", t.ID)
		}
		if id, ok := p.model.vocab[t.Content]; ok {
			t.ID = id
		}
		if t.ID < 0 {
			return fmt.Errorf("tokenizer: added token %q has negative id %d", t.Content, t.ID)
		}
		p.added[t.ID] = t
		p.addedIDs[t.Content] = t.ID
		if t.Normalized {
			content := t.Content
			if p.normalizer != nil {
				var err error
				if content, err = p.normalizer.normalize(content); err != nil {
					return fmt.Errorf("tokenizer: normalizing added token %q: %w", t.Content, err)
				}
			}
			p.normToks = append(p.normToks, t)
			norm = append(norm, content)
		} else {
			p.rawToks = append(p.rawToks, t)
			raw = append(raw, t.Content)
		}
	}
	p.rawTrie = newTrie(raw)
	p.normTrie = newTrie(norm)
	return nil
}

func (p *pipeline) parsePostProcessor(raw json.RawMessage) ([]templatePart, error) {
	var ct componentType
	if err := json.Unmarshal(raw, &ct); err != nil {
		return nil, fmt.Errorf("post_processor: %w", err)
	}
	switch ct.Type {
	case "ByteLevel":
		return nil, nil // only moves offsets
	case "Sequence":
		var v struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("post_processor Sequence: %w", err)
		}
		var tmpl []templatePart
		for _, r := range v.Processors {
			t, err := p.parsePostProcessor(r)
			if err != nil {
				return nil, err
			}
			if t != nil && tmpl != nil {
				return nil, fmt.Errorf("post_processor Sequence with two templates is not supported")
			}
			if t != nil {
				tmpl = t
			}
		}
		return tmpl, nil
	case "TemplateProcessing":
		var v struct {
			Single []map[string]struct {
				ID string `json:"id"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				IDs []int32 `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("post_processor TemplateProcessing: %w", err)
		}
		tmpl := []templatePart{}
		for _, item := range v.Single {
			if seq, ok := item["Sequence"]; ok {
				if seq.ID != "A" {
					return nil, fmt.Errorf("post_processor TemplateProcessing: single template uses sequence %q", seq.ID)
				}
				tmpl = append(tmpl, templatePart{sequence: true})
				continue
			}
			sp, ok := item["SpecialToken"]
			if !ok {
				return nil, fmt.Errorf("post_processor TemplateProcessing: unknown template item %v", item)
			}
			st, ok := v.SpecialTokens[sp.ID]
			if !ok {
				return nil, fmt.Errorf("post_processor TemplateProcessing: special token %q is not in special_tokens", sp.ID)
			}
			tmpl = append(tmpl, templatePart{ids: st.IDs})
		}
		return tmpl, nil
	}
	return nil, fmt.Errorf("post_processor type %q is not supported (supported: TemplateProcessing, ByteLevel, Sequence)", ct.Type)
}

// applyConfig honours tokenizer_config.json where transformers does: the
// LlamaTokenizer(Fast) classes rebuild the post-processor from add_bos_token
// (default true) and add_eos_token (default false). Other classes use
// tokenizer.json's post_processor as it is.
func (p *pipeline) applyConfig(raw []byte) error {
	var c configJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("tokenizer: tokenizer_config.json: %w", err)
	}
	switch c.TokenizerClass {
	case "LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast":
	default:
		return nil
	}
	addBOS, addEOS := true, false
	if c.AddBOSToken != nil {
		addBOS = *c.AddBOSToken
	}
	if c.AddEOSToken != nil {
		addEOS = *c.AddEOSToken
	}
	tmpl := []templatePart{}
	if addBOS {
		id, err := p.configToken(c.BOSToken, "bos_token")
		if err != nil {
			return err
		}
		tmpl = append(tmpl, templatePart{ids: []int32{id}})
	}
	tmpl = append(tmpl, templatePart{sequence: true})
	if addEOS {
		id, err := p.configToken(c.EOSToken, "eos_token")
		if err != nil {
			return err
		}
		tmpl = append(tmpl, templatePart{ids: []int32{id}})
	}
	p.template = tmpl
	return nil
}

// configToken resolves a bos_token/eos_token entry: a string or {"content": ...}.
func (p *pipeline) configToken(raw json.RawMessage, name string) (int32, error) {
	if isNull(raw) {
		return 0, fmt.Errorf("tokenizer: tokenizer_config.json: add_%s is set but %s is missing", name, name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var obj struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return 0, fmt.Errorf("tokenizer: tokenizer_config.json: %s: %w", name, err)
		}
		s = obj.Content
	}
	id, ok := p.TokenID(s)
	if !ok {
		return 0, fmt.Errorf("tokenizer: tokenizer_config.json: %s %q is not in the vocabulary", name, s)
	}
	return id, nil
}

// parseMerges reads merges written as "a b" strings (older files) or as
// ["a", "b"] pairs (newer ones).
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	// Look at the first element to pick the format: one decoding pass.
	first, _ := bytes.CutPrefix(bytes.TrimSpace(raw), []byte("["))
	if first = bytes.TrimSpace(first); len(first) > 0 && first[0] == '"' {
		var strs []string
		if err := json.Unmarshal(raw, &strs); err != nil {
			return nil, fmt.Errorf("tokenizer: BPE merges: %w", err)
		}
		merges := make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("tokenizer: BPE merge %d %q is not two tokens separated by one space", i, s)
			}
			merges[i] = [2]string{a, b}
		}
		return merges, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("tokenizer: BPE merges: want \"a b\" strings or [\"a\", \"b\"] pairs: %w", err)
	}
	merges := make([][2]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("tokenizer: BPE merge %d has %d parts, want 2", i, len(p))
		}
		merges[i] = [2]string{p[0], p[1]}
	}
	return merges, nil
}
