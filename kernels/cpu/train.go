package cpu

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/parrot-llm/parrot/kernels"
)

// Training ops (kernels.TrainBackend). They are large, compute-bound calls
// (a whole micro-batch at a time), so they split work over short-lived
// goroutines (parallelFor) rather than the decode pool, and the heavy
// products go through MatMul on float32 tiles of Wᵀ, which gets its SIMD
// kernels. The LoRA products (rank ≤ a few dozen) and attention use the
// package's dot/axpy (AVX2) and expf. Scratch is allocated per call: it is
// small next to the work.

var _ kernels.TrainBackend = (*Backend)(nil)

// parallelFor runs f on chunks [lo, hi) of [0, n) of at most grain items,
// on up to Threads() goroutines (the caller's included).
func (b *Backend) parallelFor(n, grain int, f func(lo, hi int)) {
	if n <= 0 {
		return
	}
	grain = max(1, grain)
	workers := min(b.threads, (n+grain-1)/grain)
	if workers <= 1 {
		f(0, n)
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			lo := int(next.Add(int64(grain))) - grain
			if lo >= n {
				return
			}
			f(lo, min(lo+grain, n))
		}
	}
	var wg sync.WaitGroup
	wg.Add(workers - 1)
	for range workers - 1 {
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

// tileFloats bounds the dequantized weight tile of MatMulT (4 MiB).
const tileFloats = 1 << 20

// MatMulT: dx[t,:] = Wᵀ·dy[t,:]. dy [T, Rows], dx [T, Cols].
//
// W is taken a few rows at a time: the tile W[r0:r1, :] is dequantized
// with Embed (so every matrix kind Embed supports works; a float32 W is
// read in place) and multiplied by dy's columns r0:r1, the tiles'
// products summed. Prefill-sized batches take the packed GEMM, which packs
// the tile's columns as panels directly (a float32 W in one pass over all
// its rows); smaller ones transpose the tile and take MatMul. Each weight
// is dequantized once per call (O(Rows·Cols), against O(T·Rows·Cols) of
// arithmetic).
func (b *Backend) MatMulT(dx, dy kernels.Buf, w kernels.Matrix, T int) {
	b.matMulT(host("MatMulT", dx), host("MatMulT", dy), w, T, tileFloats)
}

// matMulT is MatMulT with tiles of at most max(tile, Cols) floats.
func (b *Backend) matMulT(dx, dy []float32, w kernels.Matrix, T, tile int) {
	if T <= 0 {
		return
	}
	rows, cols := w.Shape()
	need("MatMulT", "dy", len(dy), T*rows)
	need("MatMulT", "dx", len(dx), T*cols)
	if packed(T, b.simd) {
		b.matMulTPacked(dx, dy, w, T, tile)
		return
	}
	nr := min(rows, max(1, tile/cols)) // rows of W per tile
	var wrows []float32                // W[r0:r0+n, :] dequantized
	var ids []int32
	if _, ok := w.(*kernels.F32Matrix); !ok {
		wrows, ids = make([]float32, nr*cols), make([]int32, nr)
	}
	wt := make([]float32, cols*nr) // the tile's transpose [cols, n]
	var dys, tmp []float32
	if nr < rows {
		dys = make([]float32, T*nr)   // dy[:, r0:r0+n]
		tmp = make([]float32, T*cols) // one tile's share of dx
	}
	for r0 := 0; r0 < rows; r0 += nr {
		n := min(nr, rows-r0)
		src := b.tileRows(wrows, ids, w, r0, n)
		b.transpose(wt[:cols*n], src, n, cols)
		m := &kernels.F32Matrix{Rows: cols, Cols: n, Data: wt[:cols*n]}
		if n == rows {
			b.matMul(dx[:T*cols], dy, m, T)
			return
		}
		for t := 0; t < T; t++ {
			copy(dys[t*n:(t+1)*n], dy[t*rows+r0:t*rows+r0+n])
		}
		if r0 == 0 {
			b.matMul(dx[:T*cols], dys[:T*n], m, T)
			continue
		}
		b.matMul(tmp, dys[:T*n], m, T)
		b.add(dx[:T*cols], tmp)
	}
}

// matMulTPacked is matMulT on the packed GEMM, which reads W's rows as they
// are (f32TJob), with no transpose: a float32 W in one product over all its
// rows; other kinds a tile of rows at a time, dequantized, each tile's
// product added to dx in place (dy's columns read where they are).
func (b *Backend) matMulTPacked(dx, dy []float32, w kernels.Matrix, T, tile int) {
	rows, cols := w.Shape()
	if f, ok := w.(*kernels.F32Matrix); ok {
		need("MatMulT", "F32 weight", len(f.Data), rows*cols)
		b.matMulTF32(dx, dy, rows, f.Data, cols, cols, rows, T, false)
		return
	}
	nr := min(rows, max(1, tile/cols))
	wrows, ids := make([]float32, nr*cols), make([]int32, nr)
	for r0 := 0; r0 < rows; r0 += nr {
		n := min(nr, rows-r0)
		src := b.tileRows(wrows, ids, w, r0, n)
		b.matMulTF32(dx, dy[r0:], rows, src, cols, cols, n, T, r0 > 0)
	}
}

// tileRows returns W[r0:r0+n, :] as float32: a view of a float32 W, else
// dequantized into wrows with Embed (so every matrix kind Embed supports
// works; ids is its scratch).
func (b *Backend) tileRows(wrows []float32, ids []int32, w kernels.Matrix, r0, n int) []float32 {
	rows, cols := w.Shape()
	if f, ok := w.(*kernels.F32Matrix); ok {
		need("MatMulT", "F32 weight", len(f.Data), rows*cols)
		return f.Data[r0*cols : (r0+n)*cols] // no need to copy
	}
	for i := range n {
		ids[i] = int32(r0 + i)
	}
	b.embed(wrows[:n*cols], w, ids[:n])
	return wrows[:n*cols]
}

// RMSNormBackward: dx = s·w∘dy − s³/n·x·Σ(dy∘w∘x) per row.
func (b *Backend) RMSNormBackward(dxb, dyb, xb, wb kernels.Buf, eps float32) {
	const op = "RMSNormBackward"
	dx, dy, x, weight := host(op, dxb), host(op, dyb), host(op, xb), host(op, wb)
	n := len(weight)
	if n == 0 {
		return
	}
	T := len(x) / n
	need("RMSNormBackward", "dy", len(dy), T*n)
	need("RMSNormBackward", "dx", len(dx), T*n)
	b.parallelFor(T, max(1, 16384/n), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			xr, dyr, dxr := x[t*n:(t+1)*n], dy[t*n:(t+1)*n], dx[t*n:(t+1)*n]
			var ss, dot float64
			for i, v := range xr {
				ss += float64(v) * float64(v)
				dot += float64(dyr[i]*weight[i]) * float64(v)
			}
			s := 1 / math.Sqrt(ss/float64(n)+float64(eps))
			s32, c := float32(s), float32(s*s*s/float64(n)*dot)
			for i, v := range xr {
				dxr[i] = s32*weight[i]*dyr[i] - c*v
			}
		}
	})
}

