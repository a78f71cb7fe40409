// Package kerneltest compares a kernels.Backend op by op against
// kernels/ref, the specification, on random inputs over a table of shapes
// (odd sizes, partial NF4 blocks, batches, grouped-query attention). Any
// backend's tests call Run; the helpers serve fuzz tests.
//
// Tolerances come from float32 rounding: a backend may sum in any order, and
// reordering a float32 sum of terms a_i changes it by at most about
// n·2⁻²⁴·Σ|a_i|, so sums are checked against 1e-5·Σ|a_i| (computed by the
// reference on |W| and |x|). Elementwise ops are checked to a few ulp.
package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// SumTol is the tolerance of a reduction relative to Σ|terms|.
const SumTol = 1e-5

// sentinelBits (a NaN with a payload) fills the padding after every output,
// which no op may touch.
const sentinelBits = 0x7fc0beef

// Run compares every op of b against ref. The BF16 and Q8 weight kinds are
// skipped, saying so, for a backend that does not support them
// (kernels.CheckMatrix).
func Run(t *testing.T, b kernels.Backend) {
	t.Run("MatMulNF4", func(t *testing.T) { testMatMul(t, b, true) })
	t.Run("MatMulF32", func(t *testing.T) { testMatMul(t, b, false) })
	t.Run("MatMulBF16", func(t *testing.T) { testMatMulBF16Q8(t, b, false) })
	t.Run("MatMulQ8", func(t *testing.T) { testMatMulBF16Q8(t, b, true) })
	t.Run("EmbedBF16Q8", func(t *testing.T) { testEmbedBF16Q8(t, b) })
	t.Run("Embed", func(t *testing.T) { testEmbed(t, b) })
	t.Run("RMSNorm", func(t *testing.T) { testRMSNorm(t, b) })
	t.Run("RoPE", func(t *testing.T) { testRoPE(t, b) })
	t.Run("Attention", func(t *testing.T) { testAttention(t, b) })
	t.Run("SiLUMul", func(t *testing.T) { testSiLUMul(t, b) })
	t.Run("Add", func(t *testing.T) { testAdd(t, b) })
}

// Vec returns n normally distributed floats that start at an odd offset of
// a larger allocation, so that kernels cannot rely on alignment.
func Vec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n+1)[1:]
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// out returns an n-float output (at an odd offset) followed by 3 sentinels.
func out(n int) []float32 {
	buf := make([]float32, n+4)[1:]
	for i := range buf {
		buf[i] = math.Float32frombits(sentinelBits)
	}
	return buf
}

// checkPadding fails if anything after the first n floats of buf was written.
func checkPadding(t *testing.T, what string, buf []float32, n int) {
	t.Helper()
	for i := n; i < len(buf); i++ {
		if math.Float32bits(buf[i]) != sentinelBits {
			t.Fatalf("%s: wrote past its output, at [%d] of %d", what, i, n)
		}
	}
}

// NF4 returns a rows×cols NF4 matrix with random nibbles, scales in
// [0.01, 2) and code book code.
func NF4(rng *rand.Rand, rows, cols int, code [16]float32) *kernels.NF4Matrix {
	n := rows * cols
	m := &kernels.NF4Matrix{
		Rows: rows, Cols: cols,
		Packed: make([]byte, (n+1)/2),
		Absmax: make([]float32, (n+kernels.NF4BlockSize-1)/kernels.NF4BlockSize),
		Code:   code,
	}
	for i := range m.Packed {
		m.Packed[i] = byte(rng.UintN(256))
	}
	for i := range m.Absmax {
		m.Absmax[i] = 0.01 + 1.99*rng.Float32()
	}
	return m
}

// F32 returns a rows×cols matrix of normally distributed floats.
func F32(rng *rand.Rand, rows, cols int) *kernels.F32Matrix {
	return &kernels.F32Matrix{Rows: rows, Cols: cols, Data: Vec(rng, rows*cols)}
}

func abs(v []float32) []float32 {
	a := make([]float32, len(v))
	for i, x := range v {
		a[i] = float32(math.Abs(float64(x)))
	}
	return a
}

