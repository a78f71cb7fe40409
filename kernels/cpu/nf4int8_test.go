package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// fp4Code is not value-sorted and not symmetric, to catch a kernel that
// ignores the matrix's own code book.
var fp4Code = [16]float32{0, 0.0052083, 0.6666667, 1, 0.3333333, 0.5, 0.1666667, 0.25,
	0, -0.0052083, -0.6666667, -1, -0.3333333, -0.5, -0.1666667, -0.25}

// TestMatMulNF4Int8 checks the int8-activation path of MatMul, on the AVX2
// and the pure Go kernels, against its specification ref.MatMulNF4Int8 to
// float rounding (the integer block sums are exact in both), and that
// batches beyond decode size still match the exact product.
func TestMatMulNF4Int8(t *testing.T) {
	for _, simd := range simdModes() {
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("simd=%v/threads=%d", simd, threads), func(t *testing.T) {
				b := newBackend(threads, simd)
				defer b.Close()
				b.SetInt8Activations(true)
				rng := rand.New(rand.NewPCG(11, 12))
				for _, rows := range []int{1, 2, 3, 4, 5, 7, 33, 301} {
					for _, cols := range []int{64, 128, 192, 2048} {
						code := kernels.NF4Code
						if rows%2 == 0 {
							code = fp4Code
						}
						m := kerneltest.NF4(rng, rows, cols, code)
						for _, T := range []int{1, 2, 3, 5, 8, 9} {
							x := kerneltest.Vec(rng, T*cols)
							if T == 2 {
								clear(x[:64]) // a block of zeros: scale 0
							}
							checkInt8MatMul(t, b, m, m, x, T)
						}
					}
				}
			})
		}
	}
}

// TestNF4Int8x8MatchesX4 checks the 8-token kernel bit for bit against two
// calls of the 4-token one (MatMul's T=8 results are checked against ref in
// TestMatMulNF4Int8), on random codes, scales and activations.
func TestNF4Int8x8MatchesX4(t *testing.T) {
	if !haveSIMD() {
		t.Skip("no AVX2 kernels here")
	}
	rng := rand.New(rand.NewPCG(21, 22))
	for _, cols := range []int{64, 192, 2048} {
		nb := cols / blockElems
		m := kerneltest.NF4(rng, 1, cols, kernels.NF4Code)
		code := newInt8Code(&m.Code)
		xq := make([]int8, 8*cols)
		for i := range xq {
			xq[i] = int8(rng.IntN(255) - 127)
		}
		xd := kerneltest.Vec(rng, 8*nb)
		var got [8]float32
		var want [2][4]float32
		dotNF4Int8x8TokAVX2(&got, &code.tbl, m.Packed, m.Absmax, xq, xd, cols)
		dotNF4Int8x4TokAVX2(&want[0], &code.tbl, m.Packed, m.Absmax, xq, xd, cols)
		dotNF4Int8x4TokAVX2(&want[1], &code.tbl, m.Packed, m.Absmax, xq[4*cols:], xd[4*nb:], cols)
		for i, v := range got {
			w := want[i/4][i%4]
			if math.Float32bits(v) != math.Float32bits(w) {
				t.Fatalf("cols %d, token %d: x8 %v, x4 %v", cols, i, v, w)
			}
			if g := dotNF4Int8Go(&code, m.Packed, m.Absmax, xq[i*cols:(i+1)*cols], xd[i*nb:(i+1)*nb]); math.Abs(float64(g-v)) > 1e-3*math.Abs(float64(g))+1e-6 {
				t.Fatalf("cols %d, token %d: x8 %v, Go %v", cols, i, v, g)
			}
		}
	}
}

