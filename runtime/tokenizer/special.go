package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// specialTokenKeys are the single-token attributes of transformers'
// SpecialTokensMixin (SPECIAL_TOKENS_ATTRIBUTES less
// additional_special_tokens, which is a list).
var specialTokenKeys = []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}

// checkSpecialFiles validates the special tokens that dir's
// special_tokens_map.json and tokenizer_config.json name (either may be
// absent).
func (p *pipeline) checkSpecialFiles(dir string) error {
	for _, name := range []string{"special_tokens_map.json", "tokenizer_config.json"} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("tokenizer: %w", err)
		}
		if err := p.checkSpecialTokens(data); err != nil {
			return fmt.Errorf("tokenizer: %s: %w", path, err)
		}
	}
	return nil
}

// checkSpecialTokens checks a special_tokens_map.json (or the same keys of a
// tokenizer_config.json): a JSON object whose special-token entries are null,
// a string or an AddedToken object {"content": string, ...}, whose
// additional_special_tokens is a list of those, and whose every token is in
// the vocabulary. transformers would add an unknown token to the vocabulary,
// growing the embedding; a checkpoint cannot, so it is refused.
func (p *pipeline) checkSpecialTokens(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return errors.New("not a JSON object")
	}
	check := func(field string, raw json.RawMessage) error {
		tok, err := specialContent(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		if _, ok := p.TokenID(tok); !ok {
			return fmt.Errorf("%s: %q is not in the vocabulary", field, tok)
		}
		return nil
	}
	for _, key := range specialTokenKeys {
		if raw, ok := m[key]; ok && !isNull(raw) {
			if err := check(key, raw); err != nil {
				return err
			}
		}
	}
	if raw, ok := m["additional_special_tokens"]; ok && !isNull(raw) {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return errors.New("additional_special_tokens: want a list of tokens")
		}
		for i, item := range list {
			if err := check(fmt.Sprintf("additional_special_tokens[%d]", i), item); err != nil {
				return err
			}
		}
	}
	return nil
}

// specialContent reads a token written as "text" or {"content": "text", ...}.
func specialContent(raw json.RawMessage) (string, error) {
	var s string
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte(`"`)) {
		if err := json.Unmarshal(raw, &s); err == nil && s != "" {
			return s, nil
		}
		return "", errors.New("want a non-empty string")
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil || *obj.Content == "" {
		return "", errors.New(`want a string or an object with a non-empty string "content"`)
	}
	return *obj.Content, nil
}
