// Package kernels is the backend seam: a small, eager set of tensor ops that
// the model code calls without knowing which backend runs them.
//
// Activations, KV blocks and LoRA slots live in backend-owned memory (Buf,
// IntBuf; see Memory), row-major float32. Weights are frozen matrices
// in PyTorch nn.Linear layout W[Rows=out, Cols=in]: float32, bitsandbytes-
// compatible NF4 (bitsandbytes functional.py quantize_4bit), bfloat16 (embeddings as checkpoints store
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

// KVLayer is one layer's paged key/value storage (vLLM's kv_cache[layer],
// ggml's k_l/v_l): NumBlocks blocks of BlockSize positions, each position a
// row of nKVHeads*headDim floats. Position p of a sequence lives in row
// blockTable[p/BlockSize]*BlockSize + p%BlockSize.
//
// A layer stores float32 rows in backend memory (K, V), or bfloat16 rows in
// host memory (K16, V16) on a backend that keeps its KV cache in bfloat16
// (KVStorage), as llama.cpp keeps it in f16 and vLLM in a bf16 model's dtype:
// half the bytes per cached position, for memory and for decode attention.
type KVLayer struct {
	K, V     Buf      // [NumBlocks*BlockSize, nKVHeads*headDim]
	K16, V16 []uint16 // the same rows as bfloat16 bit patterns, instead of K, V
}

// BF16 reports whether the layer stores bfloat16 rows (K16, V16).
func (l KVLayer) BF16() bool { return l.K16 != nil }

// KVStorage is implemented by host backends that may keep the KV cache in
// bfloat16: WriteKV rounds each value to nearest (ties to even) and
// PagedAttention reads the rounded values.
type KVStorage interface {
	KVInBF16() bool
}

// KVBytesPerValue is the size of one cached value in mem: 2 when it is a
// KVStorage that keeps bfloat16, else 4.
func KVBytesPerValue(mem Memory) int {
	if s, ok := mem.(KVStorage); ok && s.KVInBF16() {
		return 2
	}
	return 4
}

// AttnMeta is a step's attention metadata (vLLM's attn_metadata), written
// once per step and shared by every layer. Token t belongs to the sequence
// in row Seq[t] of BlockTables and attends positions [0, Pos[t]] of it.
type AttnMeta struct {
	Seq         IntBuf // [T]
	Pos         IntBuf // [T] (the positions RoPE used)
	BlockTables IntBuf // [nSeqs, MaxBlocks] block ids
	MaxBlocks   int    // row length of BlockTables
	BlockSize   int    // positions per block
	MaxLen      int    // max over t of Pos[t]+1 (a host-side hint for sizing work)
}