// TestMatMulQ8Int8 is TestMatMulNF4Int8 for Q8 weights (an 8-bit lm_head):
// against ref.MatMulQ8Int8 up to 8 tokens, the exact product beyond.
func TestMatMulQ8Int8(t *testing.T) {
	for _, simd := range simdModes() {
		t.Run(fmt.Sprintf("simd=%v", simd), func(t *testing.T) {
			b := newBackend(2, simd)
			defer b.Close()
			b.SetInt8Activations(true)
			rng := rand.New(rand.NewPCG(13, 14))
			for _, rows := range []int{1, 3, 33, 700} {
				for _, cols := range []int{64, 128, 2048} {
					m := kerneltest.Q8(rng, rows, cols)
					for _, T := range []int{1, 2, 8, 9} {
						x := kerneltest.Vec(rng, T*cols)
						if T == 2 {
							clear(x[64:128])
						}
						got := make([]float32, T*rows+1)
						got[T*rows] = 12345
						b.MatMul(kernels.HostBuf(got[:T*rows]), kernels.HostBuf(x), m, T)
						if got[T*rows] != 12345 {
							t.Fatalf("[%d,%d] T=%d: wrote past y", rows, cols, T)
						}
						want := make([]float32, T*rows)
						if T <= smallBatch {
							ref.MatMulQ8Int8(want, x, m, T)
						} else {
							ref.Backend{}.MatMul(kernels.HostBuf(want), kernels.HostBuf(x), m, T)
						}
						for i := range want {
							tok, r := i/rows, i%rows
							var sumAbs float64
							for c := range cols {
								sumAbs += math.Abs(float64(ref.Q8Element(m, r*cols+c)) * float64(x[tok*cols+c]))
							}
							if d := math.Abs(float64(got[i] - want[i])); d > 2*kerneltest.SumTol*sumAbs+1e-30 {
								t.Fatalf("[%d,%d] T=%d y[%d,%d] = %g, want %g", rows, cols, T, tok, r, got[i], want[i])
							}
						}
					}
				}
			}
		})
	}
}

func simdModes() []bool {
	if haveSIMD() {
		return []bool{false, true}
	}
	return []bool{false}
}

func checkInt8MatMul(t *testing.T, b *Backend, m *kernels.NF4Matrix, u kernels.Matrix, x []float32, T int) {
	t.Helper()
	got := make([]float32, T*m.Rows+1)
	got[T*m.Rows] = 12345 // past the end: must stay
	b.MatMul(kernels.HostBuf(got[:T*m.Rows]), kernels.HostBuf(x), u, T)
	if got[T*m.Rows] != 12345 {
		t.Fatalf("[%d,%d] T=%d: wrote past y", m.Rows, m.Cols, T)
	}
	want := make([]float32, T*m.Rows)
	if T <= smallBatch || b.int8Prefill {
		ref.MatMulNF4Int8(want, x, m, T)
	} else {
		ref.Backend{}.MatMul(kernels.HostBuf(want), kernels.HostBuf(x), m, T)
	}
	for tok := range T {
		for r := range m.Rows {
			var sumAbs float64 // Σ|W·x|: the scale of the rounding
			for c := range m.Cols {
				sumAbs += math.Abs(float64(ref.NF4Element(m, r*m.Cols+c)) * float64(x[tok*m.Cols+c]))
			}
			i := tok*m.Rows + r
			if d := math.Abs(float64(got[i] - want[i])); d > 2*kerneltest.SumTol*sumAbs+1e-30 {
				t.Fatalf("[%d,%d] T=%d y[%d,%d] = %g, want %g (|Δ| %g, Σ|terms| %g)", m.Rows, m.Cols, T, tok, r, got[i], want[i], d, sumAbs)
			}
		}
	}
}