// RoPEBackward is RoPE by the opposite angles: float32(p)·(−f) is exactly
// −(float32(p)·f), and cos/sin of it are the transpose's entries.
func (b *Backend) RoPEBackward(dxb kernels.Buf, posb kernels.IntBuf, nHeads, headDim int, invFreqb kernels.Buf) {
	const op = "RoPEBackward"
	dx, pos, invFreq := host(op, dxb), hostInts(op, posb), host(op, invFreqb)
	need(op, "invFreq", len(invFreq), headDim/2)
	neg := make([]float32, headDim/2)
	for i := range neg {
		neg[i] = -invFreq[i]
	}
	b.applyRoPE(dx, pos, nHeads, headDim, neg)
}

func checkAttention(op string, out, q, k, v []float32, B, T, nHeads, nKVHeads, headDim int) {
	if nHeads <= 0 || nKVHeads <= 0 || nHeads%nKVHeads != 0 {
		panic(fmt.Sprintf("kernels/cpu: %s: %d heads is not a multiple of %d KV heads", op, nHeads, nKVHeads))
	}
	need(op, "q", len(q), B*T*nHeads*headDim)
	need(op, "out", len(out), B*T*nHeads*headDim)
	need(op, "k", len(k), B*T*nKVHeads*headDim)
	need(op, "v", len(v), B*T*nKVHeads*headDim)
}

