package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// The training ops are compared with kernels/ref (whose backward ops are
// checked against finite differences there). Sums may be reordered, so a
// reduction is allowed 1e-5 of the sum of its absolute terms (as in
// kerneltest), elementwise results a few float32 ulps.

func absSlice(v []float32) []float32 {
	a := make([]float32, len(v))
	for i, x := range v {
		a[i] = float32(math.Abs(float64(x)))
	}
	return a
}

// absW is |W| as a dense float32 matrix.
func absW(w kernels.Matrix) kernels.Matrix {
	rows, cols := w.Shape()
	a := &kernels.F32Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			a.Data[r*cols+c] = float32(math.Abs(float64(ref.Element(w, r, c))))
		}
	}
	return a
}

// within fails at the first i with |got−want| > rel·tol[i], or with tol nil
// > rel·max(max|want|, 1): the inputs are O(1), so that is the size of the
// terms even where they cancel to a small result.
func within(t *testing.T, what string, got, want, tol []float32, rel float64) {
	t.Helper()
	scale := 1.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	for i := range want {
		lim := rel * scale
		if tol != nil {
			lim = rel * float64(tol[i])
		}
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= lim) {
			t.Fatalf("%s[%d] = %v, want %v (|diff| %.3g > %.3g)", what, i, got[i], want[i], d, lim)
		}
	}
}

// sentinel returns n floats followed by 3 NaN sentinels; padded checks them.
func sentinel(n int) []float32 {
	buf := make([]float32, n+4)[1:]
	for i := range buf {
		buf[i] = float32(math.NaN())
	}
	return buf
}

func padded(t *testing.T, what string, buf []float32, n int) {
	t.Helper()
	for i := n; i < len(buf); i++ {
		if !math.IsNaN(float64(buf[i])) {
			t.Fatalf("%s: wrote past its output at [%d] of %d", what, i, n)
		}
	}
}

func matMulTMismatch(t *testing.T, b *Backend, w kernels.Matrix, dy []float32, T, tile int) {
	t.Helper()
	_, cols := w.Shape()
	got := sentinel(T * cols)
	b.matMulT(got, dy, w, T, tile)
	want, bound := make([]float32, T*cols), make([]float32, T*cols)
	ref.New().(ref.Backend).MatMulT(want, dy, w, T)
	ref.New().(ref.Backend).MatMulT(bound, absSlice(dy), absW(w), T)
	within(t, fmt.Sprintf("MatMulT %T T=%d", w, T), got[:T*cols], want, bound, kerneltest.SumTol)
	padded(t, "MatMulT", got, T*cols)
}

func TestMatMulTAgainstRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 1))
	for _, b := range variants(t) {
		for _, c := range []struct{ rows, cols, T int }{
			{1, 1, 1}, {5, 7, 3}, {3, 50, 2}, {64, 64, 9}, {7, 200, 5}, {130, 97, 17}, {33, 300, 4}, {9, 96, 3},
		} {
			for _, tile := range []int{tileFloats, 1} { // 1: one row of W per tile
				dy := kerneltest.Vec(rng, c.T*c.rows)
				matMulTMismatch(t, b, kerneltest.F32(rng, c.rows, c.cols), dy, c.T, tile)
				matMulTMismatch(t, b, kerneltest.NF4(rng, c.rows, c.cols, kernels.NF4Code), dy, c.T, tile)
				matMulTMismatch(t, b, kerneltest.BF16(rng, c.rows, c.cols), dy, c.T, tile)
				if c.cols%kernels.Q8BlockSize == 0 {
					matMulTMismatch(t, b, kerneltest.Q8(rng, c.rows, c.cols), dy, c.T, tile)
				}
			}
		}
	}
}

func FuzzMatMulT(f *testing.F) {
	f.Add(uint8(3), uint16(70), uint8(2), true, uint64(1))
	f.Add(uint8(1), uint16(1), uint8(1), false, uint64(2))
	b := New(3)
	defer b.Close()
	f.Fuzz(func(t *testing.T, rows uint8, cols uint16, T uint8, nf4 bool, seed uint64) {
		r, c, n := int(rows%40)+1, int(cols%300)+1, int(T%12)+1
		rng := rand.New(rand.NewPCG(seed, 3))
		var w kernels.Matrix = kerneltest.F32(rng, r, c)
		if nf4 {
			w = kerneltest.NF4(rng, r, c, kernels.NF4Code)
		}
		matMulTMismatch(t, b, w, kerneltest.Vec(rng, n*r), n, 1)
	})
}