// TestNF4Int8VNNIMatchesAVX2: where the CPU has AVX-512 VNNI, MatMul's VNNI
// kernels give the AVX2 kernels' results bit for bit (the same integer lane
// sums, the same float steps) for batches that both run one token or 8 at a
// time; the ref tolerance is TestMatMulNF4Int8's, which runs them too.
func TestNF4Int8VNNIMatchesAVX2(t *testing.T) {
	if !haveVNNI() {
		t.Skip("no AVX-512 VNNI on this CPU: the VNNI kernels are not tested here")
	}
	vnni, avx2 := newBackend(2, true), newBackend(2, true)
	defer vnni.Close()
	defer avx2.Close()
	avx2.vnni = false
	if !vnni.vnni || vnni.Name() != "cpu-avx2-vnni" {
		t.Fatalf("backend %s does not use its VNNI kernels", vnni.Name())
	}
	for _, b := range []*Backend{vnni, avx2} {
		b.SetInt8Activations(true)
	}
	rng := rand.New(rand.NewPCG(31, 32))
	for _, rows := range []int{1, 5, 64} {
		for _, cols := range []int{64, 192, 2048} {
			m := kerneltest.NF4(rng, rows, cols, kernels.NF4Code)
			for _, T := range []int{1, 2, 3, 8} {
				x := kerneltest.Vec(rng, T*cols)
				got, want := make([]float32, T*rows), make([]float32, T*rows)
				vnni.MatMul(kernels.HostBuf(got), kernels.HostBuf(x), m, T)
				avx2.MatMul(kernels.HostBuf(want), kernels.HostBuf(x), m, T)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("[%d,%d] T=%d: y[%d] = %v with VNNI, %v with AVX2", rows, cols, T, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestQuantizeInt8AVX2MatchesGo: the AVX2 quantizer writes the Go one's
// bytes, scales and VNNI lane starts exactly, halves (which round away
// from zero), blocks of zeros and tiny and huge scales included.
func TestQuantizeInt8AVX2MatchesGo(t *testing.T) {
	if !haveSIMD() {
		t.Skip("no AVX2 kernels here")
	}
	rng := rand.New(rand.NewPCG(41, 42))
	const nb = 40
	x := make([]float32, nb*blockElems)
	for b := range nb {
		blk := x[b*blockElems : (b+1)*blockElems]
		switch b % 5 {
		case 0: // halves: amax 127, so x·(127/amax) = x exactly
			for i := range blk {
				blk[i] = float32(rng.IntN(253)-126) + 0.5
			}
			blk[rng.IntN(blockElems)] = -127
		case 1: // zeros: scale 0
		case 2:
			for i := range blk {
				blk[i] = (rng.Float32()*2 - 1) * 1e-30
			}
		case 3:
			for i := range blk {
				blk[i] = (rng.Float32()*2 - 1) * 3e4
			}
		default:
			copy(blk, kerneltest.Vec(rng, blockElems))
		}
	}
	const codeScale = 0.0078740157
	wq, gq := make([]int8, len(x)), make([]int8, len(x))
	wd, gd := make([]float32, nb), make([]float32, nb)
	quantizeInt8Planes(wq, wd, x, codeScale, false)
	quantizeInt8Planes(gq, gd, x, codeScale, true)
	wv, gv := make([]byte, nb*vnniBlock), make([]byte, nb*vnniBlock)
	wvd, gvd := make([]float32, nb), make([]float32, nb)
	quantizeInt8VNNI(wv, wvd, x, codeScale, false)
	quantizeInt8VNNI(gv, gvd, x, codeScale, true)
	for b := range nb {
		if math.Float32bits(gd[b]) != math.Float32bits(wd[b]) || math.Float32bits(gvd[b]) != math.Float32bits(wvd[b]) {
			t.Fatalf("block %d: scale %v (VNNI layout %v) with AVX2, %v in Go", b, gd[b], gvd[b], wd[b])
		}
		for i := range blockElems {
			if gq[b*blockElems+i] != wq[b*blockElems+i] {
				t.Fatalf("block %d value %d (x %v): %d with AVX2, %d in Go", b, i, x[b*blockElems+2*(i%32)+i/32], gq[b*blockElems+i], wq[b*blockElems+i])
			}
		}
		if !slices.Equal(gv[b*vnniBlock:(b+1)*vnniBlock], wv[b*vnniBlock:(b+1)*vnniBlock]) {
			t.Fatalf("block %d: VNNI layout differs between AVX2 and Go", b)
		}
	}
}

// TestMatMulNF4Int8Prefill checks prefill-sized int8 products against
// ref.MatMulNF4Int8, on the SIMD and pure Go paths, with T around the
// panel kernels' groups of 12 tokens: where the CPU has VNNI, weights of
// whole panels are uploaded as panels (nf4panel.go), others take the 8-
// and 1-token decode kernels.
func TestMatMulNF4Int8Prefill(t *testing.T) {
	type mode struct{ simd, vnni bool }
	modes := []mode{{false, false}}
	if haveSIMD() {
		modes = append(modes, mode{true, false}) // the AVX2 kernels, also on a VNNI CPU
	}
	if haveVNNI() {
		modes = append(modes, mode{true, true})
	}
	for _, md := range modes {
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("simd=%v/vnni=%v/threads=%d", md.simd, md.vnni, threads), func(t *testing.T) {
				b := newBackend(threads, md.simd)
				defer b.Close()
				b.vnni = md.vnni
				b.SetInt8Activations(true)
				b.SetInt8Prefill(true)
				rng := rand.New(rand.NewPCG(41, 42))
				for _, rows := range []int{16, 33, 80, 128} {
					for _, cols := range []int{64, 192, 2048} {
						code := kernels.NF4Code
						if rows%32 == 16 {
							code = fp4Code
						}
						m := kerneltest.NF4(rng, rows, cols, code)
						u, err := b.Upload(m)
						if err != nil {
							t.Fatal(err)
						}
						if _, panels := u.(*nf4Panels); panels != (md.vnni && rows%16 == 0) {
							t.Fatalf("[%d,%d] uploaded as %T", rows, cols, u)
						}
						for _, T := range []int{9, 12, 13, 24, 31} {
							x := kerneltest.Vec(rng, T*cols)
							clear(x[cols : cols+64]) // a block of zeros: scale 0
							checkInt8MatMul(t, b, m, u, x, T)
						}
					}
				}
			})
		}
	}
}
