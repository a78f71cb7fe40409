package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// storiesCopy copies the stories260K tokenizer files into a temp dir.
func storiesCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		data, err := os.ReadFile(filepath.Join(storiesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A special_tokens_map.json (or tokenizer_config.json) that is not an
// object, gives a token of the wrong type, or names a token outside the
// vocabulary is refused, naming the file and the field.
func TestLoadRefusesBadSpecialTokens(t *testing.T) {
	good := []string{
		`{}`,
		`{"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}, "pad_token": null}`,
		`{"additional_special_tokens": ["<unk>", {"content": "</s>"}], "unknown_key": 5}`,
	}
	for _, m := range good {
		dir := storiesCopy(t)
		os.WriteFile(filepath.Join(dir, "special_tokens_map.json"), []byte(m), 0o644)
		if _, err := Load(dir); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	cases := []struct {
		file, content, want string
	}{
		{"special_tokens_map.json", `[1, 2]`, "not a JSON object"},
		{"special_tokens_map.json", `null`, "not a JSON object"},
		{"special_tokens_map.json", `{"bos_token": "<s>"`, "not a JSON object"},
		{"special_tokens_map.json", `{"bos_token": 5}`, "bos_token: want a string"},
		{"special_tokens_map.json", `{"bos_token": ""}`, "bos_token: want a non-empty string"},
		{"special_tokens_map.json", `{"eos_token": {"content": 7}}`, "eos_token: want a string or an object"},
		{"special_tokens_map.json", `{"unk_token": {"text": "<unk>"}}`, "unk_token: want a string or an object"},
		{"special_tokens_map.json", `{"pad_token": "<pad>"}`, `pad_token: "<pad>" is not in the vocabulary`},
		{"special_tokens_map.json", `{"mask_token": {"content": "<mask>"}}`, `mask_token: "<mask>" is not in the vocabulary`},
		{"special_tokens_map.json", `{"additional_special_tokens": "<s>"}`, "additional_special_tokens: want a list"},
		{"special_tokens_map.json", `{"additional_special_tokens": ["<s>", "<nope>"]}`, `additional_special_tokens[1]: "<nope>" is not in the vocabulary`},
		{"tokenizer_config.json", `{"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "pad_token": "<pad>"}`, `pad_token: "<pad>" is not in the vocabulary`},
		{"tokenizer_config.json", `{"eos_token": ["</s>"]}`, "eos_token: want a string"},
	}
	for _, tc := range cases {
		dir := storiesCopy(t)
		if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), tc.file+": "+tc.want) {
			t.Errorf("%s %s: got %v, want an error with %q", tc.file, tc.content, err, tc.file+": "+tc.want)
		}
	}
}
