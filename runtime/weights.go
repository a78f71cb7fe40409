package runtime

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/quant"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// Quantization modes for the seven projections of each layer.
const (
	QuantNF4  = "nf4"  // 4-bit NF4, bitsandbytes layout (quantized on load if the checkpoint is float)
	QuantNone = "none" // float32 weights, for reference checks (a bnb checkpoint is dequantized)
)

// Linear is one projection y = W·x. It is the single place where a weight
// multiplies activations, so LoRA hooks in here and nowhere else.
type Linear struct {
	Name    string         // module path, e.g. "model.layers.0.self_attn.q_proj"
	W       kernels.Matrix // [Out, In]
	In, Out int
	// LoRA holds the resident adapters' A/B for this projection (nil until
	// the model enables adapters); which slot a token uses is per batch.
	LoRA *kernels.LoRAStack
}

// Layer holds one decoder block's weights.
type Layer struct {
	AttnNorm []float32 // [Hidden]
	MLPNorm  []float32 // [Hidden]
	Q        *Linear   // [Heads*HeadDim, Hidden]
	K, V     *Linear   // [KVHeads*HeadDim, Hidden]
	O        *Linear   // [Hidden, Heads*HeadDim]
	Gate, Up *Linear   // [Intermediate, Hidden]
	Down     *Linear   // [Hidden, Intermediate]
}

// Projections lists the layer's linears in PEFT target-module order.
func (l *Layer) Projections() []*Linear {
	return []*Linear{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down}
}

// Weights are a model's parameters.
type Weights struct {
	Embed  *kernels.F32Matrix // [Vocab, Hidden]
	Layers []Layer
	Norm   []float32      // [Hidden]
	LMHead kernels.Matrix // [Vocab, Hidden]; the embedding when tied
}

// ProjectionNames are the seven Llama projections with their parent module.
var ProjectionNames = []string{
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
}

// loadWeights reads every tensor of a Llama checkpoint with shape checks.
func loadWeights(set *safetensors.Set, c *Config, quantize string) (*Weights, error) {
	if quantize != QuantNF4 && quantize != QuantNone {
		return nil, fmt.Errorf("unknown quantization %q (want %s or %s)", quantize, QuantNF4, QuantNone)
	}
	w := &Weights{Layers: make([]Layer, c.Layers)}
	var err error
	embed, err := floatTensor(set, "model.embed_tokens.weight", c.Vocab, c.Hidden)
	if err != nil {
		return nil, err
	}
	w.Embed = &kernels.F32Matrix{Rows: c.Vocab, Cols: c.Hidden, Data: embed}
	if w.Norm, err = floatTensor(set, "model.norm.weight", c.Hidden); err != nil {
		return nil, err
	}
	qDim, kvDim := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	shapes := map[string][2]int{
		"self_attn.q_proj": {qDim, c.Hidden}, "self_attn.k_proj": {kvDim, c.Hidden},
		"self_attn.v_proj": {kvDim, c.Hidden}, "self_attn.o_proj": {c.Hidden, qDim},
		"mlp.gate_proj": {c.Intermediate, c.Hidden}, "mlp.up_proj": {c.Intermediate, c.Hidden},
		"mlp.down_proj": {c.Hidden, c.Intermediate},
	}
	for i := range w.Layers {
		l := &w.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		if l.AttnNorm, err = floatTensor(set, p+"input_layernorm.weight", c.Hidden); err != nil {
			return nil, err
		}
		if l.MLPNorm, err = floatTensor(set, p+"post_attention_layernorm.weight", c.Hidden); err != nil {
			return nil, err
		}
		dst := []**Linear{&l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down}
		for j, name := range ProjectionNames {
			s := shapes[name]
			lin, err := loadLinear(set, p+name, s[0], s[1], quantize)
			if err != nil {
				return nil, err
			}
			*dst[j] = lin
		}
	}
	if c.TiedEmbed {
		w.LMHead = w.Embed
	} else {
		head, err := floatTensor(set, "lm_head.weight", c.Vocab, c.Hidden)
		if err != nil {
			return nil, err
		}
		w.LMHead = &kernels.F32Matrix{Rows: c.Vocab, Cols: c.Hidden, Data: head}
	}
	return w, nil
}

// loadLinear reads a projection: bnb 4-bit tensors directly, or a float
// weight quantized to NF4 (or kept float) per the requested mode.
func loadLinear(set *safetensors.Set, module string, out, in int, quantize string) (*Linear, error) {
	name := module + ".weight"
	lin := &Linear{Name: module, In: in, Out: out}
	if quant.IsBnbQuantized(set.Tensor, name) {
		m, err := quant.LoadBnbNF4(set.Tensor, name)
		if err != nil {
			return nil, err
		}
		if m.Rows != out || m.Cols != in {
			return nil, fmt.Errorf("tensor %s: quantized shape [%d,%d], want [%d,%d]", name, m.Rows, m.Cols, out, in)
		}
		if quantize == QuantNone {
			dq, err := quant.DequantizeNF4(m)
			if err != nil {
				return nil, fmt.Errorf("tensor %s: %w", name, err)
			}
			lin.W = &kernels.F32Matrix{Rows: out, Cols: in, Data: dq}
		} else {
			lin.W = m
		}
		return lin, nil
	}
	data, err := floatTensor(set, name, out, in)
	if err != nil {
		return nil, err
	}
	if quantize == QuantNF4 {
		m, err := quant.QuantizeNF4(data, out, in)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		lin.W = m
	} else {
		lin.W = &kernels.F32Matrix{Rows: out, Cols: in, Data: data}
	}
	return lin, nil
}

// floatTensor reads a float tensor (f32/f16/bf16) as float32 and checks its shape.
func floatTensor(set *safetensors.Set, name string, shape ...int) ([]float32, error) {
	t, ok := set.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("checkpoint is missing tensor %s", name)
	}
	if len(t.Shape) != len(shape) {
		return nil, fmt.Errorf("tensor %s: shape %v, want %v", name, t.Shape, shape)
	}
	for i := range shape {
		if t.Shape[i] != shape[i] {
			return nil, fmt.Errorf("tensor %s: shape %v, want %v", name, t.Shape, shape)
		}
	}
	data, err := safetensors.ToFloat32(t)
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", name, err)
	}
	return data, nil
}

// check asks the backend to accept every weight once, at load, since ops
// cannot return errors.
func (w *Weights) check(be kernels.Backend) error {
	if err := kernels.CheckMatrix(be, w.Embed); err != nil {
		return fmt.Errorf("embedding: %w", err)
	}
	if err := kernels.CheckMatrix(be, w.LMHead); err != nil {
		return fmt.Errorf("lm_head: %w", err)
	}
	for i := range w.Layers {
		for _, l := range w.Layers[i].Projections() {
			if err := kernels.CheckMatrix(be, l.W); err != nil {
				return fmt.Errorf("%s: %w", l.Name, err)
			}
		}
	}
	return nil
}
