package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/parrot-llm/parrot/adapters"
	"github.com/parrot-llm/parrot/adapters/adaptertest"
	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

// saveRandomAdapter writes adaptertest.Random(m, seed) to dir.
func saveRandomAdapter(t *testing.T, m *llama.Model, dir string, seed uint64) {
	t.Helper()
	if err := peft.Save(dir, adaptertest.Random(m, seed)); err != nil {
		t.Fatal(err)
	}
}

type loraServer struct {
	ts   *httptest.Server
	base string // greedy base output, from an engine without LoRA slots
}

func newLoRAServer(t *testing.T, adaptersDir string, prompt string) *loraServer {
	t.Helper()
	backend := cpu.New(1)
	t.Cleanup(backend.Close)
	load := func() *llama.Loaded {
		l, err := llama.Load(storiesDir, llama.LoadOptions{Backend: backend})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	plain, err := engine.NewEngine(load(), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(context.Background())
	ls := &loraServer{}
	ch, err := plain.Submit(context.Background(), engine.Request{Prompt: prompt, MaxTokens: 24, Sampling: greedyParams()})
	if err != nil {
		t.Fatal(err)
	}
	for ev := range ch {
		ls.base += ev.Text
	}

	loaded := load()
	saveRandomAdapter(t, loaded.Model, filepath.Join(adaptersDir, "pirate-lora"), 1)
	reg, err := adapters.NewRegistry(adaptersDir, "stories")
	if err != nil {
		t.Fatal(err)
	}
	w := adapters.Watch(reg, adapters.WatchOptions{})
	t.Cleanup(func() { w.Close() })
	pool, err := adapters.NewPool(loaded.Model, 2, 16, 0, reg, adapters.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := engine.NewEngine(loaded, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close(context.Background()) })
	base, err := NewStaticResolver(engine, "stories")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{LoRAAdmin: true, Logger: slog.New(slog.NewTextHandler(&syncWriter{}, nil))})
	srv.SetModels(NewLoRAResolver(base, engine, pool))
	ls.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(ls.ts.Close)
	return ls
}

func greedyParams() sampler.Params { return sampler.Params{Temperature: 0, TopP: 1} }

func (ls *loraServer) complete(t *testing.T, model, prompt string) (string, error) {
	t.Helper()
	c := oai.NewClient(option.WithBaseURL(ls.ts.URL+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	resp, err := c.Completions.New(context.Background(), oai.CompletionNewParams{
		Model: oai.CompletionNewParamsModel(model), Prompt: oai.CompletionNewParamsPromptUnion{OfString: oai.String(prompt)},
		MaxTokens: oai.Int(24), Temperature: oai.Float(0),
	})
	if err != nil {
		return "", err
	}
	return resp.Choices[0].Text, nil
}

func TestLoRAAdaptersThroughTheAPI(t *testing.T) {
	dir := t.TempDir()
	const prompt = "Once upon a time"
	ls := newLoRAServer(t, dir, prompt)

	base, err := ls.complete(t, "stories", prompt)
	if err != nil {
		t.Fatal(err)
	}
	if base != ls.base {
		t.Errorf("base output with adapters loaded %q, without %q", base, ls.base)
	}
	pirate, err := ls.complete(t, "pirate-lora", prompt)
	if err != nil {
		t.Fatal(err)
	}
	if pirate == base {
		t.Errorf("adapter output equals the base output %q", base)
	}
	if again, _ := ls.complete(t, "stories", prompt); again != base {
		t.Errorf("base output changed after an adapter ran: %q vs %q", again, base)
	}

	// /v1/models lists the adapter with the base as parent and root.
	resp, err := ls.ts.Client().Get(ls.ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Data []ModelCard }
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	found := false
	for _, m := range list.Data {
		if m.ID == "pirate-lora" {
			found = m.Parent == "stories" && m.Root == "stories"
		}
	}
	if !found {
		t.Errorf("models list %+v lacks pirate-lora with parent stories", list.Data)
	}

	// Unknown names are 404 model_not_found.
	_, err = ls.complete(t, "no-such-lora", prompt)
	var apiErr *oai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown adapter: %v", err)
	}

	// Admin: load a second adapter, serve it, unload it.
	m, _ := llama.Load(storiesDir, llama.LoadOptions{Backend: cpu.New(1)})
	saveRandomAdapter(t, m.Model, filepath.Join(dir, ".staging", "second"), 2)
	post := func(path, body string) (int, string) {
		r, err := ls.ts.Client().Post(ls.ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return r.StatusCode, sb.String()
	}
	if code, body := post("/v1/load_lora_adapter", `{"lora_name": "second", "lora_path": "`+filepath.Join(dir, ".staging", "second")+`"}`); code != 200 {
		t.Fatalf("load_lora_adapter: %d %s", code, body)
	}
	second, err := ls.complete(t, "second", prompt)
	if err != nil || second == base || second == pirate {
		t.Errorf("second adapter: %q, %v", second, err)
	}
	if code, body := post("/v1/unload_lora_adapter", `{"lora_name": "second"}`); code != 200 {
		t.Fatalf("unload_lora_adapter: %d %s", code, body)
	}
	if _, err := ls.complete(t, "second", prompt); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unloaded adapter still served: %v", err)
	}
	if code, body := post("/v1/load_lora_adapter", `{"lora_name": "evil", "lora_path": "/etc"}`); code == 200 {
		t.Errorf("an adapter outside the adapters directory was accepted: %s", body)
	}

	// A corrupt adapter is refused with 400 and serving goes on.
	bad := filepath.Join(dir, "broken")
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "adapter_config.json"), []byte(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}`), 0o644)
	os.WriteFile(filepath.Join(bad, "adapter_model.safetensors"), []byte("not a safetensors file"), 0o644)
	if code, _ := post("/v1/load_lora_adapter", `{"lora_name": "broken", "lora_path": "`+bad+`"}`); code != 400 {
		t.Errorf("corrupt adapter: status %d, want 400", code)
	}
	if again, err := ls.complete(t, "pirate-lora", prompt); err != nil || again != pirate {
		t.Errorf("serving disturbed after a refused adapter: %q %v", again, err)
	}
}

// Each response names the adapter version that produced it, so a client can
// tell when a hot swap reached it; the base model's responses name none.
func TestResponsesNameTheAdapterVersion(t *testing.T) {
	dir := t.TempDir()
	ls := newLoRAServer(t, dir, "Once")
	complete := func(model string, stream bool) (header string, fingerprints []string) {
		t.Helper()
		body := `{"model": "` + model + `", "prompt": "Once", "max_tokens": 3, "temperature": 0, "stream": ` + fmt.Sprint(stream) + `}`
		resp, err := ls.ts.Client().Post(ls.ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", model, resp.StatusCode, b)
		}
		docs := []string{string(b)}
		if stream {
			docs = sseEvents(t, b)
		}
		for _, d := range docs {
			var c struct {
				SystemFingerprint string `json:"system_fingerprint"`
			}
			if json.Unmarshal([]byte(d), &c) == nil && c.SystemFingerprint != "" {
				fingerprints = append(fingerprints, c.SystemFingerprint)
			}
		}
		return resp.Header.Get(AdapterVersionHeader), fingerprints
	}
	if h, fps := complete("stories", false); h != "" || len(fps) != 0 {
		t.Errorf("base model response names an adapter version: header %q, fingerprints %q", h, fps)
	}
	v1, fps := complete("pirate-lora", false)
	if v1 == "" || len(fps) != 1 || fps[0] != v1 {
		t.Fatalf("adapter response: header %q, system_fingerprint %q", v1, fps)
	}
	_, fps = complete("pirate-lora", true)
	if len(fps) == 0 || fps[len(fps)-1] != v1 {
		t.Errorf("streamed adapter response: system_fingerprint %q, want %q", fps, v1)
	}

	// A rewritten adapter is served as a new version, and says so.
	m, err := llama.Load(storiesDir, llama.LoadOptions{Backend: cpu.New(1)})
	if err != nil {
		t.Fatal(err)
	}
	saveRandomAdapter(t, m.Model, filepath.Join(dir, "pirate-lora"), 9)
	var v2 string
	waitFor(t, "the rewritten adapter to be served", func() bool {
		v2, _ = complete("pirate-lora", false)
		return v2 != v1
	})
	if v2 == "" {
		t.Error("the new version has no name")
	}
}
