//go:build !amd64 || purego

package cpu

// Without the assembly kernels every op takes its pure Go path; these are
// never called (simd is false).

func haveSIMD() bool { return false }

func dotAVX2(a, b []float32) float32                                      { panic("unreachable") }
func dot4x3AVX2(s *[12]float32, x *[4][]float32, w []float32, ldw, k int) { panic("unreachable") }
func axpyAVX2(y []float32, a float32, x []float32)                        { panic("unreachable") }
func dotNF4BlocksAVX2(code *[16]float32, packed []byte, absmax, x []float32) float32 {
	panic("unreachable")
}
func dotNF4PlanesAVX2(planes *[4][32]byte, packed []byte, absmax, x []float32) float32 {
	panic("unreachable")
}
func dequantNF4PlanesAVX2(dst []float32, planes *[4][32]byte, packed []byte, absmax []float32) {
	panic("unreachable")
}
func dequantNF4BlocksAVX2(dst []float32, code *[16]float32, packed []byte, absmax []float32) {
	panic("unreachable")
}
func axpyRowsF32AVX2(y, z, rows []float32, ld int) { panic("unreachable") }
