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

// kerneltest.RunTrain (from TestAgainstRef) compares every training op
// with kernels/ref, whose backward ops are checked against finite
// differences there. Here: MatMulT with the smallest tiles (one row of W
// at a time, so that the tiles' products are summed), and fuzzers. Sums may
// be reordered, so a reduction is allowed 1e-5 of the sum of its absolute
// terms (as in kerneltest), elementwise results a few float32 ulps.

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
	ref.Backend{}.MatMulT(kernels.HostBuf(want), kernels.HostBuf(dy), w, T)
	ref.Backend{}.MatMulT(kernels.HostBuf(bound), kernels.HostBuf(absSlice(dy)), absW(w), T)
	within(t, fmt.Sprintf("MatMulT %T T=%d", w, T), got[:T*cols], want, bound, kerneltest.SumTol)
	padded(t, "MatMulT", got, T*cols)
}

func TestMatMulTAgainstRef(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 1))
	for _, b := range variants(t) {
		for _, c := range []struct{ rows, cols, T int }{
			{1, 1, 1}, {5, 7, 3}, {3, 50, 2}, {64, 64, 9}, {7, 200, 5}, {130, 97, 17}, {33, 300, 4}, {9, 96, 3}, {600, 40, 13},
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

func FuzzAttentionTrain(f *testing.F) {
	f.Add(uint8(2), uint8(5), uint8(2), uint8(2), uint8(4), uint64(1))
	f.Add(uint8(1), uint8(1), uint8(1), uint8(1), uint8(1), uint64(2))
	b := New(3)
	defer b.Close()
	rb := ref.Backend{}
	hb := kernels.HostBuf
	f.Fuzz(func(t *testing.T, nb, nt, group, nkv, hd uint8, seed uint64) {
		B, T, kvh, d := int(nb%3)+1, int(nt%20)+1, int(nkv%3)+1, int(hd%20)+1
		h := kvh * (int(group%3) + 1)
		rng := rand.New(rand.NewPCG(seed, 5))
		N, qd, kd := B*T, h*d, kvh*d
		q, k, v, dout := kerneltest.Vec(rng, N*qd), kerneltest.Vec(rng, N*kd), kerneltest.Vec(rng, N*kd), kerneltest.Vec(rng, N*qd)
		out, lse, wout, wlse := make([]float32, N*qd), make([]float32, N*h), make([]float32, N*qd), make([]float32, N*h)
		b.AttentionForwardTrain(hb(out), hb(lse), hb(q), hb(k), hb(v), B, T, h, kvh, d)
		rb.AttentionForwardTrain(hb(wout), hb(wlse), hb(q), hb(k), hb(v), B, T, h, kvh, d)
		within(t, "out", out, wout, nil, 1e-5)
		within(t, "lse", lse, wlse, nil, 1e-5)
		dq, dk, dv := make([]float32, N*qd), make([]float32, N*kd), make([]float32, N*kd)
		wq, wk, wv := make([]float32, N*qd), make([]float32, N*kd), make([]float32, N*kd)
		b.AttentionBackward(hb(dq), hb(dk), hb(dv), hb(dout), hb(wout), hb(wlse), hb(q), hb(k), hb(v), B, T, h, kvh, d)
		rb.AttentionBackward(hb(wq), hb(wk), hb(wv), hb(dout), hb(wout), hb(wlse), hb(q), hb(k), hb(v), B, T, h, kvh, d)
		within(t, "dq", dq, wq, nil, 2e-5)
		within(t, "dk", dk, wk, nil, 2e-5)
		within(t, "dv", dv, wv, nil, 2e-5)
	})
}
