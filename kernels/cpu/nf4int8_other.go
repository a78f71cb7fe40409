//go:build !amd64 || purego

package cpu

// Never called without the assembly kernels (simd is false).

func dotNF4Int8x4AVX2(out *[4]float32, tbl *[32]int8, packed []byte, pstride int, absmax []float32, astride int, xq []int8, xd []float32, n int) {
	panic("unreachable")
}
