package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
)

// TestMatMulNF4Int8Prefill checks prefill-sized int8 products (the VNNI
// GEMM where the CPU has it and the rows come in 16s, the decode kernels
// otherwise) against ref.MatMulNF4Int8, on the SIMD and pure Go paths,
// with T around the GEMM's groups of 12 tokens.
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
				b.SetInt8Prefill(true)
				rng := rand.New(rand.NewPCG(41, 42))
				for _, rows := range []int{16, 33, 80, 128} {
					for _, cols := range []int{64, 192, 2048} {
						code := kernels.NF4Code
						if rows%32 == 16 {
							code = fp4Code
						}
						m := kerneltest.NF4(rng, rows, cols, code)
						for _, T := range []int{9, 12, 13, 24, 31} {
							x := kerneltest.Vec(rng, T*cols)
							clear(x[cols : cols+64]) // a block of zeros: scale 0
							checkInt8MatMul(t, b, m, x, T)
						}
					}
				}
			})
		}
	}
}

// TestVNNIGemmMatchesGo: where the CPU has AVX-512 VNNI, the GEMM gives the
// pure Go kernel's results bit for bit (the same integer block sums, the
// same float steps in the same order), whatever the outputs held before.
func TestVNNIGemmMatchesGo(t *testing.T) {
	if !haveVNNI() {
		t.Skip("no AVX-512 VNNI on this CPU: the VNNI GEMM is not tested here")
	}
	vnni, pure := newBackend(2, true), newBackend(1, false)
	defer vnni.Close()
	defer pure.Close()
	for _, b := range []*Backend{vnni, pure} {
		b.SetInt8Prefill(true)
	}
	rng := rand.New(rand.NewPCG(43, 44))
	for _, rows := range []int{16, 64, 80, 192} {
		for _, cols := range []int{64, 128, 2048, 8192} {
			m := kerneltest.NF4(rng, rows, cols, kernels.NF4Code)
			for _, T := range []int{9, 12, 25, 36} {
				x := kerneltest.Vec(rng, T*cols)
				got, want := make([]float32, T*rows), make([]float32, T*rows)
				for i := range got {
					got[i] = float32(math.NaN())
				}
				vnni.MatMul(kernels.HostBuf(got), kernels.HostBuf(x), m, T)
				pure.MatMul(kernels.HostBuf(want), kernels.HostBuf(x), m, T)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("[%d,%d] T=%d: y[%d,%d] = %v with the VNNI GEMM, %v in Go", rows, cols, T, i/rows, i%rows, got[i], want[i])
					}
				}
			}
		}
	}
}