// rmsTerms bounds the magnitude of the two terms of RMSNormBackward, which
// can cancel: |s·w·dy| + s³/n·|x|·Σ|dy·w·x|.
func rmsTerms(dy, x, w []float32, eps float64) []float32 {
	n := len(w)
	b := make([]float32, len(x))
	for t := 0; t < len(x)/n; t++ {
		var ss, sum float64
		for i := 0; i < n; i++ {
			v := float64(x[t*n+i])
			ss += v * v
			sum += math.Abs(float64(dy[t*n+i]) * float64(w[i]) * v)
		}
		s := 1 / math.Sqrt(ss/float64(n)+eps)
		for i := 0; i < n; i++ {
			b[t*n+i] = float32(math.Abs(s*float64(w[i]*dy[t*n+i])) + s*s*s/float64(n)*sum*math.Abs(float64(x[t*n+i])))
		}
	}
	return b
}

// siluTerms bounds the terms of dgate = dout·up·σ·(1 + g·(1−σ)), whose
// bracket cancels near g ≈ −1.28.
func siluTerms(dout, gate, up []float32) []float32 {
	b := make([]float32, len(gate))
	for i, g := range gate {
		sig := 1 / (1 + math.Exp(-float64(g)))
		b[i] = float32(math.Abs(float64(dout[i]*up[i])*sig) * (1 + math.Abs(float64(g))*(1-sig)))
	}
	return b
}

func TestRMSNormRoPESiLUBackwardAgainstRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	rb := ref.Backend{}
	for _, b := range variants(t) {
		for _, n := range []int{1, 7, 64, 130} {
			const T = 5
			x, dy, w := kerneltest.Vec(rng, T*n), kerneltest.Vec(rng, T*n), kerneltest.Vec(rng, n)
			got, want := sentinel(T*n), make([]float32, T*n)
			b.RMSNormBackward(got, dy, x, w, 1e-5)
			rb.RMSNormBackward(want, dy, x, w, 1e-5)
			within(t, "RMSNormBackward", got[:T*n], want, rmsTerms(dy, x, w, 1e-5), 1e-5)
			padded(t, "RMSNormBackward", got, T*n)

			gate, up := kerneltest.Vec(rng, T*n), kerneltest.Vec(rng, T*n)
			gate[0] = 30 // saturated sigmoid
			dg, du := sentinel(T*n), sentinel(T*n)
			wg, wu := make([]float32, T*n), make([]float32, T*n)
			b.SiLUMulBackward(dg[:T*n], du[:T*n], dy, gate, up)
			rb.SiLUMulBackward(wg, wu, dy, gate, up)
			within(t, "SiLUMulBackward dgate", dg[:T*n], wg, siluTerms(dy, gate, up), 1e-6)
			within(t, "SiLUMulBackward dup", du[:T*n], wu, absSlice(wu), 1e-6)
			padded(t, "SiLUMulBackward dgate", dg, T*n)
			padded(t, "SiLUMulBackward dup", du, T*n)
		}
		for _, c := range []struct{ nHeads, headDim int }{{1, 2}, {3, 8}, {4, 64}} {
			pos := []int32{0, 1, 5, 100, 4000}
			inv := make([]float32, c.headDim/2)
			for i := range inv {
				inv[i] = float32(math.Pow(500000, -2*float64(i)/float64(c.headDim)))
			}
			n := len(pos) * c.nHeads * c.headDim
			dx := kerneltest.Vec(rng, n)
			got, want := append([]float32(nil), dx...), append([]float32(nil), dx...)
			b.RoPEBackward(got, pos, c.nHeads, c.headDim, inv)
			rb.RoPEBackward(want, pos, c.nHeads, c.headDim, inv)
			within(t, "RoPEBackward", got, want, nil, 1e-6)
		}
	}
}

func TestAttentionTrainAgainstRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	rb := ref.Backend{}
	for _, b := range variants(t) {
		for _, c := range []struct{ B, T, nHeads, nKVHeads, headDim int }{
			{1, 1, 1, 1, 2}, {2, 7, 4, 2, 8}, {3, 5, 6, 3, 5}, {1, 33, 8, 2, 16}, {2, 4, 4, 1, 64},
		} {
			N, qd, kd := c.B*c.T, c.nHeads*c.headDim, c.nKVHeads*c.headDim
			q, k, v := kerneltest.Vec(rng, N*qd), kerneltest.Vec(rng, N*kd), kerneltest.Vec(rng, N*kd)
			out, lse := sentinel(N*qd), sentinel(N*c.nHeads)
			wout, wlse := make([]float32, N*qd), make([]float32, N*c.nHeads)
			b.AttentionForwardTrain(out, lse, q, k, v, c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
			rb.AttentionForwardTrain(wout, wlse, q, k, v, c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
			within(t, "AttentionForwardTrain out", out[:N*qd], wout, nil, 1e-5)
			within(t, "AttentionForwardTrain lse", lse[:N*c.nHeads], wlse, nil, 1e-6)
			padded(t, "AttentionForwardTrain out", out, N*qd)
			padded(t, "AttentionForwardTrain lse", lse, N*c.nHeads)

			dout := kerneltest.Vec(rng, N*qd)
			dq, dk, dv := sentinel(N*qd), sentinel(N*kd), sentinel(N*kd)
			for _, s := range [][]float32{dq, dk, dv} {
				copy(s, kerneltest.Vec(rng, len(s)-3)) // stale values must be overwritten
			}
			wq, wk, wv := make([]float32, N*qd), make([]float32, N*kd), make([]float32, N*kd)
			b.AttentionBackward(dq, dk, dv, dout, wout, wlse, q, k, v, c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
			rb.AttentionBackward(wq, wk, wv, dout, wout, wlse, q, k, v, c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
			within(t, "AttentionBackward dq", dq[:N*qd], wq, nil, 1e-5)
			within(t, "AttentionBackward dk", dk[:N*kd], wk, nil, 1e-5)
			within(t, "AttentionBackward dv", dv[:N*kd], wv, nil, 1e-5)
			padded(t, "AttentionBackward dq", dq, N*qd)
			padded(t, "AttentionBackward dk", dk, N*kd)
			padded(t, "AttentionBackward dv", dv, N*kd)
		}
	}
}

func TestCrossEntropyAgainstRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	rb := ref.Backend{}
	for _, b := range variants(t) {
		for _, V := range []int{1, 2, 37, 1000} {
			const T = 6
			logits := kerneltest.Vec(rng, T*V)
			for i := range logits {
				logits[i] *= 4
			}
			labels := make([]int32, T)
			for i := range labels {
				labels[i] = int32(rng.IntN(V))
			}
			labels[2] = kernels.IgnoreIndex
			const scale = float32(1.0 / 7)
			loss, dl := sentinel(T), sentinel(T*V)
			wl, wd := make([]float32, T), make([]float32, T*V)
			b.CrossEntropy(loss, dl, logits, labels, scale)
			rb.CrossEntropy(wl, wd, logits, labels, scale)
			within(t, "CrossEntropy loss", loss[:T], wl, nil, 1e-6)
			within(t, "CrossEntropy dlogits", dl[:T*V], wd, nil, 1e-6)
			padded(t, "CrossEntropy loss", loss, T)
			padded(t, "CrossEntropy dlogits", dl, T*V)
			// In place.
			inPlace := append([]float32(nil), logits...)
			b.CrossEntropy(loss, inPlace, inPlace, labels, scale)
			within(t, "CrossEntropy in place", inPlace, dl[:T*V], nil, 0)
		}
	}
}

func TestLoRATrainAgainstRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 1))
	rb := ref.Backend{}
	for _, b := range variants(t) {
		for _, c := range []struct{ T, in, out, rank int }{
			{1, 1, 1, 1}, {3, 5, 4, 2}, {17, 64, 40, 8}, {40, 33, 130, 16},
		} {
			const scale = float32(2)
			x, a, bm := kerneltest.Vec(rng, c.T*c.in), kerneltest.Vec(rng, c.rank*c.in), kerneltest.Vec(rng, c.out*c.rank)
			y0 := kerneltest.Vec(rng, c.T*c.out)
			y, wy := append([]float32(nil), y0...), append([]float32(nil), y0...)
			z, wz := sentinel(c.T*c.rank), make([]float32, c.T*c.rank)
			b.LoRAForward(y, z, x, a, bm, c.T, c.in, c.out, c.rank, scale)
			rb.LoRAForward(wy, wz, x, a, bm, c.T, c.in, c.out, c.rank, scale)
			within(t, "LoRAForward z", z[:c.T*c.rank], wz, nil, 1e-5)
			within(t, "LoRAForward y", y, wy, nil, 1e-5)
			padded(t, "LoRAForward z", z, c.T*c.rank)

			dy := kerneltest.Vec(rng, c.T*c.out)
			dA0, dB0, dx0 := kerneltest.Vec(rng, c.rank*c.in), kerneltest.Vec(rng, c.out*c.rank), kerneltest.Vec(rng, c.T*c.in)
			cp := func(v []float32) []float32 { return append([]float32(nil), v...) }
			dA, dB, dx := cp(dA0), cp(dB0), cp(dx0)
			wA, wB, wx := cp(dA0), cp(dB0), cp(dx0)
			b.LoRABackward(dA, dB, dx, x, wz, dy, a, bm, c.T, c.in, c.out, c.rank, scale)
			rb.LoRABackward(wA, wB, wx, x, wz, dy, a, bm, c.T, c.in, c.out, c.rank, scale)
			within(t, "LoRABackward dA", dA, wA, nil, 1e-5)
			within(t, "LoRABackward dB", dB, wB, nil, 1e-5)
			within(t, "LoRABackward dx", dx, wx, nil, 1e-5)
		}
	}
}

