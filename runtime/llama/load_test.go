package llama

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/kernels/ref"
	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/quant"
	"github.com/parrot-llm/parrot/runtime/safetensors"
	"github.com/parrot-llm/parrot/runtime/testmodel"
)

func TestLoadErrors(t *testing.T) {
	src := testmodel.TinyDir(t, false)
	copyDir := func(t *testing.T) string {
		dst := t.TempDir()
		entries, _ := os.ReadDir(src)
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644)
		}
		return dst
	}
	// rewrite replaces the checkpoint with edited tensors.
	rewrite := func(t *testing.T, dir string, edit func(ts []safetensors.Tensor) []safetensors.Tensor) {
		p := filepath.Join(dir, "model.safetensors")
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var ts []safetensors.Tensor
		for _, n := range f.Names() {
			tt, _ := f.Tensor(n)
			tt.Data = append([]byte(nil), tt.Data...)
			ts = append(ts, tt)
		}
		f.Close()
		if err := safetensors.Write(p, edit(ts), map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		want    string
	}{
		{"unsupported architecture", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "config.json")
			data, _ := os.ReadFile(p)
			data = []byte(strings.ReplaceAll(strings.ReplaceAll(string(data), "LlamaForCausalLM", "MistralForCausalLM"), `"llama"`, `"mistral"`))
			os.WriteFile(p, data, 0o644)
		}, "unsupported model_type"},
		{"missing tensor", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				var out []safetensors.Tensor
				for _, tt := range ts {
					if tt.Name != "model.layers.1.mlp.up_proj.weight" {
						out = append(out, tt)
					}
				}
				return out
			})
		}, "missing tensor model.layers.1.mlp.up_proj.weight"},
		{"wrong shape", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == "model.norm.weight" {
						ts[i].Shape = []int{ts[i].Shape[0] / 2, 2}
					}
				}
				return ts
			})
		}, "model.norm.weight: shape"},
		{"wrong dtype", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == "model.norm.weight" {
						ts[i].DType = safetensors.I16
					}
				}
				return ts
			})
		}, "model.norm.weight"},
		{"truncated file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-100)
		}, "model.safetensors"},
		{"corrupt header", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.safetensors")
			data, _ := os.ReadFile(p)
			copy(data[8:], "{{{{")
			os.WriteFile(p, data, 0o644)
		}, "model.safetensors"},
		{"no weights", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.safetensors"))
		}, "safetensors"},
		{"no config", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "config.json"))
		}, "config"},
		{"bos outside the vocabulary", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { m["bos_token_id"] = -5 })
		}, "config.json: bos_token_id -5 is outside the vocabulary"},
		{"negative rms_norm_eps", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { m["rms_norm_eps"] = -1 })
		}, "config.json: rms_norm_eps"},
		{"huge max_position_embeddings", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { m["max_position_embeddings"] = 1 << 62 })
		}, "config.json: max_position_embeddings"},
		{"generation_config eos outside the vocabulary", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "generation_config.json"), func(m map[string]any) { m["eos_token_id"] = 1 << 20 })
		}, "generation_config.json: eos_token_id 1048576 is outside"},
		{"special_tokens_map not an object", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "special_tokens_map.json"), []byte(`"<|begin_of_text|>"`), 0o644)
		}, "special_tokens_map.json: not a JSON object"},
		{"special_tokens_map wrong type", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "special_tokens_map.json"), []byte(`{"eos_token": 128009}`), 0o644)
		}, "special_tokens_map.json: eos_token: want a string"},
		{"special_tokens_map unknown token", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "special_tokens_map.json"), func(m map[string]any) { m["pad_token"] = "<|pad|>" })
		}, `special_tokens_map.json: pad_token: "<|pad|>" is not in the vocabulary`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t)
			tc.corrupt(t, dir)
			_, err := Load(dir, LoadOptions{Backend: ref.New()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// editJSON rewrites the JSON object in path.
func editJSON(t *testing.T, path string, edit func(m map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// --chat-template takes a built-in name, a template file or Jinja source,
// and refuses anything else (a misspelt name used to become the template
// text, so that every prompt rendered as that literal string).
func TestChatTemplateOverride(t *testing.T) {
	dir := testmodel.TinyDir(t, false)
	msgs := []chat.Message{{Role: "user", Content: "Hi"}}
	custom := "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}"
	file := filepath.Join(t.TempDir(), "pirate.jinja")
	if err := os.WriteFile(file, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	own, err := Load(dir, LoadOptions{Backend: ref.New()})
	if err != nil {
		t.Fatal(err)
	}
	ownText, err := own.Template.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ value, want string }{
		{"", ownText},
		{"llama-3.1", ownText}, // the tiny model's own template is the official Llama 3.1 one
		{custom, "[user] Hi"},
		{file, "[user] Hi"},
	} {
		l, err := Load(dir, LoadOptions{Backend: ref.New(), ChatTemplate: tc.value})
		if err != nil {
			t.Errorf("%q: %v", tc.value, err)
			continue
		}
		if got, err := l.Template.Render(msgs, true); err != nil || got != tc.want {
			t.Errorf("%q renders %q (%v), want %q", tc.value, got, err, tc.want)
		}
	}
	for _, value := range []string{"llama3.1", "llama-3", filepath.Join(t.TempDir(), "missing.jinja")} {
		_, err := Load(dir, LoadOptions{Backend: ref.New(), ChatTemplate: value})
		if err == nil || !strings.Contains(err.Error(), "is not a built-in template (llama-3.1), a file, or Jinja source") {
			t.Errorf("%q: got %v", value, err)
		}
	}
}

// A bf16 checkpoint keeps its embedding in bf16, exactly.
func TestBF16EmbeddingStaysBF16(t *testing.T) {
	dir := testmodel.TinyDir(t, false)
	l, err := Load(dir, LoadOptions{Backend: ref.New()})
	if err != nil {
		t.Fatal(err)
	}
	emb, ok := l.Model.Weights.Embed.(*kernels.BF16Matrix)
	if !ok {
		t.Fatalf("embedding loaded as %T, want bf16", l.Model.Weights.Embed)
	}
	set, _ := safetensors.OpenDir(dir)
	defer set.Close()
	raw, _ := set.Tensor("model.embed_tokens.weight")
	want, _ := safetensors.ToFloat32(raw)
	for i, h := range emb.Data {
		if kernels.BF16ToF32(h) != want[i] {
			t.Fatalf("embedding element %d = %v, want %v", i, kernels.BF16ToF32(h), want[i])
		}
	}
}

// --lm-head-4bit: the lm_head, and the tied embedding with it, become the
// NF4 quantization of the bf16 table, the same bits quant.QuantizeNF4 makes
// of it in one piece (the copy is made chunk by chunk).
func TestLMHead4Bit(t *testing.T) {
	const rows, cols = 2*(4<<20)/1024 + 3, 1024 // three chunks
	rng := rand.New(rand.NewPCG(1, 2))
	table := &kernels.BF16Matrix{Rows: rows, Cols: cols, Data: make([]uint16, rows*cols)}
	f := make([]float32, rows*cols)
	for i := range table.Data {
		table.Data[i] = kernels.F32ToBF16(float32(rng.NormFloat64()) * 0.02)
		f[i] = kernels.BF16ToF32(table.Data[i])
	}
	w := &Weights{Embed: table, LMHead: table}
	if err := w.QuantizeLMHeadNF4(); err != nil {
		t.Fatal(err)
	}
	got, ok := w.LMHead.(*kernels.NF4Matrix)
	if !ok || w.Embed != w.LMHead {
		t.Fatalf("lm_head %T, embedding %T: want one NF4 matrix for both", w.LMHead, w.Embed)
	}
	want, err := quant.QuantizeNF4(f, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Packed, want.Packed) || !slices.Equal(got.Absmax, want.Absmax) || got.Rows != rows || got.Cols != cols {
		t.Fatal("chunked NF4 copy differs from quantizing the table in one piece")
	}

	dir := testmodel.TinyDir(t, false)
	if _, err := Load(dir, LoadOptions{Backend: ref.New(), LMHead4Bit: true, LMHead8Bit: true}); err == nil {
		t.Fatal("loaded with both --lm-head-8bit and --lm-head-4bit")
	}
	l, err := Load(dir, LoadOptions{Backend: ref.New(), LMHead4Bit: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Model.Weights.LMHead.(*kernels.NF4Matrix); !ok {
		t.Fatalf("lm_head loaded as %T, want NF4", l.Model.Weights.LMHead)
	}
}

// TestQuantizeUploadedLMHead: an lm_head uploaded as a backend's own kind
// (kernels/cpu's bf16 panels in serve's configuration) quantizes to the
// same 8- and 4-bit copies as the host matrix it was uploaded from.
func TestQuantizeUploadedLMHead(t *testing.T) {
	be := cpu.New(2)
	defer be.Close()
	be.SetInt8Activations(true)
	be.SetInt8Prefill(true)
	rng := rand.New(rand.NewPCG(61, 62))
	host := &kernels.BF16Matrix{Rows: 48, Cols: 128, Data: make([]uint16, 48*128)}
	for i := range host.Data {
		host.Data[i] = kernels.F32ToBF16(float32(rng.NormFloat64()))
	}
	up, err := be.Upload(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("uploaded as %T", up)
	for _, bits := range []int{8, 4} {
		a, b := &Weights{LMHead: host}, &Weights{LMHead: up}
		for _, w := range []*Weights{a, b} {
			var err error
			if bits == 8 {
				err = w.QuantizeLMHead()
			} else {
				err = w.QuantizeLMHeadNF4()
			}
			if err != nil {
				t.Fatalf("%d bits of %T: %v", bits, w.LMHead, err)
			}
		}
		if !reflect.DeepEqual(a.LMHead, b.LMHead) {
			t.Errorf("%d bits: the uploaded lm_head quantizes differently from its host copy", bits)
		}
	}
}