// absMatrix returns |W|.
func absMatrix(w kernels.Matrix) kernels.Matrix {
	switch m := w.(type) {
	case *kernels.F32Matrix:
		return &kernels.F32Matrix{Rows: m.Rows, Cols: m.Cols, Data: abs(m.Data)}
	case *kernels.NF4Matrix:
		a := *m
		copy(a.Code[:], abs(m.Code[:]))
		a.Absmax = abs(m.Absmax)
		return &a
	case *kernels.BF16Matrix, *kernels.Q8Matrix:
		return absDense(m)
	}
	panic(fmt.Sprintf("kerneltest: matrix type %T", w))
}

// MatMulMismatch runs MatMul on b and ref and describes the first element
// that differs by more than SumTol·Σ_c|W[r,c]·x[t,c]|, or returns "".
func MatMulMismatch(b kernels.Backend, w kernels.Matrix, x []float32, T int) string {
	rows, _ := w.Shape()
	got := out(T * rows)
	b.MatMul(got, x, w, T)
	want := make([]float32, T*rows)
	ref.New().MatMul(want, x, w, T)
	bound := make([]float32, T*rows)
	ref.New().MatMul(bound, abs(x), absMatrix(w), T)
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= SumTol*float64(bound[i])) {
			return fmt.Sprintf("y[t=%d,r=%d] = %v, want %v (Σ|terms| %v)", i/rows, i%rows, got[i], want[i], bound[i])
		}
	}
	for i := T * rows; i < len(got); i++ {
		if math.Float32bits(got[i]) != sentinelBits {
			return fmt.Sprintf("wrote past y[%d]", T*rows)
		}
	}
	return ""
}

// fp4 is a code book that is not value-sorted, to catch a backend that
// ignores NF4Matrix.Code.
var fp4 = [16]float32{0, 0.0052083, 0.6666667, 1, 0.3333333, 0.5, 0.1666667, 0.25,
	0, -0.0052083, -0.6666667, -1, -0.3333333, -0.5, -0.1666667, -0.25}

func testMatMul(t *testing.T, b kernels.Backend, nf4 bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	type shape struct{ rows, cols int }
	var shapes []shape
	for _, rows := range []int{1, 2, 3, 5, 17, 33} {
		for _, cols := range []int{1, 2, 3, 31, 63, 64, 65, 96, 127, 128, 172, 200, 256, 300, 520} {
			shapes = append(shapes, shape{rows, cols})
		}
	}
	// Large enough to be split across workers.
	shapes = append(shapes, shape{1100, 96}, shape{300, 2048}, shape{97, 1000}, shape{64, 172})
	for _, s := range shapes {
		var w kernels.Matrix
		if nf4 {
			code := kernels.NF4Code
			if s.rows%2 == 0 {
				code = fp4
			}
			w = NF4(rng, s.rows, s.cols, code)
		} else {
			w = F32(rng, s.rows, s.cols)
		}
		for _, T := range []int{1, 2, 3, 4, 5, 7, 8, 9} {
			if s.rows*s.cols*T > 1<<21 && T > 3 {
				continue // keeps the reference quick
			}
			if msg := MatMulMismatch(b, w, Vec(rng, T*s.cols), T); msg != "" {
				t.Fatalf("[%d,%d] T=%d: %s", s.rows, s.cols, T, msg)
			}
		}
	}
}

func exact(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
	checkPadding(t, what, got, len(want))
}

// near checks |got-want| <= rtol·|want| + atol elementwise.
func near(t *testing.T, what string, got, want []float32, rtol, atol float64) {
	t.Helper()
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if !(math.Abs(g-w) <= rtol*math.Abs(w)+atol) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
	checkPadding(t, what, got, len(want))
}

func testEmbed(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][2]int{{1, 1}, {5, 3}, {7, 64}, {11, 100}, {40, 172}} {
		vocab, dim := s[0], s[1]
		ids := make([]int32, 9)
		for i := range ids {
			ids[i] = int32(rng.IntN(vocab))
		}
		for _, w := range []kernels.Matrix{F32(rng, vocab, dim), NF4(rng, vocab, dim, kernels.NF4Code)} {
			got := out(len(ids) * dim)
			b.Embed(got, w, ids)
			want := make([]float32, len(ids)*dim)
			ref.New().Embed(want, w, ids)
			exact(t, fmt.Sprintf("embed %T [%d,%d]", w, vocab, dim), got, want)
		}
	}
}