// AttentionForwardTrain: one work item per (sequence, head); each query row
// computes its scores, their log-sum-exp, and the weighted sum of values.
func (b *Backend) AttentionForwardTrain(outb, lseb, qb, kb, vb kernels.Buf, B, T, nHeads, nKVHeads, headDim int) {
	const op = "AttentionForwardTrain"
	out, lse, q, k, v := host(op, outb), host(op, lseb), host(op, qb), host(op, kb), host(op, vb)
	checkAttention("AttentionForwardTrain", out, q, k, v, B, T, nHeads, nKVHeads, headDim)
	need("AttentionForwardTrain", "lse", len(lse), B*T*nHeads)
	hd, group := headDim, nHeads/nKVHeads
	qd, kd := nHeads*hd, nKVHeads*hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	simd := b.simd
	b.parallelFor(B*nHeads, 1, func(lo, hi int) {
		p := make([]float32, T) // [T] scores, then probabilities, of one query row
		for it := lo; it < hi; it++ {
			bi, h := it/nHeads, it%nHeads
			g := h / group
			for t := 0; t < T; t++ {
				row := (bi*T + t)
				qh := q[row*qd+h*hd:][:hd]
				m := float32(math.Inf(-1))
				for j := 0; j <= t; j++ {
					s := dot(qh, k[(bi*T+j)*kd+g*hd:][:hd], simd) * scale
					p[j] = s
					m = max(m, s)
				}
				var sum float64
				for j := 0; j <= t; j++ {
					e := expf(p[j] - m)
					p[j] = e
					sum += float64(e)
				}
				lse[row*nHeads+h] = m + float32(math.Log(sum))
				oh := out[row*qd+h*hd:][:hd]
				clear(oh)
				inv := float32(1 / sum)
				for j := 0; j <= t; j++ {
					axpy(oh, p[j]*inv, v[(bi*T+j)*kd+g*hd:][:hd], simd)
				}
			}
		}
	})
}

// AttentionBackward: one work item per (sequence, KV head), so that the
// item owns the dk, dv rows of its KV head and the dq rows of its query
// heads. Probabilities are recomputed from q, k and the saved lse.
func (b *Backend) AttentionBackward(dqb, dkb, dvb, doutb, outb, lseb, qb, kb, vb kernels.Buf, B, T, nHeads, nKVHeads, headDim int) {
	const op = "AttentionBackward"
	dq, dk, dv, dout, out := host(op, dqb), host(op, dkb), host(op, dvb), host(op, doutb), host(op, outb)
	lse, q, k, v := host(op, lseb), host(op, qb), host(op, kb), host(op, vb)
	checkAttention("AttentionBackward", out, q, k, v, B, T, nHeads, nKVHeads, headDim)
	need("AttentionBackward", "lse", len(lse), B*T*nHeads)
	need("AttentionBackward", "dout", len(dout), B*T*nHeads*headDim)
	need("AttentionBackward", "dq", len(dq), B*T*nHeads*headDim)
	need("AttentionBackward", "dk", len(dk), B*T*nKVHeads*headDim)
	need("AttentionBackward", "dv", len(dv), B*T*nKVHeads*headDim)
	hd, group := headDim, nHeads/nKVHeads
	qd, kd := nHeads*hd, nKVHeads*hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	simd := b.simd
	b.parallelFor(B*nKVHeads, 1, func(lo, hi int) {
		for it := lo; it < hi; it++ {
			bi, g := it/nKVHeads, it%nKVHeads
			for j := 0; j < T; j++ {
				clear(dk[(bi*T+j)*kd+g*hd:][:hd])
				clear(dv[(bi*T+j)*kd+g*hd:][:hd])
			}
			for h := g * group; h < (g+1)*group; h++ {
				for t := 0; t < T; t++ {
					row := bi*T + t
					qh, doh := q[row*qd+h*hd:][:hd], dout[row*qd+h*hd:][:hd]
					dqh := dq[row*qd+h*hd:][:hd]
					clear(dqh)
					D := dot(doh, out[row*qd+h*hd:][:hd], simd)
					l := lse[row*nHeads+h]
					for j := 0; j <= t; j++ {
						kv := (bi*T+j)*kd + g*hd
						kj := k[kv:][:hd]
						p := expf(dot(qh, kj, simd)*scale - l)
						axpy(dv[kv:][:hd], p, doh, simd)
						ds := p * (dot(doh, v[kv:][:hd], simd) - D) * scale
						axpy(dqh, ds, kj, simd)
						axpy(dk[kv:][:hd], ds, qh, simd)
					}
				}
			}
		}
	})
}

