package llama

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Config is the architecture of a Llama-family model, read from a Hugging
// Face config.json (LlamaForCausalLM).
type Config struct {
	Hidden       int     // hidden_size
	Intermediate int     // intermediate_size (SwiGLU width)
	Layers       int     // num_hidden_layers
	Heads        int     // num_attention_heads
	KVHeads      int     // num_key_value_heads
	HeadDim      int     // head_dim (defaults to Hidden/Heads)
	Vocab        int     // vocab_size
	MaxPos       int     // max_position_embeddings
	NormEps      float32 // rms_norm_eps
	RopeTheta    float64 // rope_theta
	Rope         RopeScaling
	TiedEmbed    bool    // tie_word_embeddings
	BOS          int32   // bos_token_id (-1 if absent)
	EOS          []int32 // eos_token_id (int or list), union with generation_config's
	Pad          int32   // pad_token_id (-1 if absent)
	DType        string  // torch_dtype / dtype
	Quantization *QuantizationConfig
}

// RopeScaling is the rope_scaling block; Type "" means none.
type RopeScaling struct {
	Type                string  // "", "default", "linear", "llama3"
	Factor              float64 // linear, llama3
	LowFreqFactor       float64 // llama3
	HighFreqFactor      float64 // llama3
	OriginalMaxPosition float64 // llama3
}

// QuantizationConfig is the part of config.json's quantization_config we use.
type QuantizationConfig struct {
	QuantMethod   string `json:"quant_method"`
	LoadIn4Bit    bool   `json:"load_in_4bit"`
	LoadIn8Bit    bool   `json:"load_in_8bit"`
	QuantType     string `json:"bnb_4bit_quant_type"`
	DoubleQuant   bool   `json:"bnb_4bit_use_double_quant"`
	ComputeDType  string `json:"bnb_4bit_compute_dtype"`
	SkipModules   any    `json:"llm_int8_skip_modules"`
	QuantStorage  string `json:"bnb_4bit_quant_storage"`
	HasFP16Weight bool   `json:"llm_int8_has_fp16_weight"`
}

// rawConfig mirrors config.json; pointer fields tell "absent" from zero.
type rawConfig struct {
	Architectures    []string            `json:"architectures"`
	ModelType        string              `json:"model_type"`
	Hidden           *int                `json:"hidden_size"`
	Intermediate     *int                `json:"intermediate_size"`
	Layers           *int                `json:"num_hidden_layers"`
	Heads            *int                `json:"num_attention_heads"`
	KVHeads          *int                `json:"num_key_value_heads"`
	HeadDim          *int                `json:"head_dim"`
	Vocab            *int                `json:"vocab_size"`
	MaxPos           *int                `json:"max_position_embeddings"`
	NormEps          *float64            `json:"rms_norm_eps"`
	RopeTheta        *float64            `json:"rope_theta"`
	RopeScaling      map[string]any      `json:"rope_scaling"`
	RopeParameters   map[string]any      `json:"rope_parameters"` // transformers >= 5
	Tied             *bool               `json:"tie_word_embeddings"`
	BOS              json.RawMessage     `json:"bos_token_id"`
	EOS              json.RawMessage     `json:"eos_token_id"`
	Pad              json.RawMessage     `json:"pad_token_id"`
	TorchDType       string              `json:"torch_dtype"`
	DType            string              `json:"dtype"`
	HiddenAct        string              `json:"hidden_act"`
	AttentionBias    bool                `json:"attention_bias"`
	MLPBias          bool                `json:"mlp_bias"`
	PretrainingTP    int                 `json:"pretraining_tp"`
	QuantizationConf *QuantizationConfig `json:"quantization_config"`
}

// Upper bounds of config.json's sizes. They lie far above any released
// Llama-family model (Llama 3.1 405B: hidden_size 16384, intermediate_size
// 53248, 126 layers, 128 heads; vocabularies up to ~256k tokens; Llama 4
// Scout is trained for 10M positions, under 2^24), and keep every product
// of shapes the loader and the KV pool compute (vocab × hidden,
// heads × head_dim × hidden, times layers and 4 bytes) below 2^56, so that
// shape arithmetic cannot overflow a 64-bit int.
const (
	maxHidden       = 1 << 17
	maxIntermediate = 1 << 20
	maxLayers       = 1 << 12
	maxHeads        = 1 << 12 // also head_dim
	maxVocab        = 1 << 24
	maxPositions    = 1 << 24
)

