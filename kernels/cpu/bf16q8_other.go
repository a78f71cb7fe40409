//go:build !amd64 || purego

package cpu

// Never called without the assembly kernels (simd is false).

func dotBF16AVX2(w []uint16, x []float32) float32                            { panic("unreachable") }
func decodeBF16AVX2(dst []float32, w []uint16)                               { panic("unreachable") }
func dotQ8AVX2(q []int8, scale []float32, x []float32) float32               { panic("unreachable") }
func decodeQ8AVX2(dst []float32, q []int8, scale []float32)                  { panic("unreachable") }
func dot4x3BF16AVX2(s *[12]float32, x *[4][]float32, w []uint16, ldw, k int) { panic("unreachable") }
func dot4x3Q8AVX2(s *[12]float32, x *[4][]float32, q []int8, scale []float32, ldq, nb int) {
	panic("unreachable")
}

func axpyRowsBF16AVX2(y, z []float32, rows []uint16, ld int) { panic("unreachable") }
