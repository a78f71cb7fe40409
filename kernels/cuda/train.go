package cuda

import "github.com/parrot-llm/parrot/kernels"

// The ops of kernels.TrainBackend.

// MatMulT: dx[t,:] = Wᵀ·dy[t,:] (src/matmul_t.cu, the transposed GEMM).
func (e *engine) MatMulT(dx, dy kernels.Buf, w kernels.Matrix, T int) {
	const op = "MatMulT"
	m := e.mat(op, w)
	rows, cols := m.Shape()
	if T <= 0 {
		return
	}
	need(op, "dy", dy.Len(), T*rows)
	need(op, "dx", dx.Len(), T*cols)
	defer e.dev.enter(op)()
	d, s, c := m.args()
	name, block := e.gemm(m.lay.kind, true)
	e.dev.launch(name, matmulGrid(gemmTiled, T, cols), block, 0,
		ptr(op, dx), ptr(op, dy), d, s, c, argInt(rows), argInt(cols), argInt(T))
}

// RMSNormBackward (src/rmsnorm_backward.cu), one block per row.
func (e *engine) RMSNormBackward(dx, dy, x, weight kernels.Buf, eps float32) {
	const op = "RMSNormBackward"
	n := weight.Len()
	if n == 0 || x.Len() == 0 {
		return
	}
	T := x.Len() / n
	need(op, "dy", dy.Len(), T*n)
	need(op, "dx", dx.Len(), T*n)
	defer e.dev.enter(op)()
	e.dev.launch("rmsnorm_backward", dim3{T, 1, 1}, block256, 0,
		ptr(op, dx), ptr(op, dy), ptr(op, x), ptr(op, weight), argInt(n), argF32(eps))
}

// RoPEBackward: RoPE's kernel rotating by −θ (src/rope.cu).
func (e *engine) RoPEBackward(dx kernels.Buf, pos kernels.IntBuf, nHeads, headDim int, invFreq kernels.Buf) {
	e.rope("RoPEBackward", dx, pos, nHeads, headDim, invFreq, -1)
}

// AttentionForwardTrain (src/attention_forward.cu), one warp per query row.
func (e *engine) AttentionForwardTrain(out, lse, q, k, v kernels.Buf, B, T, nHeads, nKVHeads, headDim int) {
	const op = "AttentionForwardTrain"
	N := B * T
	if N == 0 {
		return
	}
	checkHeads(op, nHeads, nKVHeads, headDim)
	need(op, "q", q.Len(), N*nHeads*headDim)
	need(op, "out", out.Len(), N*nHeads*headDim)
	need(op, "k", k.Len(), N*nKVHeads*headDim)
	need(op, "v", v.Len(), N*nKVHeads*headDim)
	need(op, "lse", lse.Len(), N*nHeads)
	defer e.dev.enter(op)()
	e.dev.launch("attention_forward", blocksFor(N*nHeads, attnWarps), dim3{32 * attnWarps, 1, 1}, 4*attnWarps*headDim,
		ptr(op, out), ptr(op, lse), ptr(op, q), ptr(op, k), ptr(op, v),
		argInt(B), argInt(T), argInt(nHeads), argInt(nKVHeads), argInt(headDim), argF32(attnScale(headDim)))
}

// AttentionBackward (src/attention_backward.cu): dq and the rows' D first,
// then dk and dv.
func (e *engine) AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v kernels.Buf, B, T, nHeads, nKVHeads, headDim int) {
	const op = "AttentionBackward"
	N := B * T
	if N == 0 {
		return
	}
	checkHeads(op, nHeads, nKVHeads, headDim)
	qd, kd := N*nHeads*headDim, N*nKVHeads*headDim
	need(op, "q", q.Len(), qd)
	need(op, "dq", dq.Len(), qd)
	need(op, "out", out.Len(), qd)
	need(op, "dout", dout.Len(), qd)
	need(op, "k", k.Len(), kd)
	need(op, "v", v.Len(), kd)
	need(op, "dk", dk.Len(), kd)
	need(op, "dv", dv.Len(), kd)
	need(op, "lse", lse.Len(), N*nHeads)
	defer e.dev.enter(op)()
	e.scratchMu.Lock()
	defer e.scratchMu.Unlock()
	D := argPtr(e.dev.scratchBuf(N * nHeads))
	scale := argF32(attnScale(headDim))
	shape := []arg{argInt(B), argInt(T), argInt(nHeads), argInt(nKVHeads), argInt(headDim), scale}
	e.dev.launch("attention_backward_dq", blocksFor(N*nHeads, attnWarps), dim3{32 * attnWarps, 1, 1}, 4*attnWarps*2*headDim,
		append([]arg{ptr(op, dq), D, ptr(op, dout), ptr(op, out), ptr(op, lse), ptr(op, q), ptr(op, k), ptr(op, v)}, shape...)...)
	e.dev.launch("attention_backward_dkdv", blocksFor(N*nKVHeads, attnWarps), dim3{32 * attnWarps, 1, 1}, 4*attnWarps*2*headDim,
		append([]arg{ptr(op, dk), ptr(op, dv), D, ptr(op, dout), ptr(op, lse), ptr(op, q), ptr(op, k), ptr(op, v)}, shape...)...)
}