// ParseConfig parses and validates a config.json.
func ParseConfig(data []byte) (*Config, error) {
	var r rawConfig
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, jsonError("config.json", data, err)
	}
	if r.ModelType != "" && r.ModelType != "llama" {
		return nil, fmt.Errorf("config.json: unsupported model_type %q (only llama)", r.ModelType)
	}
	if len(r.Architectures) > 0 && !slices.Contains(r.Architectures, "LlamaForCausalLM") {
		return nil, fmt.Errorf("config.json: unsupported architecture %v (only LlamaForCausalLM)", r.Architectures)
	}
	if r.ModelType == "" && len(r.Architectures) == 0 {
		return nil, errors.New("config.json: neither model_type nor architectures is set")
	}
	if r.HiddenAct != "" && r.HiddenAct != "silu" {
		return nil, fmt.Errorf("config.json: unsupported hidden_act %q (only silu)", r.HiddenAct)
	}
	if r.AttentionBias || r.MLPBias {
		return nil, errors.New("config.json: attention_bias/mlp_bias are not supported")
	}
	if r.PretrainingTP > 1 {
		return nil, fmt.Errorf("config.json: pretraining_tp %d is not supported", r.PretrainingTP)
	}
	need := func(name string, v *int, limit int) (int, error) {
		if v == nil {
			return 0, fmt.Errorf("config.json: missing %s", name)
		}
		if *v <= 0 {
			return 0, fmt.Errorf("config.json: %s must be positive, got %d", name, *v)
		}
		if *v > limit {
			return 0, fmt.Errorf("config.json: %s %d is larger than the supported %d", name, *v, limit)
		}
		return *v, nil
	}
	c := &Config{BOS: -1, Pad: -1, NormEps: 1e-6, RopeTheta: 10000, MaxPos: 2048}
	var err error
	if c.Hidden, err = need("hidden_size", r.Hidden, maxHidden); err != nil {
		return nil, err
	}
	if c.Intermediate, err = need("intermediate_size", r.Intermediate, maxIntermediate); err != nil {
		return nil, err
	}
	if c.Layers, err = need("num_hidden_layers", r.Layers, maxLayers); err != nil {
		return nil, err
	}
	if c.Heads, err = need("num_attention_heads", r.Heads, maxHeads); err != nil {
		return nil, err
	}
	if c.Vocab, err = need("vocab_size", r.Vocab, maxVocab); err != nil {
		return nil, err
	}
	c.KVHeads = c.Heads
	if r.KVHeads != nil {
		if c.KVHeads, err = need("num_key_value_heads", r.KVHeads, maxHeads); err != nil {
			return nil, err
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("config.json: num_attention_heads %d is not a multiple of num_key_value_heads %d", c.Heads, c.KVHeads)
	}
	if r.HeadDim != nil {
		if c.HeadDim, err = need("head_dim", r.HeadDim, maxHeads); err != nil {
			return nil, err
		}
	} else {
		if c.Hidden%c.Heads != 0 {
			return nil, fmt.Errorf("config.json: hidden_size %d not divisible by num_attention_heads %d and no head_dim", c.Hidden, c.Heads)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("config.json: head_dim %d must be even for RoPE", c.HeadDim)
	}
	if r.MaxPos != nil {
		if c.MaxPos, err = need("max_position_embeddings", r.MaxPos, maxPositions); err != nil {
			return nil, err
		}
	}
	if r.NormEps != nil {
		// In float32, as the model uses it: 1e-50 would become 0.
		if eps := float32(*r.NormEps); !(eps > 0 && eps < 1) {
			return nil, fmt.Errorf("config.json: rms_norm_eps must lie in (0, 1) as a float32, got %v", *r.NormEps)
		}
		c.NormEps = float32(*r.NormEps)
	}
	if r.RopeTheta != nil {
		c.RopeTheta = *r.RopeTheta
	}
	rope := r.RopeScaling
	if rope == nil && r.RopeParameters != nil {
		rope = r.RopeParameters
		if v, ok := rope["rope_theta"]; ok {
			th, ok := v.(float64)
			if !ok {
				return nil, fmt.Errorf("config.json: rope_parameters.rope_theta must be a number, got %v", v)
			}
			c.RopeTheta = th
		}
	}
	if c.Rope, err = parseRopeScaling(rope); err != nil {
		return nil, err
	}
	if !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0) {
		return nil, fmt.Errorf("config.json: rope_theta must be positive and finite, got %v", c.RopeTheta)
	}
	if r.Tied != nil {
		c.TiedEmbed = *r.Tied
	} else {
		c.TiedEmbed = true // PretrainedConfig default
	}
	if c.BOS, err = parseSingleID(r.BOS, "bos_token_id"); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if c.Pad, err = parseSingleID(r.Pad, "pad_token_id"); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if c.EOS, err = parseIDList(r.EOS, "eos_token_id"); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	if err := checkIDs("config.json", c.Vocab, c.BOS, c.Pad, c.EOS); err != nil {
		return nil, err
	}
	c.DType = r.TorchDType
	if c.DType == "" {
		c.DType = r.DType
	}
	c.Quantization = r.QuantizationConf
	return c, nil
}

