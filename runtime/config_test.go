package runtime

import (
	"encoding/json"
	"os"
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
	c, _, err := LoadConfig("../testdata/stories260K")
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
		{"eos type", func(m map[string]any) { m["eos_token_id"] = "x" }, "eos_token_id"},
		{"act", func(m map[string]any) { m["hidden_act"] = "gelu" }, "hidden_act"},
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