// Backend is the set of ops the model needs, plus the memory they work on.
// Every op overwrites its output argument (no accumulation) unless its
// comment says otherwise, and never retains handles after it returns.
// Ops may run asynchronously on a device backend: results are visible to
// later ops at once and to the host through Memory.Read.
type Backend interface {
	Name() string
	Memory

	// MatMul: y[t,:] = W · x[t,:] for t in [0,T).
	// x [T, Cols], y [T, Rows]. w is the result of Upload.
	MatMul(y, x Buf, w Matrix, T int)

	// Embed: out[t,:] = row ids[t] of table. table [vocab, dim], out [ids.Len(), dim].
	Embed(out Buf, table Matrix, ids IntBuf)

	// RMSNorm: out[t,:] = x[t,:] / sqrt(mean(x[t,:]²) + eps) * weight.
	// x, out [T, weight.Len()]; out may alias x.
	RMSNorm(out, x, weight Buf, eps float32)

	// RoPE rotates, in place, each head of each token by its position
	// (rotate-half / NeoX pairing: (x[i], x[i+headDim/2])).
	// x [pos.Len(), nHeads*headDim], invFreq [headDim/2].
	RoPE(x Buf, pos IntBuf, nHeads, headDim int, invFreq Buf)

	// WriteKV stores each token's key and value at its slot (vLLM's
	// reshape_and_cache, ggml's cpy_k/cpy_v): for t < slots.Len(),
	// kv.K[slots[t], :] = k[t, :] and kv.V[slots[t], :] = v[t, :].
	// k, v [T, kvDim].
	WriteKV(kv KVLayer, k, v Buf, slots IntBuf, kvDim int)

	// PagedAttention: for each token t and head h, with g = h/(nHeads/nKVHeads)
	// (grouped-query attention) and K_p, V_p the rows of position p of token
	// t's sequence (see KVLayer and AttnMeta):
	//   out[t,h,:] = Σ_{p<=Pos[t]} softmax_p(q[t,h,:]·K_p[g,:]/sqrt(headDim)) · V_p[g,:]
	// A token with Pos -1 attends nothing and gets zeros.
	// q, out [m.Pos.Len(), nHeads*headDim].
	PagedAttention(out, q Buf, kv KVLayer, m AttnMeta, nHeads, nKVHeads, headDim int)

	// GatherRows: dst[i,:] = src[rows[i],:] for rows of width floats (the
	// rows that need logits). dst [rows.Len(), width].
	GatherRows(dst, src Buf, rows IntBuf, width int)

	// SiLUMul: out[i] = silu(gate[i]) * up[i]; out may alias gate.
	SiLUMul(out, gate, up Buf)

	// Add: dst[i] += src[i].
	Add(dst, src Buf)
}

// LoRAStack holds the resident adapters' weights for one linear layer, one
// slot per adapter (vLLM's lora_a_stacked / lora_b_stacked), in backend
// memory. Ranks below MaxRank are zero-padded, which leaves the product
// unchanged. B is stored already multiplied by the adapter's scale.
//
// Two storages: float32 in backend memory (A, B), or bfloat16 in host memory
// (A16, BT16) on backends that ask for it (LoRAStorage), as vLLM keeps
// adapters in the model's dtype: half the bytes that 8 different adapters
// add to each decode step. Write and read slots with WriteSlot and ReadSlot,
// which hide the layout.
type LoRAStack struct {
	Slots, MaxRank int
	In, Out        int
	BF16           bool // storage: A16 and BT16 instead of A and B

	A Buf // [Slots, MaxRank, In]
	B Buf // [Slots, Out, MaxRank]

	// bfloat16 bit patterns. B is transposed so that expand adds whole
	// rows of it to a token's output (an axpy per rank, no horizontal sums).
	A16  []uint16 // [Slots, MaxRank, In]
	BT16 []uint16 // [Slots, MaxRank, Out]
}

// LoRAStorage is implemented by host backends that choose how their LoRA
// slots are stored (the CPU backend: bfloat16 unless told otherwise).
type LoRAStorage interface {
	LoRAInBF16() bool
}

// LoRABytesPerValue is the size of one LoRA value that NewLoRAStack stores
// in mem: 2 (bfloat16) or 4 (float32).
func LoRABytesPerValue(mem Memory) int {
	if ls, ok := mem.(LoRAStorage); ok && ls.LoRAInBF16() {
		return 2
	}
	return 4
}

// NewLoRAStack allocates zeroed slots in mem, in bfloat16 when mem is a
// LoRAStorage that asks for it.
func NewLoRAStack(mem Memory, slots, maxRank, in, out int) (*LoRAStack, error) {
	if slots <= 0 || maxRank <= 0 || in <= 0 || out <= 0 {
		return nil, fmt.Errorf("kernels: LoRA stack of %d slots, rank %d, [%d->%d]", slots, maxRank, in, out)
	}
	s := &LoRAStack{Slots: slots, MaxRank: maxRank, In: in, Out: out}
	if LoRABytesPerValue(mem) == 2 {
		s.BF16 = true
		s.A16 = make([]uint16, slots*maxRank*in)
		s.BT16 = make([]uint16, slots*maxRank*out)
		return s, nil
	}
	a, err := mem.Alloc(slots * maxRank * in)
	if err != nil {
		return nil, err
	}
	b, err := mem.Alloc(slots * out * maxRank)
	if err != nil {
		mem.Free(a)
		return nil, err
	}
	s.A, s.B = a, b
	return s, nil
}

