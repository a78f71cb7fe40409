package ref

import (
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

// NF4 × int8 activations: the arithmetic of llama.cpp's IQ4_NL × Q8_0 dot
// product (ggml-cpu quants.c ggml_vec_dot_iq4_nl_q8_0) applied to
// bitsandbytes NF4 blocks. The 16 codes become int8 (kernels.Int8Code), each
// 64-element block of an activation row is quantized symmetrically to int8
// with its own scale (kernels.QuantizeBlocksInt8), and a block's dot product is an
// exact integer sum scaled once by absmax·scale. Rows must be whole blocks
// (Cols % 64 == 0), as in every Llama projection.
//
// Error, per block b of a row, against the exact float product:
//
//	|Δ| <= absmax_b·(c/127)·(½·Σ|xq_e|·d_b) + ½·d_b·Σ|w_e| (first order)
//
// where c = max|code|, d_b the activation scale and w_e the exact weights:
// half an int8 step of the code (0.39% of absmax) and half a step of the
// activations (0.39% of the block's largest |x|). Int8Bound computes it.

// MatMulNF4Int8 is y[t,:] = W·x[t,:] with x quantized per block to int8 and
// the codes to Int8Code: y[t,r] = Σ_b absmax[r,b]·d[t,b]·s·Σ_e qw·qx, the
// block sums exact integers and the rest summed in float64. x [T, Cols],
// y [T, Rows]; m.Cols % 64 == 0.
func MatMulNF4Int8(y, x []float32, m *kernels.NF4Matrix, T int) {
	if m.Cols%kernels.NF4BlockSize != 0 {
		panic("ref: MatMulNF4Int8 needs whole 64-element blocks per row")
	}
	qc, s := kernels.Int8Code(&m.Code)
	nb := m.Cols / kernels.NF4BlockSize
	qx := make([]int8, m.Cols)
	dx := make([]float32, nb)
	for t := range T {
		kernels.QuantizeBlocksInt8(qx, dx, x[t*m.Cols:(t+1)*m.Cols])
		for r := range m.Rows {
			var acc float64
			for b := range nb {
				var isum int32
				for e := range kernels.NF4BlockSize {
					i := r*m.Cols + b*kernels.NF4BlockSize + e
					nib := m.Packed[i/2]
					if i%2 == 0 {
						nib >>= 4
					}
					isum += int32(qc[nib&0x0F]) * int32(qx[b*kernels.NF4BlockSize+e])
				}
				acc += float64(m.Absmax[r*nb+b]) * float64(dx[b]) * float64(s) * float64(isum)
			}
			y[t*m.Rows+r] = float32(acc)
		}
	}
}

// Int8Bound returns, for each y[t,r] of MatMulNF4Int8, the first-order bound
// on its distance from the exact product W·x (see the error note above),
// plus the float32 rounding of the exact sum. bound [T, Rows].
func Int8Bound(bound, x []float32, m *kernels.NF4Matrix, T int) {
	_, s := kernels.Int8Code(&m.Code)
	nb := m.Cols / kernels.NF4BlockSize
	for t := range T {
		xt := x[t*m.Cols : (t+1)*m.Cols]
		for r := range m.Rows {
			var total float64
			for b := range nb {
				var amaxX, sumX, sumW float64
				for e := range kernels.NF4BlockSize {
					c := b*kernels.NF4BlockSize + e
					amaxX = math.Max(amaxX, math.Abs(float64(xt[c])))
					sumX += math.Abs(float64(xt[c]))
					sumW += math.Abs(float64(NF4Element(m, r*m.Cols+c)))
				}
				a := float64(m.Absmax[r*nb+b])
				d := amaxX / 127
				// half a code step on every weight, half an activation step
				// on every x, and the product of the two.
				total += a*float64(s)/2*(sumX+64*d/2) + d/2*sumW
				total += 1e-6 * a * sumX // float32 rounding of the exact terms
			}
			bound[t*m.Rows+r] = float32(total)
		}
	}
}

// MatMulQ8Int8 is y[t,:] = W·x[t,:] for a Q8 weight with x quantized per
// 64-element block (kernels.QuantizeBlocksInt8): each 32-element weight
// block's integer sum scaled by its scale and the activation block's.
// m.Cols % 64 == 0. The error against the exact product is at most half an
// activation step on every weight: Σ_b d_b/2·Σ_e|w_e|.
func MatMulQ8Int8(y, x []float32, m *kernels.Q8Matrix, T int) {
	if m.Cols%kernels.NF4BlockSize != 0 {
		panic("ref: MatMulQ8Int8 needs whole 64-element blocks per row")
	}
	nb := m.Cols / kernels.NF4BlockSize
	qx := make([]int8, m.Cols)
	dx := make([]float32, nb)
	for t := range T {
		kernels.QuantizeBlocksInt8(qx, dx, x[t*m.Cols:(t+1)*m.Cols])
		for r := range m.Rows {
			var acc float64
			for c0 := 0; c0 < m.Cols; c0 += kernels.Q8BlockSize {
				var isum int32
				for c := c0; c < c0+kernels.Q8BlockSize; c++ {
					isum += int32(m.Q[r*m.Cols+c]) * int32(qx[c])
				}
				acc += float64(m.Scale[(r*m.Cols+c0)/kernels.Q8BlockSize]) * float64(dx[c0/kernels.NF4BlockSize]) * float64(isum)
			}
			y[t*m.Rows+r] = float32(acc)
		}
	}
}
