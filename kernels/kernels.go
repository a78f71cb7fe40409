// Package kernels is the backend seam: a small, eager set of tensor ops that
// the model code calls without knowing which backend runs them.
//
// Activations are plain row-major float32 slices. Weights are frozen matrices
// in PyTorch nn.Linear layout W[Rows=out, Cols=in]: float32, bitsandbytes-
// compatible NF4 (SPEC.md §1), bfloat16 (embeddings as checkpoints store
// them) or 8-bit Q8 (an optional lm_head).
//
// kernels/ref is the naive specification of every op; kernels/cpu is the fast
// implementation and is tested op by op against ref.
package kernels

import "fmt"

// Matrix is a frozen weight W[Rows, Cols] (out × in).
type Matrix interface {
	Shape() (rows, cols int)
}

// F32Matrix is a dense float32 weight, row-major.
type F32Matrix struct {
	Rows, Cols int
	Data       []float32 // [Rows*Cols]
}

func (m *F32Matrix) Shape() (int, int) { return m.Rows, m.Cols }

// NF4BlockSize is the number of consecutive elements (in the row-major
// flattening of W) that share one absmax scale.
const NF4BlockSize = 64

// NF4Matrix is a 4-bit weight in the bitsandbytes layout: element i of the
// row-major flattening of W is code[nibble_i] * Absmax[i/64], where element 2j
// is the high nibble of Packed[j] and element 2j+1 the low nibble.
// Blocks may straddle rows when Cols is not a multiple of 64.
type NF4Matrix struct {
	Rows, Cols int
	Packed     []byte      // [(Rows*Cols+1)/2]
	Absmax     []float32   // [ceil(Rows*Cols/64)], already dequantized when the checkpoint used double quantization
	Code       [16]float32 // the 4-bit code book (NF4 table, or a checkpoint's stored quant_map)
}

func (m *NF4Matrix) Shape() (int, int) { return m.Rows, m.Cols }

// Validate checks that the buffers match the shape.
func (m *NF4Matrix) Validate() error {
	n := m.Rows * m.Cols
	if m.Rows <= 0 || m.Cols <= 0 {
		return fmt.Errorf("nf4: bad shape [%d,%d]", m.Rows, m.Cols)
	}
	if len(m.Packed) != (n+1)/2 {
		return fmt.Errorf("nf4: packed has %d bytes, want %d for [%d,%d]", len(m.Packed), (n+1)/2, m.Rows, m.Cols)
	}
	if want := (n + NF4BlockSize - 1) / NF4BlockSize; len(m.Absmax) != want {
		return fmt.Errorf("nf4: absmax has %d blocks, want %d for [%d,%d]", len(m.Absmax), want, m.Rows, m.Cols)
	}
	return nil
}

// NF4Code is the NF4 code book of bitsandbytes (`get_4bit_type("nf4")`), index = code.
var NF4Code = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// KVRef is the key/value cache one query token attends to, in one layer:
// the first Len positions of its sequence.
type KVRef struct {
	K, V []float32 // [>=Len, nKVHeads*headDim]
	Len  int       // number of positions attended (causal: position of the token + 1)
}

// Backend is the set of ops the model needs. Every op overwrites its output
// argument (no accumulation) unless its comment says otherwise, and never
// retains slices after it returns.
type Backend interface {
	Name() string

	// MatMul: y[t,:] = W · x[t,:] for t in [0,T).
	// x [T, Cols], y [T, Rows].
	MatMul(y, x []float32, w Matrix, T int)

	// Embed: out[t,:] = row ids[t] of table. table [vocab, dim], out [len(ids), dim].
	Embed(out []float32, table Matrix, ids []int32)

	// RMSNorm: out[t,:] = x[t,:] / sqrt(mean(x[t,:]²) + eps) * weight.
	// x, out [T, len(weight)]; out may alias x.
	RMSNorm(out, x, weight []float32, eps float32)

	// RoPE rotates, in place, each head of each token by its position
	// (rotate-half / NeoX pairing: (x[i], x[i+headDim/2])).
	// x [len(pos), nHeads*headDim], invFreq [headDim/2].
	RoPE(x []float32, pos []int32, nHeads, headDim int, invFreq []float32)

	// Attention: for each token t and head h,
	// out[t,h,:] = softmax(q[t,h,:]·K[:Len, g,:]ᵀ / sqrt(headDim)) · V[:Len, g,:]
	// with g = h / (nHeads/nKVHeads) (grouped-query attention).
	// q, out [len(kv), nHeads*headDim].
	Attention(out, q []float32, kv []KVRef, nHeads, nKVHeads, headDim int)

	// SiLUMul: out[i] = silu(gate[i]) * up[i]; out may alias gate.
	SiLUMul(out, gate, up []float32)

	// Add: dst[i] += src[i].
	Add(dst, src []float32)
}

// LoRAStack holds the resident adapters' weights for one linear layer, one
// slot per adapter (vLLM's lora_a_stacked / lora_b_stacked). Ranks below
// MaxRank are zero-padded, which leaves the product unchanged.
type LoRAStack struct {
	Slots, MaxRank int
	In, Out        int
	A              []float32 // [Slots, MaxRank, In]
	B              []float32 // [Slots, Out, MaxRank], already multiplied by the adapter's scale
}

// NewLoRAStack allocates zeroed slots.
func NewLoRAStack(slots, maxRank, in, out int) *LoRAStack {
	return &LoRAStack{Slots: slots, MaxRank: maxRank, In: in, Out: out,
		A: make([]float32, slots*maxRank*in), B: make([]float32, slots*out*maxRank)}
}

// LoRABackend is implemented by backends that apply per-token LoRA adapters
// (punica's shrink/expand): a batch may mix tokens of several adapters and of
// the base model (slot -1).
type LoRABackend interface {
	// LoRAShrink: z[t,:] = A[slots[t]] · x[t,:] for tokens with slots[t] >= 0
	// (rows of other tokens are left untouched). x [T, In], z [T, MaxRank].
	LoRAShrink(z, x []float32, s *LoRAStack, slots []int32)
	// LoRAExpand: y[t,:] += B[slots[t]] · z[t,:] for tokens with slots[t] >= 0.
	// z [T, MaxRank], y [T, Out].
	LoRAExpand(y, z []float32, s *LoRAStack, slots []int32)
}
