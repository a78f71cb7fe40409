package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/runtime/safetensors"
)

func TestRunOverridesPreset(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	var out, errb bytes.Buffer
	code := run([]string{"--preset", "tiny", "--out", dir, "--layers", "3", "--dtype", "float32", "--tied=false", "--seed", "7"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Layers int    `json:"num_hidden_layers"`
		Hidden int    `json:"hidden_size"`
		DType  string `json:"torch_dtype"`
		Tied   bool   `json:"tie_word_embeddings"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Layers != 3 || cfg.Hidden != 64 || cfg.DType != "float32" || cfg.Tied {
		t.Errorf("config %+v", cfg)
	}
	s, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := len(s.Names()); n != 3*9+3 {
		t.Errorf("%d tensors, want %d", n, 3*9+3)
	}
	if !strings.Contains(out.String(), "wrote "+dir) {
		t.Errorf("stdout %q", out.String())
	}
}

func TestRunErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--out DIR is required"},
		{[]string{"--out", "x", "--preset", "huge"}, "unknown preset"},
		{[]string{"--out", "x", "--heads", "3"}, "multiple of kv-heads"},
		{[]string{"--out", "x", "--dtype", "f16"}, "float32 or bfloat16"},
		{[]string{"--out", "x", "--layers", "two"}, "invalid value"},
		{[]string{"--out", "x", "extra"}, "unexpected argument"},
		{[]string{"--out", "x", "--gguf", "q5_k"}, "unknown GGUF tensor type"},
		{[]string{"--out", "x", "--gguf", "q4_0", "--gguf-embd", "bf16"}, "unknown GGUF tensor type"},
		{[]string{"--out", "x", "--gguf-out", "x.gguf"}, "need --gguf TYPE"},
		{[]string{"--gguf-from", "x", "--gguf", "f16", "--out", "y"}, "give no --out"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errb.String(), c.want)
		}
	}
}

// --gguf-from converts an existing directory, by default to DIR/model-TYPE.gguf.
func TestRunGGUFFrom(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	var out, errb bytes.Buffer
	if code := run([]string{"--preset", "tiny", "--layers", "1", "--out", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"--gguf-from", dir, "--gguf", "q8_0"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	path := filepath.Join(dir, "model-q8_0.gguf")
	if !strings.Contains(out.String(), "wrote "+path) {
		t.Errorf("stdout %q", out.String())
	}
	f := readGGUF(t, path)
	if len(f.tensors) != 1*9+3 || f.kv["general.file_type"] != uint32(7) {
		t.Errorf("%d tensors, file type %v", len(f.tensors), f.kv["general.file_type"])
	}
	// A missing directory is an error, not a crash.
	if code := run([]string{"--gguf-from", filepath.Join(dir, "nope"), "--gguf", "f16"}, &out, &errb); code != 1 {
		t.Errorf("missing directory: exit %d", code)
	}
}
