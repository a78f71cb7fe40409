package ref

import (
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

var _ kernels.TrainBackend = Backend{}

// MatMulT: dx[t,c] = Σ_r W[r,c]·dy[t,r]. dy [T, Rows], dx [T, Cols].
func (Backend) MatMulT(dxb, dyb kernels.Buf, w kernels.Matrix, T int) {
	dx, dy := f("MatMulT", dxb), f("MatMulT", dyb)
	rows, cols := w.Shape()
	for t := 0; t < T; t++ {
		for c := 0; c < cols; c++ {
			var s float64
			for r := 0; r < rows; r++ {
				s += float64(Element(w, r, c)) * float64(dy[t*rows+r])
			}
			dx[t*cols+c] = float32(s)
		}
	}
}

// RMSNormBackward: with s = 1/sqrt(mean(x²)+eps),
// dx[i] = s·w[i]·dy[i] − s³/n·x[i]·Σ_j dy[j]·w[j]·x[j].
func (Backend) RMSNormBackward(dxb, dyb, xb, wb kernels.Buf, eps float32) {
	dx, dy, x, weight := f("RMSNormBackward", dxb), f("RMSNormBackward", dyb), f("RMSNormBackward", xb), f("RMSNormBackward", wb)
	n := len(weight)
	for t := 0; t < len(x)/n; t++ {
		xr, dyr, dxr := x[t*n:(t+1)*n], dy[t*n:(t+1)*n], dx[t*n:(t+1)*n]
		var ss, dot float64
		for i, v := range xr {
			ss += float64(v) * float64(v)
			dot += float64(dyr[i]) * float64(weight[i]) * float64(v)
		}
		s := 1 / math.Sqrt(ss/float64(n)+float64(eps))
		c := s * s * s / float64(n) * dot
		for i, v := range xr {
			dxr[i] = float32(s*float64(weight[i])*float64(dyr[i]) - c*float64(v))
		}
	}
}

// RoPEBackward is the transpose of RoPE: the rotation by −pos[t]·invFreq[i]
// (float32(p)·(−f) is exactly −(float32(p)·f), so this is RoPE with negated
// frequencies).
func (b Backend) RoPEBackward(dx kernels.Buf, pos kernels.IntBuf, nHeads, headDim int, invFreqb kernels.Buf) {
	invFreq := f("RoPEBackward", invFreqb)
	neg := make([]float32, len(invFreq))
	for i, v := range invFreq {
		neg[i] = -v
	}
	b.RoPE(dx, pos, nHeads, headDim, kernels.HostBuf(neg))
}

// attnScores returns the scaled scores of query row (b,t,h) against keys
// j <= t of its sequence, and their log-sum-exp.
func attnScores(q, k []float32, b, t, h, T, nHeads, nKVHeads, headDim int) ([]float64, float64) {
	g := h / (nHeads / nKVHeads)
	scale := 1 / math.Sqrt(float64(headDim))
	qh := q[((b*T+t)*nHeads+h)*headDim:][:headDim]
	s := make([]float64, t+1)
	m := math.Inf(-1)
	for j := range s {
		kj := k[((b*T+j)*nKVHeads+g)*headDim:][:headDim]
		var d float64
		for i := range qh {
			d += float64(qh[i]) * float64(kj[i])
		}
		s[j] = d * scale
		m = math.Max(m, s[j])
	}
	var sum float64
	for _, v := range s {
		sum += math.Exp(v - m)
	}
	return s, m + math.Log(sum)
}

// AttentionForwardTrain: causal softmax attention within each sequence,
// saving the log-sum-exp of every row of scaled scores.
func (Backend) AttentionForwardTrain(outb, lseb, qb, kb, vb kernels.Buf, B, T, nHeads, nKVHeads, headDim int) {
	const op = "AttentionForwardTrain"
	out, lse, q, k, v := f(op, outb), f(op, lseb), f(op, qb), f(op, kb), f(op, vb)
	group := nHeads / nKVHeads
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			for h := 0; h < nHeads; h++ {
				g := h / group
				s, l := attnScores(q, k, b, t, h, T, nHeads, nKVHeads, headDim)
				lse[(b*T+t)*nHeads+h] = float32(l)
				oh := out[((b*T+t)*nHeads+h)*headDim:][:headDim]
				for i := range oh {
					var o float64
					for j, sj := range s {
						o += math.Exp(sj-l) * float64(v[((b*T+j)*nKVHeads+g)*headDim+i])
					}
					oh[i] = float32(o)
				}
			}
		}
	}
}

// AttentionBackward: with P the probabilities, D[t] = Σ_i dout[t,i]·out[t,i],
//
//	dv[j] += P[t,j]·dout[t];  dS[t,j] = P[t,j]·(dout[t]·v[j] − D[t]);
//	dq[t] += dS[t,j]·k[j]/sqrt(d);  dk[j] += dS[t,j]·q[t]/sqrt(d).
//
// The probabilities are recomputed from q and k (lse is not needed by this
// naive version; it is the saved state fast backends use).
func (Backend) AttentionBackward(dqb, dkb, dvb, doutb, outb, lseb, qb, kb, vb kernels.Buf, B, T, nHeads, nKVHeads, headDim int) {
	const op = "AttentionBackward"
	dq, dk, dv, dout, out, q, k, v := f(op, dqb), f(op, dkb), f(op, dvb), f(op, doutb), f(op, outb), f(op, qb), f(op, kb), f(op, vb)
	_ = f(op, lseb)
	group := nHeads / nKVHeads
	scale := 1 / math.Sqrt(float64(headDim))
	qd, kd := nHeads*headDim, nKVHeads*headDim
	gq := make([]float64, B*T*qd)
	gk := make([]float64, B*T*kd)
	gv := make([]float64, B*T*kd)
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			for h := 0; h < nHeads; h++ {
				g := h / group
				s, l := attnScores(q, k, b, t, h, T, nHeads, nKVHeads, headDim)
				row := ((b*T+t)*nHeads + h) * headDim
				var D float64
				for i := 0; i < headDim; i++ {
					D += float64(dout[row+i]) * float64(out[row+i])
				}
				for j, sj := range s {
					p := math.Exp(sj - l)
					kv := ((b*T+j)*nKVHeads + g) * headDim
					var dp float64
					for i := 0; i < headDim; i++ {
						dp += float64(dout[row+i]) * float64(v[kv+i])
						gv[kv+i] += p * float64(dout[row+i])
					}
					ds := p * (dp - D) * scale
					for i := 0; i < headDim; i++ {
						gq[row+i] += ds * float64(k[kv+i])
						gk[kv+i] += ds * float64(q[row+i])
					}
				}
			}
		}
	}
	for i := range gq {
		dq[i] = float32(gq[i])
	}
	for i := range gk {
		dk[i] = float32(gk[i])
		dv[i] = float32(gv[i])
	}
}

