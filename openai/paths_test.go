package openai

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// No response tells a client where the server keeps its files: the errors
// of the inference and admin routes name adapters and reasons, and the
// paths stay in the log.
func TestResponsesRevealNoServerPaths(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	be := cpu.New(1)
	t.Cleanup(be.Close)
	l, err := llama.Load(storiesDir, llama.LoadOptions{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	// Adapters the server must refuse, present when it starts.
	saveRandomAdapter(t, l.Model, filepath.Join(outside, "evil"), 3)
	if err := os.Symlink(filepath.Join(outside, "evil"), filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(root, "broken")
	saveRandomAdapter(t, l.Model, broken, 4)
	if err := os.WriteFile(filepath.Join(broken, "adapter_model.safetensors"), []byte("not a safetensors file"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrongRank := filepath.Join(root, "wrong-rank")
	saveRandomAdapter(t, l.Model, wrongRank, 5)
	cfg, err := os.ReadFile(filepath.Join(wrongRank, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wrongRank, "adapter_config.json"), []byte(strings.Replace(string(cfg), `"r": 8`, `"r": 16`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	noFiles := filepath.Join(root, "empty")
	if err := os.Mkdir(noFiles, 0o755); err != nil {
		t.Fatal(err)
	}

	ls := newLoRAServer(t, root, "Once")
	request := func(method, path, body string) string {
		req, err := http.NewRequest(method, ls.ts.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := ls.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status + " " + string(b)
	}
	var answers []string
	for _, model := range []string{"evil", "broken", "wrong-rank", "empty", "no-such-adapter"} {
		answers = append(answers,
			request("POST", "/v1/completions", `{"model": "`+model+`", "prompt": "Once", "max_tokens": 2}`),
			request("POST", "/v1/completions", `{"model": "`+model+`", "prompt": "Once", "max_tokens": 2, "stream": true}`),
			request("POST", "/v1/chat/completions", `{"model": "`+model+`", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}`),
			request("POST", "/tokenize", `{"model": "`+model+`", "prompt": "Once"}`))
	}
	for _, body := range []string{
		`{"lora_name": "a", "lora_path": "evil"}`,
		`{"lora_name": "b", "lora_path": "broken"}`,
		`{"lora_name": "c", "lora_path": "wrong-rank"}`,
		`{"lora_name": "d", "lora_path": "empty"}`,
		`{"lora_name": "e", "lora_path": "missing"}`,
		`{"lora_name": "f", "lora_path": "../` + filepath.Base(outside) + `/evil"}`,
		`{"lora_name": "pirate-lora", "lora_path": "pirate-lora"}`,
		`{"lora_name": "", "lora_path": "pirate-lora"}`,
	} {
		answers = append(answers, request("POST", "/v1/load_lora_adapter", body))
	}
	answers = append(answers,
		request("POST", "/v1/unload_lora_adapter", `{"lora_name": "no-such-adapter"}`),
		request("GET", "/v1/models", ""),
		request("GET", "/metrics", ""))
	for _, a := range answers {
		for _, secret := range []string{root, outside, os.TempDir() + "/"} {
			if strings.Contains(a, secret) {
				t.Errorf("a response reveals the server path %s: %s", secret, a)
			}
		}
	}
	// The refusals still say what is wrong.
	if a := answers[0]; !strings.HasPrefix(a, "400") || !strings.Contains(a, "evil") {
		t.Errorf("adapter outside the directory: %s", a)
	}
}
