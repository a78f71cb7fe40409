package llama

import (
	"errors"
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
	AttnNorm kernels.Buf // [Hidden]
	MLPNorm  kernels.Buf // [Hidden]
	Q        *Linear     // [Heads*HeadDim, Hidden]
	K, V     *Linear     // [KVHeads*HeadDim, Hidden]
	O        *Linear     // [Hidden, Heads*HeadDim]
	Gate, Up *Linear     // [Intermediate, Hidden]
	Down     *Linear     // [Hidden, Intermediate]
}

// Projections lists the layer's linears in PEFT target-module order.
func (l *Layer) Projections() []*Linear {
	return []*Linear{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down}
}

// Weights are a model's parameters: host memory as loaded, the backend's
// memory once a Model binds them (NewModel uploads each one).
type Weights struct {
	Embed  kernels.Matrix // [Vocab, Hidden]: bf16 as the checkpoint stores it, else f32
	Layers []Layer
	Norm   kernels.Buf    // [Hidden]
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
	if w.Embed, err = tableTensor(set, "model.embed_tokens.weight", c.Vocab, c.Hidden); err != nil {
		return nil, err
	}
	// Every tensor is copied out of the mapping; evicting the pages read so
	// far after each step keeps the load's peak near the weights' own size
	// (the file and its copy were both resident before: 2.07 GB against
	// 1.06 GB at ready for the 1B shape).
	set.Evict()
	if w.Norm, err = normTensor(set, "model.norm.weight", c.Hidden); err != nil {
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
		if l.AttnNorm, err = normTensor(set, p+"input_layernorm.weight", c.Hidden); err != nil {
			return nil, err
		}
		if l.MLPNorm, err = normTensor(set, p+"post_attention_layernorm.weight", c.Hidden); err != nil {
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
		set.Evict()
	}
	if c.TiedEmbed {
		w.LMHead = w.Embed
	} else {
		if w.LMHead, err = tableTensor(set, "lm_head.weight", c.Vocab, c.Hidden); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// tableTensor reads the embedding or lm_head [rows, cols]: a bf16 tensor
// stays bf16 (as bitsandbytes leaves it; half the memory and bandwidth of
// f32, and exact), other float dtypes become f32.
func tableTensor(set *safetensors.Set, name string, rows, cols int) (kernels.Matrix, error) {
	if t, ok := set.Tensor(name); ok && t.DType == safetensors.BF16 {
		if len(t.Shape) != 2 || t.Shape[0] != rows || t.Shape[1] != cols {
			return nil, fmt.Errorf("tensor %s: shape %v, want [%d %d]", name, t.Shape, rows, cols)
		}
		data := make([]uint16, rows*cols)
		for i := range data {
			data[i] = uint16(t.Data[2*i]) | uint16(t.Data[2*i+1])<<8
		}
		return &kernels.BF16Matrix{Rows: rows, Cols: cols, Data: data}, nil
	}
	data, err := floatTensor(set, name, rows, cols)
	if err != nil {
		return nil, err
	}
	return &kernels.F32Matrix{Rows: rows, Cols: cols, Data: data}, nil
}

// QuantizeLMHead replaces the lm_head by an 8-bit copy (Q8, blocks of 32):
// a quarter of f32's bytes per decode step, at a small cost in precision.
// A tied embedding keeps its own precision for token lookup.
func (w *Weights) QuantizeLMHead() error {
	var q *kernels.Q8Matrix
	var err error
	switch m := w.LMHead.(type) {
	case *kernels.F32Matrix:
		q, err = kernels.QuantizeQ8(m.Data, m.Rows, m.Cols)
	case *kernels.BF16Matrix:
		q, err = kernels.QuantizeQ8BF16(m.Data, m.Rows, m.Cols)
	case *kernels.Q8Matrix:
		return nil
	case kernels.HostRows: // an uploaded copy: read back a chunk of rows at a time
		q, err = quantizeQ8Rows(m)
	default:
		return fmt.Errorf("lm_head of kind %T cannot be quantized to 8 bits", w.LMHead)
	}
	if err != nil {
		return fmt.Errorf("lm_head: %w", err)
	}
	w.LMHead = q
	return nil
}

// quantizeQ8Rows is kernels.QuantizeQ8 of m, a chunk of rows at a time
// (its blocks do not straddle rows: Cols is a multiple of 32).
func quantizeQ8Rows(m kernels.HostRows) (*kernels.Q8Matrix, error) {
	rows, cols := m.Shape()
	chunk := max(1, (4<<20)/cols)
	q := &kernels.Q8Matrix{Rows: rows, Cols: cols}
	buf := make([]float32, min(chunk, rows)*cols)
	for r0 := 0; r0 < rows; r0 += chunk {
		r1 := min(r0+chunk, rows)
		f := buf[:(r1-r0)*cols]
		for r := r0; r < r1; r++ {
			m.DecodeRow(r, f[(r-r0)*cols:(r-r0+1)*cols])
		}
		part, err := kernels.QuantizeQ8(f, r1-r0, cols)
		if err != nil {
			return nil, err
		}
		q.Q = append(q.Q, part.Q...)
		q.Scale = append(q.Scale, part.Scale...)
	}
	return q, nil
}

// QuantizeLMHeadNF4 replaces the lm_head by a 4-bit copy (NF4, blocks of
// 64, as bitsandbytes' quantize_4bit makes it): a quarter of bf16's bytes
// per decode step, as llama.cpp's pure Q4_0 files store their output matrix.
// A tied embedding table is replaced by the same copy (Embed reads NF4 rows),
// so the bf16 table's memory is freed too. Logits move more than with
// QuantizeLMHead's 8 bits.
func (w *Weights) QuantizeLMHeadNF4() error {
	tied := w.LMHead == w.Embed
	rows, cols := w.LMHead.Shape()
	var row func(r int, dst []float32)
	switch m := w.LMHead.(type) {
	case *kernels.F32Matrix:
		row = func(r int, dst []float32) { copy(dst, m.Data[r*cols:(r+1)*cols]) }
	case *kernels.BF16Matrix:
		row = func(r int, dst []float32) {
			for c, h := range m.Data[r*cols : (r+1)*cols] {
				dst[c] = kernels.BF16ToF32(h)
			}
		}
	case *kernels.NF4Matrix:
		return nil
	case kernels.HostRows: // an uploaded copy
		row = m.DecodeRow
	default:
		return fmt.Errorf("lm_head of kind %T cannot be quantized to 4 bits", w.LMHead)
	}
	// Rows of whole blocks quantize chunk by chunk (a float32 copy of a
	// 128k-token vocabulary would be a gigabyte); others all at once.
	chunk := rows
	if cols%kernels.NF4BlockSize == 0 {
		chunk = max(1, (4<<20)/cols)
	}
	q := &kernels.NF4Matrix{Rows: rows, Cols: cols, Code: kernels.NF4Code,
		Packed: make([]byte, 0, (rows*cols+1)/2), Absmax: make([]float32, 0, (rows*cols+kernels.NF4BlockSize-1)/kernels.NF4BlockSize)}
	buf := make([]float32, min(chunk, rows)*cols)
	for r0 := 0; r0 < rows; r0 += chunk {
		r1 := min(r0+chunk, rows)
		f := buf[:(r1-r0)*cols]
		for r := r0; r < r1; r++ {
			row(r, f[(r-r0)*cols:(r-r0+1)*cols])
		}
		part, err := quant.QuantizeNF4(f, r1-r0, cols)
		if err != nil {
			return fmt.Errorf("lm_head: %w", err)
		}
		q.Packed = append(q.Packed, part.Packed...)
		q.Absmax = append(q.Absmax, part.Absmax...)
	}
	w.LMHead = q
	if tied {
		w.Embed = q
	}
	return nil
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

// normTensor reads a norm weight into host memory.
func normTensor(set *safetensors.Set, name string, n int) (kernels.Buf, error) {
	v, err := floatTensor(set, name, n)
	return kernels.HostBuf(v), err
}

// upload checks every weight against the backend once (ops cannot return
// errors) and moves it into the backend's memory.
func (w *Weights) upload(be kernels.Backend) error {
	tied := w.LMHead == w.Embed
	var err error
	if w.Embed, err = uploadMatrix(be, w.Embed); err != nil {
		return fmt.Errorf("embedding: %w", err)
	}
	if tied {
		w.LMHead = w.Embed
	} else if w.LMHead, err = uploadMatrix(be, w.LMHead); err != nil {
		return fmt.Errorf("lm_head: %w", err)
	}
	if w.Norm, err = uploadVector(be, w.Norm); err != nil {
		return fmt.Errorf("model.norm: %w", err)
	}
	for i := range w.Layers {
		l := &w.Layers[i]
		if l.AttnNorm, err = uploadVector(be, l.AttnNorm); err != nil {
			return fmt.Errorf("layer %d input_layernorm: %w", i, err)
		}
		if l.MLPNorm, err = uploadVector(be, l.MLPNorm); err != nil {
			return fmt.Errorf("layer %d post_attention_layernorm: %w", i, err)
		}
		for _, lin := range l.Projections() {
			if lin.W, err = uploadMatrix(be, lin.W); err != nil {
				return fmt.Errorf("%s: %w", lin.Name, err)
			}
		}
	}
	return nil
}

func uploadMatrix(be kernels.Backend, m kernels.Matrix) (kernels.Matrix, error) {
	if err := kernels.CheckMatrix(be, m); err != nil {
		return nil, err
	}
	return kernels.UploadOwned(be, m) // the weights keep only what it returns
}

// uploadVector copies a host vector into backend memory; one already there
// (no host data: a device buffer) stays as it is.
func uploadVector(be kernels.Backend, v kernels.Buf) (kernels.Buf, error) {
	host := v.Host()
	if host == nil {
		if v.Len() == 0 {
			return v, errors.New("missing")
		}
		return v, nil
	}
	b, err := be.Alloc(len(host))
	if err != nil {
		return kernels.Buf{}, err
	}
	be.Write(b, host)
	return b, nil
}
