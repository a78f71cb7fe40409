package testmodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/runtime/quant"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// wantShapes is the Llama layout of Tiny, written out by hand.
func wantShapes(tied bool) map[string][]int {
	m := map[string][]int{"model.embed_tokens.weight": {1024, 64}, "model.norm.weight": {64}}
	for l := 0; l < 2; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		m[p+"input_layernorm.weight"] = []int{64}
		m[p+"post_attention_layernorm.weight"] = []int{64}
		m[p+"self_attn.q_proj.weight"] = []int{64, 64}
		m[p+"self_attn.k_proj.weight"] = []int{32, 64}
		m[p+"self_attn.v_proj.weight"] = []int{32, 64}
		m[p+"self_attn.o_proj.weight"] = []int{64, 64}
		m[p+"mlp.gate_proj.weight"] = []int{128, 64}
		m[p+"mlp.up_proj.weight"] = []int{128, 64}
		m[p+"mlp.down_proj.weight"] = []int{64, 128}
	}
	if !tied {
		m["lm_head.weight"] = []int{1024, 64}
	}
	return m
}

func isProj(name string) bool { return strings.Contains(name, "_proj.") }

func TestGenerateFloat(t *testing.T) {
	for _, c := range []struct {
		dtype string
		tied  bool
	}{{"bfloat16", true}, {"float32", false}} {
		o := Tiny()
		o.DType, o.Tied = c.dtype, c.tied
		dir := t.TempDir()
		if err := Generate(dir, o); err != nil {
			t.Fatal(err)
		}
		s, err := safetensors.OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := wantShapes(c.tied)
		if got := s.Names(); len(got) != len(want) || len(got) != 9*2+2+map[bool]int{true: 0, false: 1}[c.tied] {
			t.Fatalf("%s: %d tensors, want %d", c.dtype, len(got), len(want))
		}
		for name, shape := range want {
			tn, ok := s.Tensor(name)
			if !ok {
				t.Fatalf("missing %s", name)
			}
			wantDT := map[string]safetensors.DType{"bfloat16": safetensors.BF16, "float32": safetensors.F32}[c.dtype]
			if tn.DType != wantDT || !reflect.DeepEqual(tn.Shape, shape) {
				t.Errorf("%s: %s %v, want %s %v", name, tn.DType, tn.Shape, wantDT, shape)
			}
			// Stored values are FloatTensor's, rounded to the dtype.
			got, err := safetensors.ToFloat32(tn)
			if err != nil {
				t.Fatal(err)
			}
			_, ref, err := FloatTensor(o, name)
			if err != nil {
				t.Fatal(err)
			}
			for i := range ref {
				w := ref[i]
				if c.dtype == "bfloat16" {
					w = safetensors.BF16ToFloat32(safetensors.Float32ToBF16(w))
				}
				if got[i] != w {
					t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], w)
				}
			}
			checkStats(t, name, ref)
		}
		s.Close()
	}
}

// checkStats: weights ~ N(0, 0.02), norms ~ 1 + N(0, 0.02).
func checkStats(t *testing.T, name string, v []float32) {
	t.Helper()
	var sum, sq float64
	for _, x := range v {
		sum += float64(x)
	}
	mean := sum / float64(len(v))
	for _, x := range v {
		sq += (float64(x) - mean) * (float64(x) - mean)
	}
	std := math.Sqrt(sq / float64(len(v)))
	wantMean := 0.0
	if strings.HasSuffix(name, "norm.weight") {
		wantMean = 1
	}
	// Standard error of the mean is 0.02/sqrt(n); allow 5 of them (n >= 64).
	if math.Abs(mean-wantMean) > 5*0.02/math.Sqrt(float64(len(v))) || math.Abs(std-0.02) > 0.006 {
		t.Errorf("%s: mean %.4f std %.4f, want %.1f and 0.02", name, mean, std, wantMean)
	}
}

func TestGenerateQuantized(t *testing.T) {
	o := Tiny()
	o.Quantize, o.Tied = true, false
	dir := t.TempDir()
	if err := Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	s, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := wantShapes(false)
	// 14 projections × 6 bnb tensors + 7 bf16 tensors.
	if n := len(s.Names()); n != 14*6+7 {
		t.Errorf("%d tensors, want %d", n, 14*6+7)
	}
	if got := quant.BnbWeightNames(s.Names()); len(got) != 14 {
		t.Errorf("%d quantized weights, want 14: %v", len(got), got)
	}
	for name, shape := range want {
		_, ref, err := FloatTensor(o, name)
		if err != nil {
			t.Fatal(err)
		}
		if !isProj(name) {
			tn, ok := s.Tensor(name)
			if !ok || tn.DType != safetensors.BF16 || !reflect.DeepEqual(tn.Shape, shape) {
				t.Errorf("%s: %v %s %v, want BF16 %v", name, ok, tn.DType, tn.Shape, shape)
			}
			continue
		}
		if !quant.IsBnbQuantized(s.Tensor, name) {
			t.Fatalf("%s is not quantized", name)
		}
		qs, err := quant.ReadQuantState(s.Tensor, name)
		if err != nil {
			t.Fatal(err)
		}
		if qs.QuantType != "nf4" || qs.DType != "bfloat16" || !reflect.DeepEqual(qs.Shape, shape) || !qs.Nested {
			t.Errorf("%s: quant state %+v", name, qs)
		}
		m, err := quant.LoadBnbNF4(s.Tensor, name)
		if err != nil {
			t.Fatal(err)
		}
		// The packed codes are exactly QuantizeNF4 of the bf16-rounded floats.
		w := make([]float32, len(ref))
		for i, x := range ref {
			w[i] = safetensors.BF16ToFloat32(safetensors.Float32ToBF16(x))
		}
		exact, err := quant.QuantizeNF4(w, shape[0], shape[1])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Packed, exact.Packed) {
			t.Errorf("%s: packed codes differ from QuantizeNF4", name)
		}
		// Dequantized values are within NF4 error of the float weights: half
		// the largest gap between NF4 codes (0.1385) of the block's absmax,
		// plus 2% for the 8-bit double-quantized absmax.
		dq, err := quant.DequantizeNF4(m)
		if err != nil {
			t.Fatal(err)
		}
		for i := range dq {
			a := exact.Absmax[i/64]
			if d := math.Abs(float64(dq[i] - ref[i])); d > float64(a)*(0.1385+0.02)+1e-3*float64(a) {
				t.Fatalf("%s[%d]: dequantized %v, float %v (block absmax %v)", name, i, dq[i], ref[i], a)
			}
		}
	}
}

