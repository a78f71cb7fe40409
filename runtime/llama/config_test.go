package llama

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const llama32Config = `{"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
 "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
 "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
 "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
 "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
 "rms_norm_eps": 1e-05,
 "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                  "original_max_position_embeddings": 8192, "rope_type": "llama3"},
 "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": true,
 "vocab_size": 128256}`

// The golden file was produced by transformers' float32 computation
// (testdata/check_misc.py, from shared/spec/data).
func TestLlama3InvFreqMatchesTransformers(t *testing.T) {
	cfg, err := ParseConfig([]byte(llama32Config))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/llama32_1b_inv_freq_f32.json")
	if err != nil {
		t.Fatal(err)
	}
	var want []float64
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	got := cfg.InvFreq()
	if len(got) != len(want) {
		t.Fatalf("len %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != float32(want[i]) {
			t.Errorf("inv_freq[%d] = %.10g, want %.10g", i, got[i], float32(want[i]))
		}
	}
}

func TestParseLlama32Config(t *testing.T) {
	c, err := ParseConfig([]byte(llama32Config))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hidden != 2048 || c.Layers != 16 || c.Heads != 32 || c.KVHeads != 8 || c.HeadDim != 64 ||
		c.Intermediate != 8192 || c.Vocab != 128256 || !c.TiedEmbed || c.BOS != 128000 ||
		len(c.EOS) != 3 || c.Rope.Type != "llama3" || c.Rope.Factor != 32 || c.NormEps != 1e-5 {
		t.Fatalf("parsed %+v", c)
	}
}

