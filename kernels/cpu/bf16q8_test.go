package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
)

func TestBF16Q8Supported(t *testing.T) {
	b := newBackend(1, false)
	defer b.Close()
	rng := rand.New(rand.NewPCG(1, 3))
	for _, w := range []kernels.Matrix{kerneltest.BF16(rng, 3, 5), kerneltest.Q8(rng, 3, 64)} {
		if err := kernels.CheckMatrix(b, w); err != nil {
			t.Errorf("%T: %v", w, err)
		}
	}
}

// The kernels against their pure Go loops, at every length and start
// offset around the 8-element groups and 32-element blocks: dots to float32
// rounding, decodes exactly and without writing past their output.
func TestStreamKernels(t *testing.T) {
	if !haveSIMD() {
		t.Skip("no AVX2/FMA here (or purego build)")
	}
	rng := rand.New(rand.NewPCG(5, 7))
	const maxN = 200 // < 7*q8Block
	w16 := kerneltest.BF16(rng, 1, maxN+3).Data
	q8 := kerneltest.Q8(rng, 1, 7*q8Block)
	x := kerneltest.Vec(rng, 7*q8Block+3)
	dst := make([]float32, 7*q8Block+8)
	for off := 0; off < 4; off++ {
		for n := 0; n <= maxN; n++ {
			w, xs := w16[off:off+n], x[off:off+n]
			got, want := dotBF16(w, xs, true), dotBF16Go(w, xs)
			var bound float64
			for i := range w {
				bound += math.Abs(float64(kernels.BF16ToF32(w[i]) * xs[i]))
			}
			if d := math.Abs(float64(got - want)); d > kerneltest.SumTol*bound {
				t.Fatalf("dotBF16 off %d n %d = %v, want %v", off, n, got, want)
			}
			sentinel := float32(math.Inf(1))
			for i := range dst {
				dst[i] = sentinel
			}
			decodeBF16(dst[off:], w, true)
			for i := range w {
				if dst[off+i] != kernels.BF16ToF32(w[i]) {
					t.Fatalf("decodeBF16 off %d n %d [%d] = %v, want %v", off, n, i, dst[off+i], kernels.BF16ToF32(w[i]))
				}
			}
			for i := off + n; i < len(dst); i++ {
				if dst[i] != sentinel {
					t.Fatalf("decodeBF16 off %d n %d wrote dst[%d]", off, n, i)
				}
			}
		}
	}
	for nb := 0; nb <= 7; nb++ {
		q, sc := q8.Q[:nb*q8Block], q8.Scale[:nb]
		for off := 0; off < 4; off++ {
			xs := x[off : off+nb*q8Block]
			got, want := dotQ8(q, sc, xs, true), dotQ8(q, sc, xs, false)
			if d := math.Abs(float64(got - want)); d > 1e-5*math.Abs(float64(want))+1e-6 {
				t.Fatalf("dotQ8 nb %d off %d = %v, want %v", nb, off, got, want)
			}
			for i := range dst {
				dst[i] = float32(math.Inf(1))
			}
			decodeQ8(dst[off:], q, sc, true)
			for i := range q {
				if want := float32(q[i]) * sc[i/q8Block]; dst[off+i] != want {
					t.Fatalf("decodeQ8 nb %d off %d [%d] = %v, want %v", nb, off, i, dst[off+i], want)
				}
			}
			for i := off + nb*q8Block; i < len(dst); i++ {
				if !math.IsInf(float64(dst[i]), 1) {
					t.Fatalf("decodeQ8 nb %d off %d wrote dst[%d]", nb, off, i)
				}
			}
		}
	}
}

// FuzzMatMulBF16Q8 compares BF16 and Q8 MatMul with ref on random shapes
// (any Cols for BF16, Cols rounded up to whole blocks for Q8).
func FuzzMatMulBF16Q8(f *testing.F) {
	f.Add(uint8(1), uint16(1), uint8(1), uint64(1))
	f.Add(uint8(3), uint16(37), uint8(3), uint64(2))
	f.Add(uint8(40), uint16(999), uint8(9), uint64(3))
	f.Add(uint8(7), uint16(64), uint8(12), uint64(4))
	bs := variants(f)
	f.Fuzz(func(t *testing.T, rows uint8, cols uint16, T uint8, seed uint64) {
		r, c, n := 1+int(rows)%48, 1+int(cols)%1200, 1+int(T)%13
		rng := rand.New(rand.NewPCG(seed, 77))
		ws := []kernels.Matrix{kerneltest.BF16(rng, r, c), kerneltest.Q8(rng, r, (c+q8Block-1)/q8Block*q8Block)}
		for _, w := range ws {
			_, wc := w.Shape()
			x := kerneltest.Vec(rng, n*wc)
			for _, b := range bs {
				if msg := kerneltest.MatMulMismatch(b, w, x, n); msg != "" {
					t.Fatalf("%s %T [%d,%d] T=%d: %s", b.Name(), w, r, wc, n, msg)
				}
			}
		}
	})
}