// Free releases the stack's memory.
func (s *LoRAStack) Free(mem Memory) {
	if !s.BF16 {
		mem.Free(s.A)
		mem.Free(s.B)
	}
	s.A, s.B, s.A16, s.BT16 = Buf{}, Buf{}, nil, nil
}

// WriteSlot stores one slot: a [MaxRank, In] and b [Out, MaxRank] (scale
// folded in), rounded to bfloat16 (nearest, ties to even) in that storage.
func (s *LoRAStack) WriteSlot(mem Memory, slot int, a, b []float32) {
	s.checkSlot(slot, a, b)
	if !s.BF16 {
		mem.Write(s.A.Slice(slot*s.MaxRank*s.In, (slot+1)*s.MaxRank*s.In), a)
		mem.Write(s.B.Slice(slot*s.Out*s.MaxRank, (slot+1)*s.Out*s.MaxRank), b)
		return
	}
	a16 := s.A16[slot*s.MaxRank*s.In:][:s.MaxRank*s.In]
	for i, v := range a {
		a16[i] = F32ToBF16(v)
	}
	bt := s.BT16[slot*s.MaxRank*s.Out:][:s.MaxRank*s.Out]
	for o := range s.Out {
		for r := range s.MaxRank {
			bt[r*s.Out+o] = F32ToBF16(b[o*s.MaxRank+r])
		}
	}
}

// ReadSlot returns what slot holds, as float32 in WriteSlot's layout:
// a [MaxRank, In], b [Out, MaxRank].
func (s *LoRAStack) ReadSlot(mem Memory, slot int) (a, b []float32) {
	a, b = make([]float32, s.MaxRank*s.In), make([]float32, s.Out*s.MaxRank)
	s.checkSlot(slot, a, b)
	if !s.BF16 {
		mem.Read(a, s.A.Slice(slot*s.MaxRank*s.In, (slot+1)*s.MaxRank*s.In))
		mem.Read(b, s.B.Slice(slot*s.Out*s.MaxRank, (slot+1)*s.Out*s.MaxRank))
		return a, b
	}
	for i, h := range s.A16[slot*s.MaxRank*s.In:][:s.MaxRank*s.In] {
		a[i] = BF16ToF32(h)
	}
	bt := s.BT16[slot*s.MaxRank*s.Out:][:s.MaxRank*s.Out]
	for o := range s.Out {
		for r := range s.MaxRank {
			b[o*s.MaxRank+r] = BF16ToF32(bt[r*s.Out+o])
		}
	}
	return a, b
}

func (s *LoRAStack) checkSlot(slot int, a, b []float32) {
	if slot < 0 || slot >= s.Slots || len(a) != s.MaxRank*s.In || len(b) != s.Out*s.MaxRank {
		panic(fmt.Sprintf("kernels: LoRA slot %d of %d with %d and %d values, want %d and %d",
			slot, s.Slots, len(a), len(b), s.MaxRank*s.In, s.Out*s.MaxRank))
	}
}

// LoRABackend is implemented by backends that apply per-token LoRA adapters
// (punica's shrink/expand): a batch may mix tokens of several adapters and of
// the base model (slot -1).
type LoRABackend interface {
	// LoRAShrink: z[t,:] = A[slots[t]] · x[t,:] for tokens with slots[t] >= 0
	// (rows of other tokens are left untouched). x [T, In], z [T, MaxRank],
	// T = slots.Len().
	LoRAShrink(z, x Buf, s *LoRAStack, slots IntBuf)
	// LoRAExpand: y[t,:] += B[slots[t]] · z[t,:] for tokens with slots[t] >= 0.
	// z [T, MaxRank], y [T, Out].
	LoRAExpand(y, z Buf, s *LoRAStack, slots IntBuf)
}