func testRMSNorm(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, dim := range []int{1, 3, 64, 2048, 5000} {
		for _, T := range []int{1, 3, 7, 40} {
			x, w := Vec(rng, T*dim), Vec(rng, dim)
			want := make([]float32, T*dim)
			ref.New().RMSNorm(want, x, w, 1e-5)
			got := out(T * dim)
			b.RMSNorm(got, x, w, 1e-5)
			what := fmt.Sprintf("rmsnorm dim %d T %d", dim, T)
			near(t, what, got, want, 1e-5, 1e-30)
			b.RMSNorm(x, x, w, 1e-5) // in place
			near(t, what+" in place", x, want, 1e-5, 1e-30)
		}
	}
}

func testRoPE(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, nHeads := range []int{1, 3, 8, 32} {
		for _, hd := range []int{2, 8, 64} {
			for _, T := range []int{1, 3, 7, 64} {
				pos := make([]int32, T)
				for i := range pos {
					pos[i] = int32(rng.IntN(10000))
				}
				invFreq := make([]float32, hd/2)
				for i := range invFreq {
					invFreq[i] = float32(math.Pow(10000, -2*float64(i)/float64(hd)))
				}
				x := Vec(rng, T*nHeads*hd)
				want := append([]float32(nil), x...)
				ref.New().RoPE(want, pos, nHeads, hd, invFreq)
				got := out(len(x))
				copy(got, x)
				b.RoPE(got[:len(x)], pos, nHeads, hd, invFreq)
				// Each output is x0·cos ± x1·sin: a few ulp of |x0|+|x1| ≤ 2·max|x|.
				near(t, fmt.Sprintf("rope heads %d dim %d T %d", nHeads, hd, T), got, want, 1e-6, 1e-6)
			}
		}
	}
}

func testAttention(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(9, 10))
	heads := [][2]int{{1, 1}, {2, 1}, {3, 3}, {4, 2}, {4, 1}, {6, 3}, {8, 2}, {12, 3}, {5, 5}}
	for _, h := range heads {
		nHeads, nKV := h[0], h[1]
		for _, hd := range []int{1, 6, 16, 64} {
			for _, T := range []int{1, 3, 7} {
				for _, start := range []int{0, 1, 17, 200} {
					kvDim := nKV * hd
					cap := start + T + 3 // the cache has room beyond Len
					k, v := Vec(rng, cap*kvDim), Vec(rng, cap*kvDim)
					kv := make([]kernels.KVRef, T)
					for i := range kv {
						kv[i] = kernels.KVRef{K: k, V: v, Len: start + i + 1} // causal
					}
					q := Vec(rng, T*nHeads*hd)
					for i := range q {
						q[i] *= 3 // sharper softmax
					}
					want := make([]float32, len(q))
					ref.New().Attention(want, q, kv, nHeads, nKV, hd)
					got := out(len(q))
					b.Attention(got, q, kv, nHeads, nKV, hd)
					// The output is a convex combination of V rows.
					maxV := 0.0
					for _, x := range v {
						maxV = math.Max(maxV, math.Abs(float64(x)))
					}
					near(t, fmt.Sprintf("attention heads %d/%d dim %d T %d start %d", nHeads, nKV, hd, T, start),
						got, want, 0, 2*SumTol*maxV)
				}
			}
		}
	}
	// Len 0 gives zeros.
	got := out(4)
	b.Attention(got, Vec(rng, 4), []kernels.KVRef{{Len: 0}}, 2, 1, 2)
	exact(t, "attention Len 0", got, make([]float32, 4))
}

func testSiLUMul(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{1, 7, 1000, 50000} {
		gate, up := Vec(rng, n), Vec(rng, n)
		for i := range gate {
			gate[i] *= 8
		}
		gate[0] = -100 // exp overflow side
		if n > 1 {
			gate[1] = 100
		}
		want := make([]float32, n)
		ref.New().SiLUMul(want, gate, up)
		got := out(n)
		b.SiLUMul(got, gate, up)
		near(t, fmt.Sprintf("silumul n %d", n), got, want, 1e-6, 1e-30)
		b.SiLUMul(gate, gate, up) // in place
		near(t, fmt.Sprintf("silumul n %d in place", n), gate, want, 1e-6, 1e-30)
	}
}

func testAdd(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, n := range []int{0, 1, 7, 1000, 50000} {
		dst, src := Vec(rng, n), Vec(rng, n)
		want := append([]float32(nil), dst...)
		ref.New().Add(want, src)
		got := out(n)
		copy(got, dst)
		b.Add(got[:n], src)
		exact(t, fmt.Sprintf("add n %d", n), got, want)
	}
}