func TestBF16Q8NoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, b := range variants(t) {
		bf := kerneltest.BF16(rng, 256, 300)
		q := kerneltest.Q8(rng, 256, 320)
		x := kernels.HostBuf(kerneltest.Vec(rng, 12*320))
		y := kernels.HostBuf(make([]float32, 12*256))
		ids := kernels.HostIntBuf([]int32{5, 6, 7})
		ops := map[string]func(){
			"MatMulBF16 T=1":  func() { b.MatMul(y, x, bf, 1) },
			"MatMulBF16 T=5":  func() { b.MatMul(y, x, bf, 5) },
			"MatMulBF16 T=12": func() { b.MatMul(y, x, bf, 12) },
			"MatMulQ8 T=1":    func() { b.MatMul(y, x, q, 1) },
			"MatMulQ8 T=5":    func() { b.MatMul(y, x, q, 5) },
			"MatMulQ8 T=12":   func() { b.MatMul(y, x, q, 12) },
			"EmbedBF16":       func() { b.Embed(y.Slice(0, 3*300), bf, ids) },
			"EmbedQ8":         func() { b.Embed(y.Slice(0, 3*320), q, ids) },
		}
		for name, op := range ops {
			op() // grows scratch space once
			if a := testing.AllocsPerRun(20, op); a != 0 {
				t.Errorf("%s %s: %v allocations per call", b.Name(), name, a)
			}
		}
	}
}