// SiLUMulBackward: dgate = dout·up·σ(g)·(1+g·(1−σ(g))), dup = dout·silu(g).
func (Backend) SiLUMulBackward(dgateb, dupb, doutb, gateb, upb kernels.Buf) {
	const op = "SiLUMulBackward"
	dgate, dup, dout, gate, up := f(op, dgateb), f(op, dupb), f(op, doutb), f(op, gateb), f(op, upb)
	for i, g := range gate {
		gf := float64(g)
		sig := 1 / (1 + math.Exp(-gf))
		d := float64(dout[i])
		dgate[i] = float32(d * float64(up[i]) * sig * (1 + gf*(1-sig)))
		dup[i] = float32(d * gf * sig)
	}
}

// CrossEntropy: loss[t] = logsumexp(logits[t]) − logits[t,label];
// dlogits[t] = scale·(softmax(logits[t]) − onehot(label)); zero for ignored rows.
func (Backend) CrossEntropy(lossb, dlogitsb, logitsb kernels.Buf, labelsb kernels.IntBuf, scale float32) {
	const op = "CrossEntropy"
	loss, dlogits, logits, labels := f(op, lossb), f(op, dlogitsb), f(op, logitsb), ints(op, labelsb)
	T := len(labels)
	if T == 0 {
		return
	}
	V := len(logits) / T
	for t, lab := range labels {
		row, drow := logits[t*V:(t+1)*V], dlogits[t*V:(t+1)*V]
		if lab == kernels.IgnoreIndex {
			loss[t] = 0
			clear(drow)
			continue
		}
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, float64(v))
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - m)
		}
		lse := m + math.Log(sum)
		loss[t] = float32(lse - float64(row[lab]))
		for i, v := range row {
			p := math.Exp(float64(v) - lse)
			if i == int(lab) {
				p--
			}
			drow[i] = float32(float64(scale) * p)
		}
	}
}

// LoRAForward: z[t] = A·x[t]; y[t] += scale·(B·z[t]).
func (Backend) LoRAForward(yb, zb, xb, ab, bb kernels.Buf, T, in, out, rank int, scale float32) {
	const op = "LoRAForward"
	y, z, x, a, b := f(op, yb), f(op, zb), f(op, xb), f(op, ab), f(op, bb)
	for t := 0; t < T; t++ {
		for r := 0; r < rank; r++ {
			var s float64
			for i := 0; i < in; i++ {
				s += float64(a[r*in+i]) * float64(x[t*in+i])
			}
			z[t*rank+r] = float32(s)
		}
		for o := 0; o < out; o++ {
			var s float64
			for r := 0; r < rank; r++ {
				s += float64(b[o*rank+r]) * float64(z[t*rank+r])
			}
			y[t*out+o] += scale * float32(s)
		}
	}
}

// LoRABackward: dz = scale·Bᵀ·dy; dB += scale·dy⊗z; dA += dz⊗x; dx += Aᵀ·dz.
func (Backend) LoRABackward(dAb, dBb, dxb, xb, zb, dyb, ab, bb kernels.Buf, T, in, out, rank int, scale float32) {
	const op = "LoRABackward"
	dA, dB, dx, x, z, dy, a, b := f(op, dAb), f(op, dBb), f(op, dxb), f(op, xb), f(op, zb), f(op, dyb), f(op, ab), f(op, bb)
	sc := float64(scale)
	dz := make([]float64, T*rank) // [T, rank]
	for t := 0; t < T; t++ {
		for r := 0; r < rank; r++ {
			var s float64
			for o := 0; o < out; o++ {
				s += float64(b[o*rank+r]) * float64(dy[t*out+o])
			}
			dz[t*rank+r] = sc * s
		}
	}
	for o := 0; o < out; o++ {
		for r := 0; r < rank; r++ {
			var s float64
			for t := 0; t < T; t++ {
				s += float64(dy[t*out+o]) * float64(z[t*rank+r])
			}
			dB[o*rank+r] += float32(sc * s)
		}
	}
	for r := 0; r < rank; r++ {
		for i := 0; i < in; i++ {
			var s float64
			for t := 0; t < T; t++ {
				s += dz[t*rank+r] * float64(x[t*in+i])
			}
			dA[r*in+i] += float32(s)
		}
	}
	for t := 0; t < T; t++ {
		for i := 0; i < in; i++ {
			var s float64
			for r := 0; r < rank; r++ {
				s += dz[t*rank+r] * float64(a[r*in+i])
			}
			dx[t*in+i] += float32(s)
		}
	}
}
