// Package testmodel generates random-weight Llama checkpoints in the Hugging
// Face layout (config.json, generation_config.json, model.safetensors,
// tokenizer.json, tokenizer_config.json, special_tokens_map.json), in float32,
// bfloat16 or bitsandbytes NF4 with double quantization, for tests and
// benchmarks that need a model of a given shape but no trained weights.
package testmodel

import (
	"errors"
	"fmt"
)

// Options describe the model to generate.
type Options struct {
	Hidden       int     // hidden_size
	Layers       int     // num_hidden_layers
	Heads        int     // num_attention_heads
	KVHeads      int     // num_key_value_heads
	HeadDim      int     // head_dim
	Intermediate int     // intermediate_size (SwiGLU)
	Vocab        int     // vocab_size, >= 512; the top 256 ids are the Llama 3 special tokens
	MaxPos       int     // max_position_embeddings
	RopeTheta    float64 // rope_theta
	Llama3Rope   bool    // rope_scaling = Llama 3.2's llama3 scaling (factor 32, low 1, high 4, original 8192)
	Tied         bool    // tie_word_embeddings: no lm_head.weight
	DType        string  // "float32" or "bfloat16": torch_dtype, and the storage of every non-quantized tensor
	Quantize     bool    // the 7 projections of each layer as bitsandbytes NF4 with double quantization
	Seed         uint64  // weights are a pure function of (Seed, tensor name)
}

// Tiny is a 2-layer Llama 3-style model for unit tests: hidden 64, 4 query
// and 2 key/value heads of 16, SwiGLU 128, vocabulary 1024 (768 byte-level
// BPE tokens, special tokens at 768..1023), bfloat16, tied embeddings.
func Tiny() Options {
	return Options{
		Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, Intermediate: 128,
		Vocab: 1024, MaxPos: 2048, RopeTheta: 500000, Llama3Rope: true, Tied: true,
		DType: "bfloat16", Seed: 1,
	}
}

// Llama32_1B has the shape of Llama-3.2-1B (meta-llama/Llama-3.2-1B-Instruct
// config.json): hidden 2048, 16 layers, 32/8 heads of 64, SwiGLU 8192,
// vocabulary 128256, llama3 RoPE with theta 500000, tied embeddings,
// bfloat16.
func Llama32_1B() Options {
	return Options{
		Hidden: 2048, Layers: 16, Heads: 32, KVHeads: 8, HeadDim: 64, Intermediate: 8192,
		Vocab: 128256, MaxPos: 131072, RopeTheta: 500000, Llama3Rope: true, Tied: true,
		DType: "bfloat16", Seed: 1,
	}
}

// NumSpecialTokens is the number of Llama 3 special tokens at the top of the vocabulary.
const NumSpecialTokens = 256

// BOS is the id of <|begin_of_text|> (128000 for the Llama 3 vocabulary).
func (o Options) BOS() int { return o.Vocab - NumSpecialTokens }

// EOS are the ids of <|end_of_text|>, <|eom_id|> and <|eot_id|>
// (128001, 128008, 128009 for the Llama 3 vocabulary).
func (o Options) EOS() []int { return []int{o.BOS() + 1, o.BOS() + 8, o.BOS() + 9} }

// Validate checks that the options describe a model that can be built.
func (o Options) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden", o.Hidden}, {"layers", o.Layers}, {"heads", o.Heads}, {"kv-heads", o.KVHeads},
		{"head-dim", o.HeadDim}, {"intermediate", o.Intermediate}, {"max-pos", o.MaxPos}} {
		if f.v <= 0 {
			return fmt.Errorf("testmodel: %s must be positive, got %d", f.name, f.v)
		}
	}
	switch {
	case o.Heads%o.KVHeads != 0:
		return fmt.Errorf("testmodel: heads (%d) must be a multiple of kv-heads (%d)", o.Heads, o.KVHeads)
	case o.HeadDim%2 != 0:
		return fmt.Errorf("testmodel: head-dim must be even for RoPE, got %d", o.HeadDim)
	case o.Vocab < 2*NumSpecialTokens:
		return fmt.Errorf("testmodel: vocab must be at least %d (256 byte tokens + 256 special tokens), got %d", 2*NumSpecialTokens, o.Vocab)
	case o.DType != "float32" && o.DType != "bfloat16":
		return fmt.Errorf("testmodel: dtype must be float32 or bfloat16, got %q", o.DType)
	case !(o.RopeTheta > 0):
		return errors.New("testmodel: rope-theta must be positive")
	}
	return nil
}
