package testmodel

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/parrot-llm/parrot/internal/pyjson"
)

// Generate writes a model directory for o into dir (created if needed):
// config.json and generation_config.json as transformers writes them for a
// LlamaForCausalLM, model.safetensors, and a synthetic byte-level BPE
// tokenizer in the Llama 3 layout (tokenizer.json, tokenizer_config.json
// with the official Llama 3.1 chat template, special_tokens_map.json).
// Weights are streamed to disk tensor by tensor.
func Generate(dir string, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	files := []struct {
		name        string
		v           any
		ensureASCII bool
	}{
		{"config.json", Config(o), true},
		{"generation_config.json", generationConfig(o), true},
		{"tokenizer.json", tokenizerJSON(o), false},
		{"tokenizer_config.json", tokenizerConfig(o), false},
		{"special_tokens_map.json", specialTokensMap(), false},
	}
	for _, f := range files {
		// json.dumps(indent=2) and a newline, as transformers saves them (maps
		// sorted, as sort_keys=True); tokenizer.json's objects keep their order.
		b, err := pyjson.Marshal(f.v, pyjson.Options{Indent: 2, EnsureASCII: f.ensureASCII})
		if err != nil {
			return fmt.Errorf("testmodel: %s: %w", f.name, err)
		}
		b = append(b, '\n')
		if err := os.WriteFile(filepath.Join(dir, f.name), b, 0o644); err != nil {
			return fmt.Errorf("testmodel: %w", err)
		}
	}
	if err := writeWeights(dir, o); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	return nil
}

// Config is the config.json of the model as transformers writes it for a
// LlamaForCausalLM (configuration_llama.py LlamaConfig), with a bitsandbytes
// quantization_config (utils/quantization_config.py
// BitsAndBytesConfig.to_dict) when o.Quantize.
func Config(o Options) map[string]any {
	cfg := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"attention_bias":          false,
		"attention_dropout":       0.0,
		"bos_token_id":            o.BOS(),
		"eos_token_id":            o.EOS(),
		"head_dim":                o.HeadDim,
		"hidden_act":              "silu",
		"hidden_size":             o.Hidden,
		"initializer_range":       0.02,
		"intermediate_size":       o.Intermediate,
		"max_position_embeddings": o.MaxPos,
		"mlp_bias":                false,
		"model_type":              "llama",
		"num_attention_heads":     o.Heads,
		"num_hidden_layers":       o.Layers,
		"num_key_value_heads":     o.KVHeads,
		"pretraining_tp":          1,
		"rms_norm_eps":            1e-05,
		"rope_scaling":            nil,
		"rope_theta":              o.RopeTheta,
		"tie_word_embeddings":     o.Tied,
		"torch_dtype":             o.DType,
		"use_cache":               true,
		"vocab_size":              o.Vocab,
	}
	if o.Llama3Rope {
		cfg["rope_scaling"] = map[string]any{
			"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
			"original_max_position_embeddings": 8192, "rope_type": "llama3",
		}
	}
	if o.Quantize {
		cfg["quantization_config"] = map[string]any{
			"_load_in_4bit": true, "_load_in_8bit": false,
			"bnb_4bit_compute_dtype": o.DType, "bnb_4bit_quant_storage": "uint8",
			"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true,
			"llm_int8_enable_fp32_cpu_offload": false, "llm_int8_has_fp16_weight": false,
			"llm_int8_skip_modules": nil, "llm_int8_threshold": 6.0,
			"load_in_4bit": true, "load_in_8bit": false, "quant_method": "bitsandbytes",
		}
	}
	return cfg
}

// generationConfig is Llama-3.2-1B-Instruct's generation_config.json with
// this vocabulary's ids.
func generationConfig(o Options) map[string]any {
	return map[string]any{
		"bos_token_id": o.BOS(),
		"do_sample":    true,
		"eos_token_id": o.EOS(),
		"temperature":  0.6,
		"top_p":        0.9,
	}
}

// TinyDir writes a random tiny checkpoint (bf16, or bnb NF4 when
// quantized) to a temporary directory of tb and returns it.
func TinyDir(tb testing.TB, quantized bool) string {
	tb.Helper()
	dir := tb.TempDir()
	o := Tiny()
	o.Quantize = quantized
	if err := Generate(dir, o); err != nil {
		tb.Fatal(err)
	}
	return dir
}
