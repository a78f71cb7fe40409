package cuda

import (
	"fmt"
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

// The forward ops of kernels.Backend and kernels.LoRABackend, on the
// engine: each checks its shapes on the host (a mismatch panics, as
// kernels/ref's index errors do), then queues its kernel(s) on the device's
// stream and returns.

var block256 = dim3{threads, 1, 1}

func ptr(op string, x kernels.Buf) arg     { return argPtr(devPtr(op, x)) }
func iptr(op string, x kernels.IntBuf) arg { return argPtr(devPtr(op, x)) }

// need panics when a buffer is shorter than the op's shapes say.
func need(op, what string, have, want int) {
	if have < want {
		panic(fmt.Sprintf("cuda: %s: %s has %d values, needs %d", op, what, have, want))
	}
}

// MatMul: y[t,:] = W·x[t,:] (src/matmul.cu; chooseMatMul picks the kernel).
func (e *engine) MatMul(y, x kernels.Buf, w kernels.Matrix, T int) {
	const op = "MatMul"
	m := e.mat(op, w)
	rows, cols := m.Shape()
	if T <= 0 {
		return
	}
	need(op, "x", x.Len(), T*cols)
	need(op, "y", y.Len(), T*rows)
	defer e.dev.enter(op)()
	v := chooseMatMul(T, rows, cols, x.Device(), e.dev.numSMs())
	name, block := matmulNames[m.lay.kind][v], block256
	if v == gemmTiled {
		name, block = e.gemm(m.lay.kind, false)
	}
	d, s, c := m.args()
	e.dev.launch(name, matmulGrid(v, T, rows), block, 0,
		ptr(op, y), ptr(op, x), d, s, c, argInt(rows), argInt(cols), argInt(T))
}

// Embed: out[t,:] = table[ids[t],:] (src/embed.cu).
func (e *engine) Embed(out kernels.Buf, table kernels.Matrix, ids kernels.IntBuf) {
	const op = "Embed"
	m := e.mat(op, table)
	rows, cols := m.Shape()
	T := ids.Len()
	if T == 0 {
		return
	}
	need(op, "out", out.Len(), T*cols)
	defer e.dev.enter(op)()
	d, s, c := m.args()
	e.dev.launch(embedNames[m.lay.kind], strideGrid(T*cols), block256, 0,
		ptr(op, out), d, s, c, iptr(op, ids), argInt(rows), argInt(cols), argInt(T))
}

// RMSNorm (src/rmsnorm.cu), one block per row.
func (e *engine) RMSNorm(out, x, weight kernels.Buf, eps float32) {
	const op = "RMSNorm"
	n := weight.Len()
	if n == 0 || x.Len() == 0 {
		return
	}
	T := x.Len() / n
	need(op, "out", out.Len(), T*n)
	defer e.dev.enter(op)()
	e.dev.launch("rmsnorm", dim3{T, 1, 1}, block256, 0, ptr(op, out), ptr(op, x), ptr(op, weight), argInt(n), argF32(eps))
}

func (e *engine) rope(op string, x kernels.Buf, pos kernels.IntBuf, nHeads, headDim int, invFreq kernels.Buf, sign float32) {
	T := pos.Len()
	if T == 0 || headDim < 2 {
		return
	}
	need(op, "x", x.Len(), T*nHeads*headDim)
	need(op, "invFreq", invFreq.Len(), headDim/2)
	defer e.dev.enter(op)()
	e.dev.launch("rope", strideGrid(T*(headDim/2)), block256, 0,
		ptr(op, x), iptr(op, pos), ptr(op, invFreq), argInt(T), argInt(nHeads), argInt(headDim), argF32(sign))
}

// RoPE rotates x in place (src/rope.cu).
func (e *engine) RoPE(x kernels.Buf, pos kernels.IntBuf, nHeads, headDim int, invFreq kernels.Buf) {
	e.rope("RoPE", x, pos, nHeads, headDim, invFreq, 1)
}

// WriteKV stores k and v at their slots (src/write_kv.cu).
func (e *engine) WriteKV(kv kernels.KVLayer, k, v kernels.Buf, slots kernels.IntBuf, kvDim int) {
	const op = "WriteKV"
	T := slots.Len()
	if T == 0 || kvDim == 0 {
		return
	}
	need(op, "k", k.Len(), T*kvDim)
	need(op, "v", v.Len(), T*kvDim)
	defer e.dev.enter(op)()
	e.dev.launch("write_kv", strideGrid(T*kvDim), block256, 0,
		ptr(op, kv.K), ptr(op, kv.V), ptr(op, k), ptr(op, v), iptr(op, slots), argInt(T), argInt(kvDim))
}

// maxHeadDim is what the attention kernels' per-lane accumulators hold
// (ATT_MAXA·32).
const maxHeadDim = 256

func checkHeads(op string, nHeads, nKVHeads, headDim int) {
	if nHeads <= 0 || nKVHeads <= 0 || nHeads%nKVHeads != 0 || headDim <= 0 || headDim > maxHeadDim {
		panic(fmt.Sprintf("cuda: %s: %d heads over %d KV heads of dim %d (need a whole group per KV head and dim <= %d)",
			op, nHeads, nKVHeads, headDim, maxHeadDim))
	}
}

func attnScale(headDim int) float32 { return float32(1 / math.Sqrt(float64(headDim))) }

// PagedAttention over the block tables of m (src/paged_attention.cu).
func (e *engine) PagedAttention(out, q kernels.Buf, kv kernels.KVLayer, m kernels.AttnMeta, nHeads, nKVHeads, headDim int) {
	const op = "PagedAttention"
	T := m.Pos.Len()
	if T == 0 {
		return
	}
	checkHeads(op, nHeads, nKVHeads, headDim)
	need(op, "q", q.Len(), T*nHeads*headDim)
	need(op, "out", out.Len(), T*nHeads*headDim)
	need(op, "Seq", m.Seq.Len(), T)
	defer e.dev.enter(op)()
	block, shmem := dim3{32 * attnWarps, 1, 1}, 4*attnWarps*headDim
	common := []arg{ptr(op, q), ptr(op, kv.K), ptr(op, kv.V), iptr(op, m.Seq), iptr(op, m.Pos), iptr(op, m.BlockTables),
		argInt(m.MaxBlocks), argInt(m.BlockSize), argInt(T), argInt(nHeads), argInt(nKVHeads), argInt(headDim),
		argF32(attnScale(headDim))}
	S, L := attnSplits(T, nHeads, m.MaxLen, e.dev.numSMs())
	if S == 1 {
		e.dev.launch("paged_attention", blocksFor(T*nHeads, attnWarps), block, shmem, append([]arg{ptr(op, out)}, common...)...)
		return
	}
	// Flash-decoding: S partial rows per (t, h) in scratch, then combined.
	e.scratchMu.Lock()
	defer e.scratchMu.Unlock()
	rows := T * nHeads * S
	part := e.dev.scratchBuf(rows * (headDim + 2))
	ml := part + uintptr(4*rows*headDim)
	e.dev.launch("paged_attention_split", blocksFor(rows, attnWarps), block, shmem,
		append(append([]arg{argPtr(part), argPtr(ml)}, common...), argInt(S), argInt(L))...)
	e.dev.launch("paged_attention_combine", blocksFor(T*nHeads, attnWarps), block, 0,
		ptr(op, out), argPtr(part), argPtr(ml), iptr(op, m.Pos), argInt(T), argInt(nHeads), argInt(headDim), argInt(S))
}

// GatherRows (src/gather_rows.cu).
func (e *engine) GatherRows(dst, src kernels.Buf, rows kernels.IntBuf, width int) {
	const op = "GatherRows"
	n := rows.Len()
	if n == 0 || width == 0 {
		return
	}
	need(op, "dst", dst.Len(), n*width)
	defer e.dev.enter(op)()
	e.dev.launch("gather_rows", strideGrid(n*width), block256, 0,
		ptr(op, dst), ptr(op, src), iptr(op, rows), argInt(n), argInt(width))
}

// SiLUMul (src/silu_mul.cu).
func (e *engine) SiLUMul(out, gate, up kernels.Buf) {
	const op = "SiLUMul"
	n := gate.Len()
	if n == 0 {
		return
	}
	need(op, "up", up.Len(), n)
	need(op, "out", out.Len(), n)
	defer e.dev.enter(op)()
	e.dev.launch("silu_mul", strideGrid(n), block256, 0, ptr(op, out), ptr(op, gate), ptr(op, up), argInt(n))
}

// Add: dst += src (src/add.cu).
func (e *engine) Add(dst, src kernels.Buf) {
	const op = "Add"
	n := dst.Len()
	if n == 0 {
		return
	}
	need(op, "src", src.Len(), n)
	defer e.dev.enter(op)()
	e.dev.launch("add", strideGrid(n), block256, 0, ptr(op, dst), ptr(op, src), argInt(n))
}

// LoRAShrink: z[t,:] = A[slots[t]]·x[t,:] (src/lora_shrink.cu).
func (e *engine) LoRAShrink(z, x kernels.Buf, s *kernels.LoRAStack, slots kernels.IntBuf) {
	const op = "LoRAShrink"
	T := slots.Len()
	if T == 0 || s.MaxRank == 0 {
		return
	}
	need(op, "x", x.Len(), T*s.In)
	need(op, "z", z.Len(), T*s.MaxRank)
	defer e.dev.enter(op)()
	e.dev.launch("lora_shrink", blocksFor(T*s.MaxRank, warpsPer256), block256, 0,
		ptr(op, z), ptr(op, x), ptr(op, s.A), iptr(op, slots), argInt(T), argInt(s.MaxRank), argInt(s.In))
}

// LoRAExpand: y[t,:] += B[slots[t]]·z[t,:] (src/lora_expand.cu).
func (e *engine) LoRAExpand(y, z kernels.Buf, s *kernels.LoRAStack, slots kernels.IntBuf) {
	const op = "LoRAExpand"
	T := slots.Len()
	if T == 0 || s.Out == 0 {
		return
	}
	need(op, "z", z.Len(), T*s.MaxRank)
	need(op, "y", y.Len(), T*s.Out)
	defer e.dev.enter(op)()
	e.dev.launch("lora_expand", strideGrid(T*s.Out), block256, 0,
		ptr(op, y), ptr(op, z), ptr(op, s.B), iptr(op, slots), argInt(T), argInt(s.Out), argInt(s.MaxRank), argF32(1))
}
