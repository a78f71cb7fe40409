package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// BF16 returns a rows×cols bfloat16 matrix of normally distributed values
// whose data starts at an odd element of a larger allocation.
func BF16(rng *rand.Rand, rows, cols int) *kernels.BF16Matrix {
	d := make([]uint16, rows*cols+1)[1:]
	for i := range d {
		d[i] = kernels.F32ToBF16(float32(rng.NormFloat64()))
	}
	return &kernels.BF16Matrix{Rows: rows, Cols: cols, Data: d}
}

// Q8 returns a rows×cols Q8 matrix (cols a multiple of 32) with random
// codes in [-127, 127] and scales in [0.001, 0.03), its buffers at odd
// offsets of larger allocations.
func Q8(rng *rand.Rand, rows, cols int) *kernels.Q8Matrix {
	n := rows * cols
	m := &kernels.Q8Matrix{Rows: rows, Cols: cols,
		Q: make([]int8, n+1)[1:], Scale: make([]float32, n/kernels.Q8BlockSize+1)[1:]}
	for i := range m.Q {
		m.Q[i] = int8(rng.IntN(255) - 127)
	}
	for i := range m.Scale {
		m.Scale[i] = 0.001 + 0.029*rng.Float32()
	}
	return m
}

// absDense returns |W| as a dense float32 matrix, through ref.
func absDense(w kernels.Matrix) *kernels.F32Matrix {
	rows, cols := w.Shape()
	d := &kernels.F32Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			d.Data[r*cols+c] = float32(math.Abs(float64(ref.Element(w, r, c))))
		}
	}
	return d
}

// supported skips t (saying so) when b cannot run w's kind at all.
func supported(t *testing.T, b kernels.Backend, w kernels.Matrix) {
	t.Helper()
	if err := kernels.CheckMatrix(b, w); err != nil {
		t.Skipf("backend %s: %v", b.Name(), err)
	}
}

// testMatMulBF16Q8 runs MatMul over odd shapes (any Cols for BF16, whole
// blocks for Q8), T = 1..9, and shapes large enough to be split across
// workers.
func testMatMulBF16Q8(t *testing.T, b kernels.Backend, q8 bool) {
	rng := rand.New(rand.NewPCG(21, 22))
	colsList := []int{1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 300, 520}
	if q8 {
		colsList = []int{32, 64, 96, 128, 160, 224, 288, 512, 544}
	}
	type shape struct{ rows, cols int }
	var shapes []shape
	for _, rows := range []int{1, 2, 3, 4, 5, 17, 33} {
		for _, cols := range colsList {
			shapes = append(shapes, shape{rows, cols})
		}
	}
	shapes = append(shapes, shape{1100, 96}, shape{300, 2048}, shape{97, 1024}, shape{64, 160})
	for _, s := range shapes {
		var w kernels.Matrix
		if q8 {
			w = Q8(rng, s.rows, s.cols)
		} else {
			w = BF16(rng, s.rows, s.cols)
		}
		supported(t, b, w)
		for T := 1; T <= 9; T++ {
			if s.rows*s.cols*T > 1<<21 && T > 3 {
				continue // keeps the reference quick
			}
			if msg := MatMulMismatch(b, w, Vec(rng, T*s.cols), T); msg != "" {
				t.Fatalf("%T [%d,%d] T=%d: %s", w, s.rows, s.cols, T, msg)
			}
		}
	}
	// One large T, through the prefill path.
	w := kernels.Matrix(BF16(rng, 70, 300))
	if q8 {
		w = Q8(rng, 70, 320)
	}
	_, cols := w.Shape()
	if msg := MatMulMismatch(b, w, Vec(rng, 40*cols), 40); msg != "" {
		t.Fatalf("%T T=40: %s", w, msg)
	}
}

// testEmbedBF16Q8: Embed must give ref's rows exactly.
func testEmbedBF16Q8(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(23, 24))
	m := newMem(t, b)
	for _, s := range [][2]int{{1, 32}, {5, 64}, {7, 96}, {11, 160}, {40, 2048}} {
		vocab, dim := s[0], s[1]
		ids := make([]int32, 9)
		for i := range ids {
			ids[i] = int32(rng.IntN(vocab))
		}
		ws := []kernels.Matrix{Q8(rng, vocab, dim), BF16(rng, vocab, dim), BF16(rng, vocab, dim-s[0]%3)}
		for _, w := range ws {
			supported(t, b, w)
			_, cols := w.Shape()
			what := fmt.Sprintf("embed %T [%d,%d]", w, vocab, cols)
			got := m.out(len(ids) * cols)
			b.Embed(got.buf(), m.upload(w), m.inInts(ids))
			want := make([]float32, len(ids)*cols)
			rb.Embed(hb(want), w, hi(ids))
			exact(t, what, m.read(what, got), want)
			m.reset()
		}
	}
}