// SiLUMulBackward: dgate = dout·up·σ(g)·(1+g·(1−σ(g))), dup = dout·g·σ(g).
func (b *Backend) SiLUMulBackward(dgateb, dupb, doutb, gateb, upb kernels.Buf) {
	const op = "SiLUMulBackward"
	dgate, dup, dout, gate, up := host(op, dgateb), host(op, dupb), host(op, doutb), host(op, gateb), host(op, upb)
	n := len(gate)
	need("SiLUMulBackward", "up", len(up), n)
	need("SiLUMulBackward", "dout", len(dout), n)
	need("SiLUMulBackward", "dgate", len(dgate), n)
	need("SiLUMulBackward", "dup", len(dup), n)
	b.parallelFor(n, 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := gate[i]
			sig := 1 / (1 + expf(-g))
			d := dout[i]
			dgate[i] = d * up[i] * sig * (1 + g*(1-sig))
			dup[i] = d * g * sig
		}
	})
}

// CrossEntropy: rows in parallel; the log-sum-exp sums in float64.
func (b *Backend) CrossEntropy(lossb, dlogitsb, logitsb kernels.Buf, labelsb kernels.IntBuf, scale float32) {
	const op = "CrossEntropy"
	loss, dlogits, logits, labels := host(op, lossb), host(op, dlogitsb), host(op, logitsb), hostInts(op, labelsb)
	T := len(labels)
	if T == 0 {
		return
	}
	V := len(logits) / T
	need("CrossEntropy", "loss", len(loss), T)
	need("CrossEntropy", "dlogits", len(dlogits), T*V)
	for _, lab := range labels {
		if lab != kernels.IgnoreIndex && (lab < 0 || int(lab) >= V) {
			panic(fmt.Sprintf("kernels/cpu: CrossEntropy: label %d outside vocabulary of %d", lab, V))
		}
	}
	b.parallelFor(T, max(1, 65536/V), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			row, drow := logits[t*V:(t+1)*V], dlogits[t*V:(t+1)*V]
			lab := labels[t]
			if lab == kernels.IgnoreIndex {
				loss[t] = 0
				clear(drow)
				continue
			}
			m := row[0]
			for _, v := range row {
				m = max(m, v)
			}
			var sum float64
			for _, v := range row {
				sum += float64(expf(v - m))
			}
			lse := float64(m) + math.Log(sum)
			loss[t] = float32(lse - float64(row[lab]))
			lse32 := float32(lse)
			for i, v := range row {
				drow[i] = scale * expf(v-lse32)
			}
			drow[lab] -= scale
		}
	})
}

// transpose writes dst[c*rows+r] = src[r*cols+c] for a rows×cols matrix,
// in 16×16 blocks so that both sides move whole cache lines.
func (b *Backend) transpose(dst, src []float32, rows, cols int) {
	const blk = 16
	b.parallelFor((rows+blk-1)/blk, max(1, 16384/max(1, cols)), func(lo, hi int) {
		for r0 := lo * blk; r0 < min(hi*blk, rows); r0 += blk {
			r1 := min(r0+blk, rows)
			for c0 := 0; c0 < cols; c0 += blk {
				c1 := min(c0+blk, cols)
				for c := c0; c < c1; c++ {
					d := dst[c*rows+r0 : c*rows+r1]
					for i := range d {
						d[i] = src[(r0+i)*cols+c]
					}
				}
			}
		}
	})
}

func checkLoRA(op string, x, z, a, bm []float32, T, in, out, rank int) {
	need(op, "x", len(x), T*in)
	need(op, "z", len(z), T*rank)
	need(op, "A", len(a), rank*in)
	need(op, "B", len(bm), out*rank)
}