func TestLoadStoriesConfig(t *testing.T) {
	c, _, err := LoadConfig("../../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	if c.Hidden != 64 || c.Layers != 5 || c.Heads != 8 || c.KVHeads != 4 || c.HeadDim != 8 ||
		c.Intermediate != 172 || c.Vocab != 512 || c.Rope.Type != "" || c.BOS != 1 || len(c.EOS) != 1 || c.EOS[0] != 2 {
		t.Fatalf("parsed %+v", c)
	}
	inv := c.InvFreq()
	if inv[0] != 1 || inv[1] != 0.1 {
		t.Fatalf("inv_freq %v", inv)
	}
}

func TestConfigErrors(t *testing.T) {
	base := map[string]any{}
	if err := json.Unmarshal([]byte(llama32Config), &base); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"arch", func(m map[string]any) {
			m["architectures"] = []string{"MistralForCausalLM"}
			m["model_type"] = "mistral"
		}, "unsupported model_type"},
		{"missing hidden", func(m map[string]any) { delete(m, "hidden_size") }, "missing hidden_size"},
		{"gqa", func(m map[string]any) { m["num_key_value_heads"] = 5 }, "multiple of"},
		{"rope", func(m map[string]any) { m["rope_scaling"] = map[string]any{"type": "yarn", "factor": 4.0} }, "unsupported rope_scaling"},
		{"rope keys", func(m map[string]any) { m["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": 4.0} }, "low_freq_factor"},
		{"negative", func(m map[string]any) { m["num_hidden_layers"] = -1 }, "must be positive"},
		{"eos type", func(m map[string]any) { m["eos_token_id"] = "x" }, "config.json: eos_token_id must be an integer"},
		{"act", func(m map[string]any) { m["hidden_act"] = "gelu" }, "hidden_act"},

		// Sizes: positive, and bounded so that shape products cannot overflow.
		{"max pos huge", func(m map[string]any) { m["max_position_embeddings"] = 1 << 62 }, "max_position_embeddings 4611686018427387904 is larger than the supported 16777216"},
		{"max pos zero", func(m map[string]any) { m["max_position_embeddings"] = 0 }, "max_position_embeddings must be positive"},
		{"max pos overflow", func(m map[string]any) { m["max_position_embeddings"] = 1e30 }, "max_position_embeddings"},
		{"vocab zero", func(m map[string]any) { m["vocab_size"] = 0 }, "vocab_size must be positive"},
		{"vocab huge", func(m map[string]any) { m["vocab_size"] = 1 << 25 }, "vocab_size 33554432 is larger"},
		{"hidden huge", func(m map[string]any) { m["hidden_size"] = 1 << 40 }, "hidden_size 1099511627776 is larger"},
		{"intermediate huge", func(m map[string]any) { m["intermediate_size"] = 1 << 31 }, "intermediate_size 2147483648 is larger"},
		{"intermediate zero", func(m map[string]any) { m["intermediate_size"] = 0 }, "intermediate_size must be positive"},
		{"layers huge", func(m map[string]any) { m["num_hidden_layers"] = 1 << 20 }, "num_hidden_layers 1048576 is larger"},
		{"heads huge", func(m map[string]any) { m["num_attention_heads"] = 1 << 13 }, "num_attention_heads 8192 is larger"},
		{"kv heads zero", func(m map[string]any) { m["num_key_value_heads"] = 0 }, "num_key_value_heads must be positive"},
		{"head dim huge", func(m map[string]any) { m["head_dim"] = 1 << 30 }, "head_dim 1073741824 is larger"},
		{"head dim odd", func(m map[string]any) { m["head_dim"] = 63 }, "head_dim 63 must be even"},
		{"heads do not divide hidden", func(m map[string]any) {
			delete(m, "head_dim")
			m["num_attention_heads"] = 24
		}, "hidden_size 2048 not divisible by num_attention_heads 24"},

		// Numbers of the math: positive and finite.
		{"eps negative", func(m map[string]any) { m["rms_norm_eps"] = -1 }, "rms_norm_eps must lie in (0, 1)"},
		{"eps zero", func(m map[string]any) { m["rms_norm_eps"] = 0 }, "rms_norm_eps must lie in (0, 1)"},
		{"eps float32 zero", func(m map[string]any) { m["rms_norm_eps"] = 1e-50 }, "rms_norm_eps must lie in (0, 1)"},
		{"eps one", func(m map[string]any) { m["rms_norm_eps"] = 1 }, "rms_norm_eps must lie in (0, 1)"},
		{"eps string", func(m map[string]any) { m["rms_norm_eps"] = "NaN" }, "rms_norm_eps"},
		{"theta zero", func(m map[string]any) { m["rope_theta"] = 0 }, "rope_theta must be positive"},
		{"theta negative", func(m map[string]any) { m["rope_theta"] = -10000 }, "rope_theta must be positive"},
		{"rope_parameters theta type", func(m map[string]any) {
			m["rope_parameters"] = map[string]any{"rope_type": "default", "rope_theta": "x"}
			delete(m, "rope_scaling")
		}, "rope_parameters.rope_theta must be a number"},
		{"rope factor zero", func(m map[string]any) {
			m["rope_scaling"] = map[string]any{"rope_type": "linear", "factor": 0.0}
		}, "rope_scaling factor must be positive"},
		{"rope low freq zero", func(m map[string]any) {
			m["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 0.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
		}, "rope_scaling low_freq_factor must be positive"},
		{"rope original max negative", func(m map[string]any) {
			m["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": -1}
		}, "rope_scaling original_max_position_embeddings must be positive"},

		// Special token ids name tokens of the vocabulary.
		{"bos negative", func(m map[string]any) { m["bos_token_id"] = -5 }, "config.json: bos_token_id -5 is outside the vocabulary [0, 128256)"},
		{"bos past vocab", func(m map[string]any) { m["bos_token_id"] = 128256 }, "bos_token_id 128256 is outside"},
		{"bos too big for int32", func(m map[string]any) { m["bos_token_id"] = 1 << 40 }, "bos_token_id must be an integer"},
		{"pad negative", func(m map[string]any) { m["pad_token_id"] = -5 }, "config.json: pad_token_id -5 is outside"},
		{"pad past vocab", func(m map[string]any) { m["pad_token_id"] = 200000 }, "pad_token_id 200000 is outside"},
		{"eos negative", func(m map[string]any) { m["eos_token_id"] = -5 }, "config.json: eos_token_id -5 is outside"},
		{"eos list past vocab", func(m map[string]any) { m["eos_token_id"] = []int{128001, 128256} }, "eos_token_id 128256 is outside"},
	}
	for _, tc := range cases {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		tc.mutate(m)
		data, _ := json.Marshal(m)
		_, err := ParseConfig(data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want error containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParseConfig([]byte("{not json")); err == nil {
		t.Error("malformed JSON accepted")
	}
	// Python's json.dump writes NaN, which is not JSON: the error shows the line.
	nan := strings.Replace(llama32Config, `"rms_norm_eps": 1e-05`, `"rms_norm_eps": NaN`, 1)
	if _, err := ParseConfig([]byte(nan)); err == nil || !strings.Contains(err.Error(), `config.json: line 6: "\"rms_norm_eps\": NaN,"`) {
		t.Errorf("NaN: got %v", err)
	}
}

// generation_config.json's ids and sampling defaults are checked too.
func TestGenerationConfigErrors(t *testing.T) {
	cases := []struct{ gen, want string }{
		{`{"eos_token_id": [2, 600]}`, "generation_config.json: eos_token_id 600 is outside the vocabulary [0, 512)"},
		{`{"bos_token_id": -5}`, "generation_config.json: bos_token_id -5 is outside"},
		{`{"pad_token_id": 512}`, "generation_config.json: pad_token_id 512 is outside"},
		{`{"eos_token_id": "x"}`, "generation_config.json: eos_token_id must be an integer"},
		{`{"temperature": -1}`, "generation_config.json: temperature must be a non-negative number"},
		{`{"top_p": 1.5}`, "generation_config.json: top_p must lie in [0, 1]"},
		{`{"top_k": -1}`, "generation_config.json: top_k must be non-negative"},
		{`{"temperature": Infinity}`, "generation_config.json: line 1"},
	}
	cfg, err := os.ReadFile("../../testdata/stories260K/config.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
		os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(tc.gen), 0o644)
		if _, _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.gen, err, tc.want)
		}
	}
}

func TestRopeParametersTransformers5(t *testing.T) {
	m := map[string]any{}
	json.Unmarshal([]byte(llama32Config), &m)
	rs := m["rope_scaling"].(map[string]any)
	rs["rope_theta"] = 500000.0
	delete(m, "rope_scaling")
	delete(m, "rope_theta")
	m["rope_parameters"] = rs
	data, _ := json.Marshal(m)
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if c.RopeTheta != 500000 || c.Rope.Type != "llama3" {
		t.Fatalf("got theta %v rope %+v", c.RopeTheta, c.Rope)
	}
}