// config.json and generation_config.json byte for byte as transformers
// writes them (testdata/gen_tiny_configs.py), and the tokenizer configs by
// digest; config.json parsed back gives the options.
func TestConfigFiles(t *testing.T) {
	o := Tiny()
	o.Quantize = true
	dir := t.TempDir()
	if err := Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for got, want := range map[string]string{"config.json": "tiny_quantized_config.json", "generation_config.json": "tiny_generation_config.json"} {
		if g, w := read(filepath.Join(dir, got)), read(filepath.Join("testdata", want)); !bytes.Equal(g, w) {
			t.Errorf("%s differs from testdata/%s:\n%s", got, want, g)
		}
	}
	var digests map[string]string
	if err := json.Unmarshal(read("testdata/tiny_digests.json"), &digests); err != nil {
		t.Fatal(err)
	}
	for f, want := range digests {
		sum := sha256.Sum256(read(filepath.Join(dir, f)))
		if hex.EncodeToString(sum[:]) != want {
			t.Errorf("%s differs from the reference", f)
		}
	}

	var cfg struct {
		Hidden       int     `json:"hidden_size"`
		Layers       int     `json:"num_hidden_layers"`
		Heads        int     `json:"num_attention_heads"`
		KVHeads      int     `json:"num_key_value_heads"`
		HeadDim      int     `json:"head_dim"`
		Intermediate int     `json:"intermediate_size"`
		Vocab        int     `json:"vocab_size"`
		MaxPos       int     `json:"max_position_embeddings"`
		RopeTheta    float64 `json:"rope_theta"`
		RopeScaling  *struct {
			RopeType string `json:"rope_type"`
		} `json:"rope_scaling"`
		Tied         bool   `json:"tie_word_embeddings"`
		DType        string `json:"torch_dtype"`
		BOS          int    `json:"bos_token_id"`
		EOS          []int  `json:"eos_token_id"`
		Quantization *struct {
			QuantType string `json:"bnb_4bit_quant_type"`
			Double    bool   `json:"bnb_4bit_use_double_quant"`
		} `json:"quantization_config"`
	}
	if err := json.Unmarshal(read(filepath.Join(dir, "config.json")), &cfg); err != nil {
		t.Fatal(err)
	}
	back := Options{Hidden: cfg.Hidden, Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim,
		Intermediate: cfg.Intermediate, Vocab: cfg.Vocab, MaxPos: cfg.MaxPos, RopeTheta: cfg.RopeTheta,
		Llama3Rope: cfg.RopeScaling != nil && cfg.RopeScaling.RopeType == "llama3", Tied: cfg.Tied, DType: cfg.DType,
		Quantize: cfg.Quantization != nil && cfg.Quantization.QuantType == "nf4" && cfg.Quantization.Double, Seed: o.Seed}
	if back != o {
		t.Errorf("config.json gives %+v, want %+v", back, o)
	}
	if cfg.BOS != 768 || !reflect.DeepEqual(cfg.EOS, []int{769, 776, 777}) {
		t.Errorf("bos %d eos %v", cfg.BOS, cfg.EOS)
	}
}

func TestLlama32Ids(t *testing.T) {
	o := Llama32_1B()
	if o.BOS() != 128000 || !reflect.DeepEqual(o.EOS(), []int{128001, 128008, 128009}) {
		t.Errorf("bos %d eos %v", o.BOS(), o.EOS())
	}
	st := SpecialTokens()
	for id, name := range map[int]string{128000: "<|begin_of_text|>", 128004: "<|finetune_right_pad_id|>", 128005: "<|reserved_special_token_2|>",
		128006: "<|start_header_id|>", 128009: "<|eot_id|>", 128010: "<|python_tag|>", 128011: "<|reserved_special_token_3|>",
		128255: "<|reserved_special_token_247|>"} {
		if st[id-128000] != name {
			t.Errorf("id %d: %s, want %s", id, st[id-128000], name)
		}
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
}

func TestValidate(t *testing.T) {
	for _, f := range []func(*Options){
		func(o *Options) { o.Heads = 3 },
		func(o *Options) { o.HeadDim = 15 },
		func(o *Options) { o.Vocab = 511 },
		func(o *Options) { o.DType = "float16" },
		func(o *Options) { o.Layers = 0 },
		func(o *Options) { o.RopeTheta = 0 },
	} {
		o := Tiny()
		f(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
		if err := Generate(t.TempDir(), o); err == nil {
			t.Errorf("Generate accepted %+v", o)
		}
	}
}