// LoRAForward: z[t,r] = A[r,:]·x[t,:] (dot products), then
// y[t,:] += Σ_r scale·z[t,r]·Bᵀ[r,:] (row updates), tokens in parallel.
func (b *Backend) LoRAForward(yb, zb, xb, ab, bb kernels.Buf, T, in, out, rank int, scale float32) {
	const op = "LoRAForward"
	y, z, x, a, bm := host(op, yb), host(op, zb), host(op, xb), host(op, ab), host(op, bb)
	if T <= 0 {
		return
	}
	checkLoRA("LoRAForward", x, z, a, bm, T, in, out, rank)
	need("LoRAForward", "y", len(y), T*out)
	bt := make([]float32, rank*out) // Bᵀ [rank, out]
	b.transpose(bt, bm[:out*rank], out, rank)
	simd := b.simd
	b.parallelFor(T, max(1, 65536/(rank*(in+out))), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			xt, zt, yt := x[t*in:(t+1)*in], z[t*rank:(t+1)*rank], y[t*out:(t+1)*out]
			for r := range zt {
				zt[r] = dot(a[r*in:(r+1)*in], xt, simd)
			}
			for r, zr := range zt {
				axpy(yt, scale*zr, bt[r*out:(r+1)*out], simd)
			}
		}
	})
}

// LoRABackward, as dot products and row updates on the operands as they
// are laid out (no transposed copies of the activations):
//
//	dz[t,r] = scale·dy[t,:]·B[:,r]       tokens in parallel
//	dB[o,:] += scale·Σ_t dy[t,o]·z[t,:]  blocks of outputs in parallel
//	dA[:,i] += Σ_t dz[t,:]·x[t,i]        blocks of inputs in parallel
//	dx[t,:] += Σ_r dz[t,r]·A[r,:]        tokens in parallel
func (b *Backend) LoRABackward(dAb, dBb, dxb, xb, zb, dyb, ab, bb kernels.Buf, T, in, out, rank int, scale float32) {
	const op = "LoRABackward"
	dA, dB, dx, x, z := host(op, dAb), host(op, dBb), host(op, dxb), host(op, xb), host(op, zb)
	dy, a, bm := host(op, dyb), host(op, ab), host(op, bb)
	if T <= 0 {
		return
	}
	checkLoRA("LoRABackward", x, z, a, bm, T, in, out, rank)
	need("LoRABackward", "dy", len(dy), T*out)
	need("LoRABackward", "dx", len(dx), T*in)
	need("LoRABackward", "dA", len(dA), rank*in)
	need("LoRABackward", "dB", len(dB), out*rank)
	simd := b.simd
	bt := make([]float32, rank*out) // Bᵀ [rank, out]
	b.transpose(bt, bm[:out*rank], out, rank)
	dz := make([]float32, T*rank) // [T, rank]
	b.parallelFor(T, max(1, 65536/(rank*out)), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			for r := 0; r < rank; r++ {
				dz[t*rank+r] = scale * dot(bt[r*out:(r+1)*out], dy[t*out:(t+1)*out], simd)
			}
		}
	})
	const blk = 64 // outputs or inputs per work item: the block of dB or dA stays in L1
	b.parallelFor((out+blk-1)/blk, 1, func(lo, hi int) {
		for o0 := lo * blk; o0 < min(hi*blk, out); o0 += blk {
			o1 := min(o0+blk, out)
			for t := 0; t < T; t++ {
				zt := z[t*rank : (t+1)*rank]
				for o := o0; o < o1; o++ {
					if g := dy[t*out+o]; g != 0 {
						axpy(dB[o*rank:(o+1)*rank], scale*g, zt, simd)
					}
				}
			}
		}
	})
	b.parallelFor((in+blk-1)/blk, 1, func(lo, hi int) {
		for i0 := lo * blk; i0 < min(hi*blk, in); i0 += blk {
			i1 := min(i0+blk, in)
			for t := 0; t < T; t++ {
				xt := x[t*in+i0 : t*in+i1]
				for r := 0; r < rank; r++ {
					axpy(dA[r*in+i0:r*in+i1], dz[t*rank+r], xt, simd)
				}
			}
		}
	})
	b.parallelFor(T, max(1, 65536/(rank*in)), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			dxt := dx[t*in : (t+1)*in]
			for r := 0; r < rank; r++ {
				axpy(dxt, dz[t*rank+r], a[r*in:(r+1)*in], simd)
			}
		}
	})
}
