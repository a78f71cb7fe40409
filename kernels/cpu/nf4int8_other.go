//go:build !amd64 || purego

package cpu

// Never called without the assembly kernels (simd is false).

func dotNF4Int8AVX2(tbl *[32]int8, packed []byte, absmax []float32, xq []int8, xd []float32) float32 {
	panic("unreachable")
}

func dotQ8Int8AVX2(q []int8, scale []float32, xq []int8, xd []float32) float32 { panic("unreachable") }

func dotNF4Int8x4TokAVX2(out *[4]float32, tbl *[32]int8, packed []byte, absmax []float32, xq []int8, xd []float32, cols int) {
	panic("unreachable")
}

func dotNF4Int8x8TokAVX2(out *[8]float32, tbl *[32]int8, packed []byte, absmax []float32, xq []int8, xd []float32, cols int) {
	panic("unreachable")
}

func quantizePlanesAVX2(q []int8, d, x []float32, codeScale float32) { panic("unreachable") }
func quantizeVNNIAVX2(q []byte, d, x []float32, codeScale float32)   { panic("unreachable") }