func parseRopeScaling(m map[string]any) (RopeScaling, error) {
	var rs RopeScaling
	if m == nil {
		return rs, nil
	}
	typ, _ := m["rope_type"].(string)
	if typ == "" {
		typ, _ = m["type"].(string) // legacy alias
	}
	num := func(key string) (float64, error) {
		v, ok := m[key].(float64)
		if !ok {
			return 0, fmt.Errorf("config.json: rope_scaling type %q needs numeric %q", typ, key)
		}
		if !(v > 0) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("config.json: rope_scaling %s must be positive and finite, got %v", key, v)
		}
		return v, nil
	}
	var err error
	switch typ {
	case "", "default":
		return rs, nil
	case "linear":
		rs.Type = typ
		if rs.Factor, err = num("factor"); err != nil {
			return rs, err
		}
	case "llama3":
		rs.Type = typ
		for _, f := range []struct {
			key string
			dst *float64
		}{{"factor", &rs.Factor}, {"low_freq_factor", &rs.LowFreqFactor}, {"high_freq_factor", &rs.HighFreqFactor}, {"original_max_position_embeddings", &rs.OriginalMaxPosition}} {
			if *f.dst, err = num(f.key); err != nil {
				return rs, err
			}
		}
		if rs.HighFreqFactor <= rs.LowFreqFactor {
			return rs, errors.New("config.json: rope_scaling high_freq_factor must exceed low_freq_factor")
		}
	default:
		return rs, fmt.Errorf("config.json: unsupported rope_scaling type %q (supported: default, linear, llama3)", typ)
	}
	return rs, nil
}

func parseSingleID(raw json.RawMessage, name string) (int32, error) {
	ids, err := parseIDList(raw, name)
	if err != nil {
		return -1, err
	}
	if len(ids) == 0 {
		return -1, nil
	}
	return ids[0], nil
}

// checkIDs checks that the special token ids of file (-1 or nil: absent)
// name tokens of a vocabulary of vocab.
func checkIDs(file string, vocab int, bos, pad int32, eos []int32) error {
	in := func(id int32) bool { return id >= 0 && int(id) < vocab }
	if bos != -1 && !in(bos) {
		return fmt.Errorf("%s: bos_token_id %d is outside the vocabulary [0, %d)", file, bos, vocab)
	}
	if pad != -1 && !in(pad) {
		return fmt.Errorf("%s: pad_token_id %d is outside the vocabulary [0, %d)", file, pad, vocab)
	}
	for _, id := range eos {
		if !in(id) {
			return fmt.Errorf("%s: eos_token_id %d is outside the vocabulary [0, %d)", file, id, vocab)
		}
	}
	return nil
}

// jsonError describes a JSON decoding error of file, with the line of a
// syntax error (Python's json.dump writes NaN and Infinity, which are not
// JSON).
func jsonError(file string, data []byte, err error) error {
	var syn *json.SyntaxError
	if !errors.As(err, &syn) || syn.Offset <= 0 || syn.Offset > int64(len(data)) {
		return fmt.Errorf("%s: %w", file, err)
	}
	before := data[:syn.Offset]
	line := bytes.Count(before, []byte("\n")) + 1
	start := bytes.LastIndexByte(before, '\n') + 1
	end := bytes.IndexByte(data[start:], '\n')
	if end < 0 {
		end = len(data) - start
	}
	text := string(bytes.TrimSpace(data[start : start+min(end, 120)]))
	return fmt.Errorf("%s: line %d: %q: %w", file, line, text, err)
}

// parseIDList accepts null, an int, or a list of ints.
func parseIDList(raw json.RawMessage, name string) ([]int32, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int32
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int32{one}, nil
	}
	var many []int32
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("%s must be an integer or a list of integers", name)
	}
	return many, nil
}

// GenerationConfig is the part of generation_config.json we use as defaults.
type GenerationConfig struct {
	BOS         int32
	EOS         []int32
	Pad         int32
	Temperature *float32
	TopP        *float32
	TopK        *int
	DoSample    *bool
}

