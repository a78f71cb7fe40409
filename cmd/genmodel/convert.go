package main

// Conversion of a Hugging Face Llama directory (as genmodel writes it, or
// any bnb NF4 / float Llama checkpoint with a byte-level BPE tokenizer) to
// a llama.cpp GGUF of the same weights. What llama.cpp expects follows its
// convert_hf_to_gguf.py (LlamaModel: metadata keys, the Q/K row permutation,
// the llama3 rope_freqs tensor, _set_vocab_gpt2) and src/llama-arch.cpp
// (tensor and key names).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/quant"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// ggufOptions choose the encodings: Type for the seven projections of each
// layer, EmbedType for token_embd (and output, when untied). Norms and
// rope_freqs are always F32, as convert_hf_to_gguf.py stores 1-D tensors.
type ggufOptions struct {
	Type      ggmlType
	EmbedType ggmlType
}

// ggufSummary describes a written file.
type ggufSummary struct {
	Tensors  int
	Bytes    int64 // tensor data
	PerToken int64 // bytes a decode step streams: projections and the output matrix
	Fallback int   // matrices stored as F16 because their rows do not fill whole blocks
}

// fileType is general.file_type (llama.h enum llama_ftype) of a file whose
// projections are t.
func fileType(t ggmlType) uint32 {
	switch t {
	case typeF32:
		return 0 // LLAMA_FTYPE_ALL_F32
	case typeF16:
		return 1 // LLAMA_FTYPE_MOSTLY_F16
	case typeQ4_0:
		return 2 // LLAMA_FTYPE_MOSTLY_Q4_0
	case typeQ8_0:
		return 7 // LLAMA_FTYPE_MOSTLY_Q8_0
	}
	return 0
}

// rowSource yields rows [lo, hi) of a matrix as float32.
type rowSource func(lo, hi int) ([]float32, error)

// converter holds the open checkpoint.
type converter struct {
	cfg *llama.Config
	set *safetensors.Set
}

// source returns the float weights of an HF tensor as the runtime sees
// them: an NF4 weight dequantized exactly as the runtime does
// (quant.DequantizeNF4 of the double-quantized state), a float one widened
// to float32. Its shape is [rows, cols] (a vector is [1, n]).
func (c *converter) source(name string) (rowSource, [2]int, error) {
	if quant.IsBnbQuantized(c.set.Tensor, name) {
		m, err := quant.LoadBnbNF4(c.set.Tensor, name)
		if err != nil {
			return nil, [2]int{}, err
		}
		w, err := quant.DequantizeNF4(m)
		if err != nil {
			return nil, [2]int{}, fmt.Errorf("%s: %w", name, err)
		}
		cols := m.Cols
		return func(lo, hi int) ([]float32, error) { return w[lo*cols : hi*cols], nil }, [2]int{m.Rows, m.Cols}, nil
	}
	t, ok := c.set.Tensor(name)
	if !ok {
		return nil, [2]int{}, fmt.Errorf("no tensor %s", name)
	}
	shape := [2]int{1, t.NumElements()}
	if len(t.Shape) == 2 {
		shape = [2]int{t.Shape[0], t.Shape[1]}
	} else if len(t.Shape) != 1 {
		return nil, [2]int{}, fmt.Errorf("tensor %s: shape %v, want 1 or 2 dimensions", name, t.Shape)
	}
	size := t.DType.Size()
	cols := shape[1]
	// Row windows of the mapping are widened one at a time, so that a
	// 128256-row embedding never exists as float32 in full.
	return func(lo, hi int) ([]float32, error) {
		part := safetensors.Tensor{Name: t.Name, DType: t.DType, Shape: []int{(hi - lo) * cols},
			Data: t.Data[lo*cols*size : hi*cols*size]}
		return safetensors.ToFloat32(part)
	}, shape, nil
}