func TestBF16Q8BadShapesPanic(t *testing.T) {
	b := newBackend(2, haveSIMD())
	defer b.Close()
	f := func(n int) kernels.Buf { return kernels.HostBuf(make([]float32, n)) }
	cases := map[string]func(){
		"short bf16": func() {
			b.MatMul(f(2), f(3), &kernels.BF16Matrix{Rows: 2, Cols: 3, Data: make([]uint16, 5)}, 1)
		},
		"short q": func() {
			b.MatMul(f(2), f(32), &kernels.Q8Matrix{Rows: 2, Cols: 32, Q: make([]int8, 63), Scale: make([]float32, 2)}, 1)
		},
		"short scale": func() {
			b.Embed(f(32), &kernels.Q8Matrix{Rows: 2, Cols: 32, Q: make([]int8, 64), Scale: make([]float32, 1)}, kernels.HostIntBuf([]int32{0}))
		},
		"q8 cols": func() {
			b.MatMul(f(1), f(48), &kernels.Q8Matrix{Rows: 1, Cols: 48, Q: make([]int8, 48), Scale: make([]float32, 2)}, 1)
		},
		"bad id": func() {
			b.Embed(f(3), &kernels.BF16Matrix{Rows: 2, Cols: 3, Data: make([]uint16, 6)}, kernels.HostIntBuf([]int32{-1}))
		},
	}
	for name, f := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// Llama-3.2-1B's tied embedding / lm_head: the largest single read of a
// decode step.
const lmRows, lmCols = 128256, 2048

// lmHeads builds the lm_head once per process in the three kinds, from the
// same random weights.
var lmHeads = sync.OnceValue(func() []kernels.Matrix {
	rng := rand.New(rand.NewPCG(9, 9))
	f := &kernels.F32Matrix{Rows: lmRows, Cols: lmCols, Data: make([]float32, lmRows*lmCols)}
	h := &kernels.BF16Matrix{Rows: lmRows, Cols: lmCols, Data: make([]uint16, lmRows*lmCols)}
	for i := range f.Data {
		h.Data[i] = kernels.F32ToBF16(float32(rng.NormFloat64() * 0.02))
		f.Data[i] = kernels.BF16ToF32(h.Data[i])
	}
	q, err := kernels.QuantizeQ8BF16(h.Data, lmRows, lmCols)
	if err != nil {
		panic(err)
	}
	return []kernels.Matrix{f, h, q}
})

func weightBytes(w kernels.Matrix) int {
	n, ok := kernels.MatrixBytes(w)
	if !ok {
		panic(fmt.Sprintf("weightBytes: %T", w))
	}
	return int(n)
}

// BenchmarkLMHead runs the [128256, 2048] lm_head MatMul in F32, BF16 and
// Q8 side by side, with the weight bytes read per second and that rate as
// a fraction of a streaming read (MeasureBandwidth) taken just before, on
// the same workers, so that both see the same machine load (bw_GB/s).
// Each call reads more than any cache holds, so every one streams from
// memory.
func BenchmarkLMHead(bb *testing.B) {
	ws := lmHeads()
	for _, T := range []int{1, 4, 8} {
		for i := range len(ws) + 1 {
			panels := i == len(ws) // the bf16 head again, as serve uploads it
			if panels && !haveVNNI() {
				continue
			}
			w := ws[i%len(ws)]
			if panels {
				w = ws[1]
			}
			name := fmt.Sprintf("%T", w)[len("*kernels."):]
			if panels {
				name += "/panels"
			}
			bb.Run(fmt.Sprintf("%s/T=%d", name, T), func(bb *testing.B) {
				b := New(0)
				defer b.Close()
				if panels {
					b.SetInt8Activations(true)
					b.SetInt8Prefill(true)
					w, _ = b.Upload(w)
				}
				bw := MeasureBandwidth(b, probeBytes, 3)
				rng := rand.New(rand.NewPCG(3, 4))
				x := kernels.HostBuf(kerneltest.Vec(rng, T*lmCols))
				y := kernels.HostBuf(make([]float32, T*lmRows))
				n := weightBytes(w)
				bb.SetBytes(int64(n))
				for bb.Loop() {
					b.MatMul(y, x, w, T)
				}
				gbs := float64(n) * float64(bb.N) / bb.Elapsed().Seconds() / 1e9
				bb.ReportMetric(gbs, "GB/s")
				bb.ReportMetric(bw, "bw_GB/s")
				bb.ReportMetric(gbs/bw, "frac_of_bw")
				bb.ReportMetric(float64(T*bb.N)/bb.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}

// BenchmarkStreamKernel times the T = 1 inner loops alone on one goroutine,
// on a 2048-column row that stays in L1 (the compute ceiling beside the
// memory floor): pure Go against assembly, with the f32 dot for scale.
func BenchmarkStreamKernel(bb *testing.B) {
	const cols = 2048
	rng := rand.New(rand.NewPCG(7, 8))
	h := kerneltest.BF16(rng, 1, cols).Data
	q := kerneltest.Q8(rng, 1, cols)
	f := kerneltest.Vec(rng, cols)
	x := kerneltest.Vec(rng, cols)
	dst := make([]float32, cols)
	versions := []bool{false}
	if haveSIMD() {
		versions = append(versions, true)
	}
	for _, simd := range versions {
		v := "go"
		if simd {
			v = "avx2"
		}
		var s float32
		bb.Run("dotF32/"+v, func(bb *testing.B) {
			bb.SetBytes(4 * cols)
			for bb.Loop() {
				s += dot(f, x, simd)
			}
		})
		bb.Run("dotBF16/"+v, func(bb *testing.B) {
			bb.SetBytes(2 * cols)
			for bb.Loop() {
				s += dotBF16(h, x, simd)
			}
		})
		bb.Run("dotQ8/"+v, func(bb *testing.B) {
			bb.SetBytes(cols + 4*cols/q8Block)
			for bb.Loop() {
				s += dotQ8(q.Q, q.Scale, x, simd)
			}
		})
		bb.Run("decodeBF16/"+v, func(bb *testing.B) {
			bb.SetBytes(2 * cols)
			for bb.Loop() {
				decodeBF16(dst, h, simd)
			}
		})
		bb.Run("decodeQ8/"+v, func(bb *testing.B) {
			bb.SetBytes(cols + 4*cols/q8Block)
			for bb.Loop() {
				decodeQ8(dst, q.Q, q.Scale, simd)
			}
		})
		_ = s
	}
}