// ParseGenerationConfig parses generation_config.json.
func ParseGenerationConfig(data []byte) (*GenerationConfig, error) {
	var r struct {
		BOS         json.RawMessage `json:"bos_token_id"`
		EOS         json.RawMessage `json:"eos_token_id"`
		Pad         json.RawMessage `json:"pad_token_id"`
		Temperature *float32        `json:"temperature"`
		TopP        *float32        `json:"top_p"`
		TopK        *int            `json:"top_k"`
		DoSample    *bool           `json:"do_sample"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, jsonError("generation_config.json", data, err)
	}
	g := &GenerationConfig{Temperature: r.Temperature, TopP: r.TopP, TopK: r.TopK, DoSample: r.DoSample}
	var err error
	if g.BOS, err = parseSingleID(r.BOS, "bos_token_id"); err != nil {
		return nil, fmt.Errorf("generation_config.json: %w", err)
	}
	if g.Pad, err = parseSingleID(r.Pad, "pad_token_id"); err != nil {
		return nil, fmt.Errorf("generation_config.json: %w", err)
	}
	if g.EOS, err = parseIDList(r.EOS, "eos_token_id"); err != nil {
		return nil, fmt.Errorf("generation_config.json: %w", err)
	}
	// The ranges transformers' logits warpers accept (TemperatureLogitsWarper,
	// TopPLogitsWarper, TopKLogitsWarper); temperature 0 means greedy here.
	if t := r.Temperature; t != nil && !(*t >= 0 && *t <= math.MaxFloat32) {
		return nil, fmt.Errorf("generation_config.json: temperature must be a non-negative number, got %v", *t)
	}
	if p := r.TopP; p != nil && !(*p >= 0 && *p <= 1) {
		return nil, fmt.Errorf("generation_config.json: top_p must lie in [0, 1], got %v", *p)
	}
	if k := r.TopK; k != nil && *k < 0 {
		return nil, fmt.Errorf("generation_config.json: top_k must be non-negative, got %d", *k)
	}
	return g, nil
}

// LoadConfig reads dir/config.json and, if present, dir/generation_config.json
// (whose EOS ids are merged in: Llama 3 stops on all of 128001, 128008, 128009).
func LoadConfig(dir string) (*Config, *GenerationConfig, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("reading model config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, nil, err
	}
	var gen *GenerationConfig
	if data, err := os.ReadFile(filepath.Join(dir, "generation_config.json")); err == nil {
		if gen, err = ParseGenerationConfig(data); err != nil {
			return nil, nil, err
		}
		for _, id := range gen.EOS {
			if !slices.Contains(cfg.EOS, id) {
				cfg.EOS = append(cfg.EOS, id)
			}
		}
		if cfg.BOS < 0 {
			cfg.BOS = gen.BOS
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("reading generation config: %w", err)
	}
	if gen != nil {
		if err := checkIDs("generation_config.json", cfg.Vocab, gen.BOS, gen.Pad, gen.EOS); err != nil {
			return nil, nil, err
		}
	}
	return cfg, gen, nil
}

// InvFreq returns the RoPE inverse frequencies [HeadDim/2], computed in
// float32 the way transformers does (including llama3 scaling), so positions
// rotate exactly as in the reference implementation.
func (c *Config) InvFreq() []float32 {
	half := c.HeadDim / 2
	inv := make([]float32, half)
	for j := range inv {
		// transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in float32.
		exp := float32(2*j) / float32(c.HeadDim)
		inv[j] = 1 / float32(math.Pow(c.RopeTheta, float64(exp)))
	}
	switch c.Rope.Type {
	case "linear":
		for j := range inv {
			inv[j] /= float32(c.Rope.Factor)
		}
	case "llama3":
		factor := float32(c.Rope.Factor)
		lo, hi := float32(c.Rope.LowFreqFactor), float32(c.Rope.HighFreqFactor)
		old := float32(c.Rope.OriginalMaxPosition)
		lowWavelen, highWavelen := old/lo, old/hi
		for j, f := range inv {
			wavelen := float32(2*math.Pi) / f
			scaled := f
			if wavelen > lowWavelen {
				scaled = f / factor
			}
			if !(wavelen < highWavelen) && !(wavelen > lowWavelen) {
				smooth := (old/wavelen - lo) / (hi - lo)
				// Explicit conversions round each product, so that no
				// architecture fuses them into an FMA (torch does not).
				scaled = float32((1-smooth)*scaled/factor) + float32(smooth*scaled)
			}
			inv[j] = scaled
		}
	}
	return inv
}