// SiLUMulBackward (src/silu_mul_backward.cu).
func (e *engine) SiLUMulBackward(dgate, dup, dout, gate, up kernels.Buf) {
	const op = "SiLUMulBackward"
	n := gate.Len()
	if n == 0 {
		return
	}
	need(op, "dgate", dgate.Len(), n)
	need(op, "dup", dup.Len(), n)
	need(op, "dout", dout.Len(), n)
	need(op, "up", up.Len(), n)
	defer e.dev.enter(op)()
	e.dev.launch("silu_mul_backward", strideGrid(n), block256, 0,
		ptr(op, dgate), ptr(op, dup), ptr(op, dout), ptr(op, gate), ptr(op, up), argInt(n))
}

// CrossEntropy (src/cross_entropy.cu), one block per row.
func (e *engine) CrossEntropy(loss, dlogits, logits kernels.Buf, labels kernels.IntBuf, scale float32) {
	const op = "CrossEntropy"
	T := labels.Len()
	if T == 0 {
		return
	}
	V := logits.Len() / T
	need(op, "loss", loss.Len(), T)
	need(op, "dlogits", dlogits.Len(), T*V)
	if V == 0 {
		return
	}
	defer e.dev.enter(op)()
	e.dev.launch("cross_entropy", dim3{T, 1, 1}, block256, 0,
		ptr(op, loss), ptr(op, dlogits), ptr(op, logits), iptr(op, labels), argInt(V), argF32(scale))
}

// LoRAForward: z = A·x, then y += scale·B·z (src/lora_shrink.cu and
// src/lora_expand.cu with a single adapter: no slot array).
func (e *engine) LoRAForward(y, z, x, a, bm kernels.Buf, T, in, out, rank int, scale float32) {
	const op = "LoRAForward"
	if T == 0 || rank == 0 {
		return
	}
	need(op, "x", x.Len(), T*in)
	need(op, "z", z.Len(), T*rank)
	need(op, "y", y.Len(), T*out)
	need(op, "a", a.Len(), rank*in)
	need(op, "b", bm.Len(), out*rank)
	defer e.dev.enter(op)()
	e.dev.launch("lora_shrink", blocksFor(T*rank, warpsPer256), block256, 0,
		ptr(op, z), ptr(op, x), ptr(op, a), argPtr(0), argInt(T), argInt(rank), argInt(in))
	if out > 0 {
		e.dev.launch("lora_expand", strideGrid(T*out), block256, 0,
			ptr(op, y), ptr(op, z), ptr(op, bm), argPtr(0), argInt(T), argInt(out), argInt(rank), argF32(scale))
	}
}

// LoRABackward (src/lora_backward.cu): dz into scratch, then dB, dA, dx.
func (e *engine) LoRABackward(dA, dB, dx, x, z, dy, a, bm kernels.Buf, T, in, out, rank int, scale float32) {
	const op = "LoRABackward"
	if T == 0 || rank == 0 {
		return
	}
	need(op, "x", x.Len(), T*in)
	need(op, "dx", dx.Len(), T*in)
	need(op, "z", z.Len(), T*rank)
	need(op, "dy", dy.Len(), T*out)
	need(op, "a", a.Len(), rank*in)
	need(op, "dA", dA.Len(), rank*in)
	need(op, "b", bm.Len(), out*rank)
	need(op, "dB", dB.Len(), out*rank)
	defer e.dev.enter(op)()
	e.scratchMu.Lock()
	defer e.scratchMu.Unlock()
	dz := argPtr(e.dev.scratchBuf(T * rank))
	e.dev.launch("lora_backward_dz", blocksFor(T*rank, warpsPer256), block256, 0,
		dz, ptr(op, dy), ptr(op, bm), argInt(T), argInt(out), argInt(rank), argF32(scale))
	if out > 0 {
		e.dev.launch("lora_backward_db", blocksFor(out*rank, threads), block256, 0,
			ptr(op, dB), ptr(op, dy), ptr(op, z), argInt(T), argInt(out), argInt(rank), argF32(scale))
	}
	if in > 0 {
		e.dev.launch("lora_backward_da", blocksFor(rank*in, threads), block256, 0,
			ptr(op, dA), dz, ptr(op, x), argInt(T), argInt(in), argInt(rank))
		e.dev.launch("lora_backward_dx", blocksFor(T*in, threads), block256, 0,
			ptr(op, dx), dz, ptr(op, a), argInt(T), argInt(in), argInt(rank))
	}
}