func FuzzAttentionTrain(f *testing.F) {
	f.Add(uint8(2), uint8(5), uint8(2), uint8(2), uint8(4), uint64(1))
	f.Add(uint8(1), uint8(1), uint8(1), uint8(1), uint8(1), uint64(2))
	b := New(3)
	defer b.Close()
	rb := ref.Backend{}
	f.Fuzz(func(t *testing.T, nb, nt, group, nkv, hd uint8, seed uint64) {
		B, T, kvh, d := int(nb%3)+1, int(nt%20)+1, int(nkv%3)+1, int(hd%20)+1
		h := kvh * (int(group%3) + 1)
		rng := rand.New(rand.NewPCG(seed, 5))
		N, qd, kd := B*T, h*d, kvh*d
		q, k, v, dout := kerneltest.Vec(rng, N*qd), kerneltest.Vec(rng, N*kd), kerneltest.Vec(rng, N*kd), kerneltest.Vec(rng, N*qd)
		out, lse, wout, wlse := make([]float32, N*qd), make([]float32, N*h), make([]float32, N*qd), make([]float32, N*h)
		b.AttentionForwardTrain(out, lse, q, k, v, B, T, h, kvh, d)
		rb.AttentionForwardTrain(wout, wlse, q, k, v, B, T, h, kvh, d)
		within(t, "out", out, wout, nil, 1e-5)
		within(t, "lse", lse, wlse, nil, 1e-5)
		dq, dk, dv := make([]float32, N*qd), make([]float32, N*kd), make([]float32, N*kd)
		wq, wk, wv := make([]float32, N*qd), make([]float32, N*kd), make([]float32, N*kd)
		b.AttentionBackward(dq, dk, dv, dout, wout, wlse, q, k, v, B, T, h, kvh, d)
		rb.AttentionBackward(wq, wk, wv, dout, wout, wlse, q, k, v, B, T, h, kvh, d)
		within(t, "dq", dq, wq, nil, 2e-5)
		within(t, "dk", dk, wk, nil, 2e-5)
		within(t, "dv", dv, wv, nil, 2e-5)
	})
}
