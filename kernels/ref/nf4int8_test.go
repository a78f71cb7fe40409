package ref

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

// TestInt8CodeNF4 pins the int8 code book of NF4 (127·code, rounded) and
// its scale.
func TestInt8CodeNF4(t *testing.T) {
	q, s := kernels.Int8Code(&kernels.NF4Code)
	want := [16]int8{-127, -88, -67, -50, -36, -23, -12, 0, 10, 20, 31, 43, 56, 71, 92, 127}
	if q != want || s != float32(1.0/127) {
		t.Fatalf("Int8Code(NF4) = %v, %g; want %v, 1/127", q, s, want)
	}
}

// TestQuantizeBlocksInt8 checks the rule on hand-made blocks: the largest
// magnitude maps to ±127, halves round away from zero, zeros give scale 0.
func TestQuantizeBlocksInt8(t *testing.T) {
	x := make([]float32, 128)
	x[0], x[1], x[2], x[3] = -2.54, 1.27, 0.01, 0.03 // d = 0.02: -127, 63.5 → 64, 0.5 → 1, 1.5 → 2
	q := make([]int8, 128)
	d := make([]float32, 2)
	kernels.QuantizeBlocksInt8(q, d, x)
	if d[0] != float32(2.54)/127 || d[1] != 0 {
		t.Fatalf("scales %v", d)
	}
	if q[0] != -127 || q[1] != 64 || q[2] != 1 || q[3] != 2 || q[64] != 0 {
		t.Fatalf("q = %v", q[:4])
	}
}

// TestMatMulNF4Int8WithinBound checks the documented error of the int8 path:
// every output is within Int8Bound of the exact product, and the bound is
// tight enough to mean something (under 1% of Σ|W·x| on random data).
func TestMatMulNF4Int8WithinBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const rows, cols, T = 40, 512, 3
	m := &kernels.NF4Matrix{Rows: rows, Cols: cols, Packed: make([]byte, rows*cols/2), Absmax: make([]float32, rows*cols/64), Code: kernels.NF4Code}
	for i := range m.Packed {
		m.Packed[i] = byte(rng.IntN(256))
	}
	for i := range m.Absmax {
		m.Absmax[i] = 0.01 + rng.Float32()
	}
	x := make([]float32, T*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	got, exact, bound := make([]float32, T*rows), make([]float32, T*rows), make([]float32, T*rows)
	MatMulNF4Int8(got, x, m, T)
	Backend{}.MatMul(kernels.HostBuf(exact), kernels.HostBuf(x), m, T)
	Int8Bound(bound, x, m, T)
	var worst, meanErr float64
	for i := range got {
		d := math.Abs(float64(got[i] - exact[i]))
		if d > float64(bound[i]) {
			t.Fatalf("y[%d] = %g, exact %g: |Δ| %g beyond the bound %g", i, got[i], exact[i], d, bound[i])
		}
		var sumAbs float64
		r, tok := i%rows, i/rows
		for c := range cols {
			sumAbs += math.Abs(float64(NF4Element(m, r*cols+c)) * float64(x[tok*cols+c]))
		}
		worst = math.Max(worst, float64(bound[i])/sumAbs)
		meanErr += d / sumAbs / float64(len(got))
	}
	t.Logf("bound up to %.3g of Σ|W·x|, mean error %.3g of it", worst, meanErr)
	if worst > 0.05 || meanErr > 0.002 {
		t.Fatalf("bound up to %.3g and mean error %.3g of Σ|W·x|: want under 0.05 and 0.002", worst, meanErr)
	}
}

// TestMatMulQ8Int8WithinBound: every output within half an activation step
// on every weight, Σ_b d_b/2·Σ|w|, of the exact Q8 product.
func TestMatMulQ8Int8WithinBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const rows, cols, T = 30, 256, 2
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	m, err := kernels.QuantizeQ8(w, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, T*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	got, exact := make([]float32, T*rows), make([]float32, T*rows)
	MatMulQ8Int8(got, x, m, T)
	Backend{}.MatMul(kernels.HostBuf(exact), kernels.HostBuf(x), m, T)
	for i := range got {
		tok, r := i/rows, i%rows
		var bound float64
		for b := range cols / 64 {
			var amax, sumW, sumX float64
			for e := range 64 {
				c := 64*b + e
				amax = math.Max(amax, math.Abs(float64(x[tok*cols+c])))
				sumW += math.Abs(float64(Q8Element(m, r*cols+c)))
				sumX += math.Abs(float64(Q8Element(m, r*cols+c)) * float64(x[tok*cols+c]))
			}
			bound += amax/127/2*sumW + 1e-6*sumX
		}
		if d := math.Abs(float64(got[i] - exact[i])); d > bound {
			t.Fatalf("y[%d] = %g, exact %g: |Δ| %g beyond %g", i, got[i], exact[i], d, bound)
		}
	}
}