// permuteRoPE reorders the rows of a Q or K projection [heads·hd, cols]
// from Hugging Face's rotate-half RoPE layout (dimension i pairs with
// i+hd/2) to ggml's interleaved one (2i pairs with 2i+1), as
// convert_hf_to_gguf.py LlamaModel.permute does
// (reshape(heads, 2, hd/2, cols).swapaxes(1, 2)): within each head, row
// half·hd/2 + i moves to 2i + half. Q and K are permuted alike, so the
// attention scores are unchanged.
func permuteRoPE(w []float32, heads, cols int) []float32 {
	rows := len(w) / cols
	hd := rows / heads
	out := make([]float32, len(w))
	for h := range heads {
		for half := range 2 {
			for i := range hd / 2 {
				src := h*hd + half*hd/2 + i
				dst := h*hd + 2*i + half
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}

// shape is an HF weight's [rows, cols] (a vector is [1, n]) without
// reading its data.
func (c *converter) shape(name string) ([2]int, error) {
	var dims []int
	if quant.IsBnbQuantized(c.set.Tensor, name) {
		qs, err := quant.ReadQuantState(c.set.Tensor, name)
		if err != nil {
			return [2]int{}, err
		}
		dims = qs.Shape
	} else if t, ok := c.set.Tensor(name); ok {
		dims = t.Shape
	} else {
		return [2]int{}, fmt.Errorf("no tensor %s", name)
	}
	switch len(dims) {
	case 1:
		return [2]int{1, dims[0]}, nil
	case 2:
		return [2]int{dims[0], dims[1]}, nil
	}
	return [2]int{}, fmt.Errorf("tensor %s: shape %v, want 1 or 2 dimensions", name, dims)
}

// matrix makes the GGUF tensor of an HF weight, read when the file is
// written (one matrix in memory at a time) and encoded in windows of rows.
// A block type whose rows are not whole blocks falls back to F16.
func (c *converter) matrix(ggufName, hfName string, typ ggmlType, ropeHeads int, sum *ggufSummary) (ggufTensor, error) {
	shape, err := c.shape(hfName)
	if err != nil {
		return ggufTensor{}, err
	}
	rows, cols := shape[0], shape[1]
	if _, err := typ.rowBytes(cols); err != nil {
		typ = typeF16
		sum.Fallback++
	}
	rb, err := typ.rowBytes(cols)
	if err != nil {
		return ggufTensor{}, err
	}
	if ropeHeads > 0 && rows%(2*ropeHeads) != 0 {
		return ggufTensor{}, fmt.Errorf("%s: %d rows do not split into %d heads of even size", hfName, rows, ropeHeads)
	}
	return ggufTensor{Name: ggufName, Dims: []uint64{uint64(cols), uint64(rows)}, Type: typ, Size: int64(rb) * int64(rows),
		Write: func(w io.Writer) error {
			src, got, err := c.source(hfName)
			if err != nil {
				return err
			}
			if got != shape {
				return fmt.Errorf("%s: shape %v, header said %v", hfName, got, shape)
			}
			if ropeHeads > 0 {
				all, err := src(0, rows)
				if err != nil {
					return err
				}
				p := permuteRoPE(all, ropeHeads, cols)
				src = func(lo, hi int) ([]float32, error) { return p[lo*cols : hi*cols], nil }
			}
			window := max(1, (1<<20)/cols)
			var buf []byte
			for lo := 0; lo < rows; lo += window {
				hi := min(rows, lo+window)
				x, err := src(lo, hi)
				if err != nil {
					return err
				}
				buf = typ.encodeRow(buf[:0], x)
				if _, err := w.Write(buf); err != nil {
					return err
				}
			}
			return nil
		}}, nil
}

// vector makes an F32 tensor of a 1-D HF weight.
func (c *converter) vector(ggufName, hfName string) (ggufTensor, error) {
	shape, err := c.shape(hfName)
	if err != nil {
		return ggufTensor{}, err
	}
	return floatVector(ggufName, shape[0]*shape[1], func() ([]float32, error) {
		src, _, err := c.source(hfName)
		if err != nil {
			return nil, err
		}
		return src(0, shape[0])
	}), nil
}

func floatVector(name string, n int, get func() ([]float32, error)) ggufTensor {
	return ggufTensor{Name: name, Dims: []uint64{uint64(n)}, Type: typeF32, Size: 4 * int64(n),
		Write: func(w io.Writer) error {
			v, err := get()
			if err != nil {
				return err
			}
			_, err = w.Write(typeF32.encodeRow(nil, v))
			return err
		}}
}

// llama3RopeFactors is rope_freqs.weight [hd/2]: the divisor of each RoPE
// frequency under llama3 scaling, as convert_hf_to_gguf.py
// LlamaModel.generate_extra_tensors computes it in float32 (1 for high
// frequencies, factor for low ones, a smooth blend between); llama.cpp
// divides theta by it (ggml_rope_ext's freq_factors). The original context
// is the config's rope_scaling.original_max_position_embeddings, the value
// transformers uses (convert_hf_to_gguf.py looks for it at the top level
// and defaults to 8192, which Llama 3.x configs agree with).
func llama3RopeFactors(c *llama.Config) []float32 {
	half := c.HeadDim / 2
	factor := float32(c.Rope.Factor)
	lo, hi := float32(c.Rope.LowFreqFactor), float32(c.Rope.HighFreqFactor)
	old := float32(c.Rope.OriginalMaxPosition)
	lowWavelen, highWavelen := old/lo, old/hi
	out := make([]float32, half)
	for j := range out {
		freq := 1 / float32(math.Pow(c.RopeTheta, float64(float32(2*j)/float32(c.HeadDim))))
		wavelen := float32(2*math.Pi) / freq
		switch {
		case wavelen < highWavelen:
			out[j] = 1
		case wavelen > lowWavelen:
			out[j] = factor
		default:
			smooth := (old/wavelen - lo) / (hi - lo)
			out[j] = 1 / (float32((1-smooth)/factor) + smooth)
		}
	}
	return out
}

// convertToGGUF writes the checkpoint in dir as a llama.cpp GGUF at out.
func convertToGGUF(dir, out string, o ggufOptions) (ggufSummary, error) {
	var sum ggufSummary
	cfg, _, err := llama.LoadConfig(dir)
	if err != nil {
		return sum, err
	}
	switch cfg.Rope.Type {
	case "", "default", "llama3":
	default:
		return sum, fmt.Errorf("rope_scaling %q is not supported by this converter", cfg.Rope.Type)
	}
	vocab, err := readVocab(dir, cfg)
	if err != nil {
		return sum, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return sum, err
	}
	defer set.Close()
	c := &converter{cfg: cfg, set: set}

	var ts []ggufTensor
	add := func(t ggufTensor, err error) error {
		if err == nil {
			ts = append(ts, t)
		}
		return err
	}
	// llama.cpp names (src/llama-arch.cpp LLM_TENSOR_NAMES for LLM_ARCH_LLAMA).
	if err := add(c.matrix("token_embd.weight", "model.embed_tokens.weight", o.EmbedType, 0, &sum)); err != nil {
		return sum, err
	}
	if cfg.Rope.Type == "llama3" {
		f := llama3RopeFactors(cfg)
		ts = append(ts, floatVector("rope_freqs.weight", len(f), func() ([]float32, error) { return f, nil }))
	}
	for l := range cfg.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		b := fmt.Sprintf("blk.%d.", l)
		for _, m := range []struct {
			gguf, hf string
			heads    int // Q and K: permuted for ggml's RoPE
		}{
			{"attn_q", "self_attn.q_proj", cfg.Heads}, {"attn_k", "self_attn.k_proj", cfg.KVHeads},
			{"attn_v", "self_attn.v_proj", 0}, {"attn_output", "self_attn.o_proj", 0},
			{"ffn_gate", "mlp.gate_proj", 0}, {"ffn_up", "mlp.up_proj", 0}, {"ffn_down", "mlp.down_proj", 0},
		} {
			if err := add(c.matrix(b+m.gguf+".weight", p+m.hf+".weight", o.Type, m.heads, &sum)); err != nil {
				return sum, err
			}
		}
		if err := add(c.vector(b+"attn_norm.weight", p+"input_layernorm.weight")); err != nil {
			return sum, err
		}
		if err := add(c.vector(b+"ffn_norm.weight", p+"post_attention_layernorm.weight")); err != nil {
			return sum, err
		}
	}
	if err := add(c.vector("output_norm.weight", "model.norm.weight")); err != nil {
		return sum, err
	}
	if !cfg.TiedEmbed {
		// Untied: output.weight. Tied: llama.cpp reuses token_embd.
		if err := add(c.matrix("output.weight", "lm_head.weight", o.EmbedType, 0, &sum)); err != nil {
			return sum, err
		}
	}
	for _, t := range ts {
		sum.Bytes += t.Size
		switch {
		case len(t.Dims) != 2:
		case t.Name == "output.weight", t.Name == "token_embd.weight" && cfg.TiedEmbed:
			sum.PerToken += t.Size
		case t.Name != "token_embd.weight":
			sum.PerToken += t.Size
		}
	}
	sum.Tensors = len(ts)

	kvs := []ggufKV{
		{"general.architecture", "llama"},
		{"general.name", filepath.Base(filepath.Clean(dir))},
		{"general.file_type", fileType(o.Type)},
		{"general.quantization_version", uint32(2)}, // GGML_QNT_VERSION
		{"general.alignment", uint32(ggufAlignment)},
		{"llama.vocab_size", uint32(cfg.Vocab)},
		{"llama.context_length", uint32(cfg.MaxPos)},
		{"llama.embedding_length", uint32(cfg.Hidden)},
		{"llama.block_count", uint32(cfg.Layers)},
		{"llama.feed_forward_length", uint32(cfg.Intermediate)},
		{"llama.attention.head_count", uint32(cfg.Heads)},
		{"llama.attention.head_count_kv", uint32(cfg.KVHeads)},
		{"llama.attention.key_length", uint32(cfg.HeadDim)},
		{"llama.attention.value_length", uint32(cfg.HeadDim)},
		{"llama.attention.layer_norm_rms_epsilon", cfg.NormEps},
		{"llama.rope.dimension_count", uint32(cfg.HeadDim)},
		{"llama.rope.freq_base", float32(cfg.RopeTheta)},
	}
	kvs = append(kvs, vocab...)
	if err := writeGGUF(out, kvs, ts); err != nil {
		return sum, err
	}
	return sum, nil
}

// llama3Split is the pre-tokenizer regex of Llama 3's tokenizer.json
// (meta-llama/Llama-3.2-1B-Instruct), which llama.cpp knows as "llama-bpe"
// (src/llama-vocab.cpp LLAMA_VOCAB_PRE_TYPE_LLAMA3).
const llama3Split = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// Token types (llama.h enum llama_token_type, convert_hf_to_gguf.py's
// get_vocab_base: special added tokens are CONTROL, others USER_DEFINED,
// ids without a token UNUSED "[PADn]").
const (
	tokNormal      int32 = 1
	tokControl     int32 = 3
	tokUserDefined int32 = 4
	tokUnused      int32 = 5
)

// readVocab turns tokenizer.json (a byte-level BPE with the Llama 3 split)
// and tokenizer_config.json into llama.cpp's "gpt2" tokenizer metadata, as
// convert_hf_to_gguf.py _set_vocab_gpt2 writes it: tokens in id order (the
// byte-level strings of the vocabulary, unchanged), their types, the merges
// as "a b", the special ids and the chat template.
func readVocab(dir string, cfg *llama.Config) ([]ggufKV, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	var tj struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
		PreTokenizer any `json:"pre_tokenizer"`
		Model        struct {
			Type   string            `json:"type"`
			Vocab  map[string]int    `json:"vocab"`
			Merges []json.RawMessage `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &tj); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer.json: model type %q, want BPE", tj.Model.Type)
	}
	if !hasRegex(tj.PreTokenizer, llama3Split) {
		return nil, errors.New("tokenizer.json: pre-tokenizer is not Llama 3's split, which is the only one this converter maps (to llama-bpe)")
	}
	n := cfg.Vocab
	tokens := make([]string, n)
	types := make([]int32, n)
	ids := map[string]int{}
	set := func(id int, s string, typ int32) error {
		if id < 0 || id >= n {
			return fmt.Errorf("tokenizer.json: token %q has id %d outside the vocabulary of %d", s, id, n)
		}
		tokens[id], types[id], ids[s] = s, typ, id
		return nil
	}
	for s, id := range tj.Model.Vocab {
		if err := set(id, s, tokNormal); err != nil {
			return nil, err
		}
	}
	for _, a := range tj.AddedTokens {
		typ := tokUserDefined
		if a.Special {
			typ = tokControl
		}
		if err := set(a.ID, a.Content, typ); err != nil {
			return nil, err
		}
	}
	for i := range tokens {
		if types[i] == 0 {
			tokens[i], types[i] = fmt.Sprintf("[PAD%d]", i), tokUnused
		}
	}
	merges := make([]string, len(tj.Model.Merges))
	for i, m := range tj.Model.Merges {
		// "a b" (tokenizers < 0.20) or ["a", "b"].
		var s string
		if json.Unmarshal(m, &s) == nil {
			merges[i] = s
			continue
		}
		var pair []string
		if err := json.Unmarshal(m, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("tokenizer.json: merge %d is neither \"a b\" nor [a, b]", i)
		}
		merges[i] = pair[0] + " " + pair[1]
	}

	bos, eos := int(cfg.BOS), -1
	if len(cfg.EOS) > 0 {
		eos = int(cfg.EOS[0])
	}
	var template string
	if raw, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json")); err == nil {
		var tc map[string]any
		if err := json.Unmarshal(raw, &tc); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
		lookup := func(key string, dst *int) {
			s, _ := tc[key].(string)
			if m, ok := tc[key].(map[string]any); ok {
				s, _ = m["content"].(string)
			}
			if id, ok := ids[s]; ok && s != "" {
				*dst = id
			}
		}
		lookup("bos_token", &bos)
		lookup("eos_token", &eos)
		template, _ = tc["chat_template"].(string)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if bos < 0 || eos < 0 {
		return nil, errors.New("tokenizer: no bos or eos token id")
	}
	kvs := []ggufKV{
		{"tokenizer.ggml.model", "gpt2"},
		{"tokenizer.ggml.pre", "llama-bpe"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.merges", merges},
		{"tokenizer.ggml.bos_token_id", uint32(bos)},
		{"tokenizer.ggml.eos_token_id", uint32(eos)},
		{"tokenizer.ggml.add_bos_token", true},
	}
	if template != "" {
		kvs = append(kvs, ggufKV{"tokenizer.chat_template", template})
	}
	return kvs, nil
}

// hasRegex reports whether a decoded tokenizer.json value holds
// {"Regex": want} anywhere.
func hasRegex(v any, want string) bool {
	switch v := v.(type) {
	case map[string]any:
		if s, ok := v["Regex"].(string); ok && s == want {
			return true
		}
		for _, x := range v {
			if hasRegex(x, want) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if hasRegex(x, want) {
				return true
			}
		}
	}
	return false
}
