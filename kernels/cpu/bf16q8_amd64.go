//go:build amd64 && !purego

package cpu

// The wrappers check the bounds that the assembly relies on.

// dotBF16AVX2 is dotBF16Go over len(w)&^7 elements (callers pass a
// multiple of 8), len(w) >= 8.
func dotBF16AVX2(w []uint16, x []float32) float32 {
	_ = x[len(w)-1]
	return dotBF16Asm(&w[0], &x[0], len(w))
}

// decodeBF16AVX2 is decodeBF16 over len(w)&^7 elements, len(w) >= 8.
func decodeBF16AVX2(dst []float32, w []uint16) {
	_ = dst[len(w)-1]
	decodeBF16Asm(&dst[0], &w[0], len(w))
}

// dotQ8AVX2 is dotQ8 over len(scale) > 0 whole blocks.
func dotQ8AVX2(q []int8, scale []float32, x []float32) float32 {
	nb := len(scale)
	_ = q[nb*q8Block-1]
	_ = x[nb*q8Block-1]
	return dotQ8Asm(&q[0], &scale[0], &x[0], nb)
}

// decodeQ8AVX2 is decodeQ8 over len(scale) > 0 whole blocks.
func decodeQ8AVX2(dst []float32, q []int8, scale []float32) {
	nb := len(scale)
	_ = q[nb*q8Block-1]
	_ = dst[nb*q8Block-1]
	decodeQ8Asm(&dst[0], &q[0], &scale[0], nb)
}

// dot4x3BF16AVX2: s[3*i+j] = Σ_{c<k&^7} x[i][c]·bf16(w[j*ldw+c]), i < 4,
// j < 3, k >= 8.
func dot4x3BF16AVX2(s *[12]float32, x *[4][]float32, w []uint16, ldw, k int) {
	_, _, _, _ = x[0][k-1], x[1][k-1], x[2][k-1], x[3][k-1]
	_ = w[2*ldw+k-1]
	dot4x3BF16Asm(s, &x[0][0], &x[1][0], &x[2][0], &x[3][0], &w[0], ldw, k)
}

// dot4x3Q8AVX2: s[3*i+j] = Σ_{c<32·nb} x[i][c]·q8(j*ldq+c), i < 4, j < 3,
// over nb > 0 whole blocks of each row; ldq is a multiple of 32.
func dot4x3Q8AVX2(s *[12]float32, x *[4][]float32, q []int8, scale []float32, ldq, nb int) {
	k := nb * q8Block
	_, _, _, _ = x[0][k-1], x[1][k-1], x[2][k-1], x[3][k-1]
	_ = q[2*ldq+k-1]
	_ = scale[(2*ldq+k)/q8Block-1]
	var tmp [24]float32
	dot4x3Q8Asm(s, &x[0][0], &x[1][0], &x[2][0], &x[3][0], &q[0], &scale[0], ldq, nb, &tmp)
}

// axpyRowsBF16AVX2: y[o] += Σ_r z[r]·bf16(rows[r*ld+o]), the rows added
// one FMA at a time in order, for o < len(y)&^7 (len(y) >= 8, len(z) >= 1).
func axpyRowsBF16AVX2(y, z []float32, rows []uint16, ld int) {
	n, k := len(y), len(z)
	_ = rows[(k-1)*ld+n&^7-1]
	axpyRowsBF16Asm(&y[0], &z[0], &rows[0], ld, n, k)
}

// Implemented in bf16q8_amd64.s. The BF16 kernels process n&^7 elements;
// the Q8 kernels nb blocks of 32.

//go:noescape
func dotBF16Asm(w *uint16, x *float32, n int) float32

//go:noescape
func decodeBF16Asm(dst *float32, w *uint16, n int)

//go:noescape
func dotQ8Asm(q *int8, scale, x *float32, nb int) float32

//go:noescape
func decodeQ8Asm(dst *float32, q *int8, scale *float32, nb int)

//go:noescape
func dot4x3BF16Asm(s *[12]float32, x0, x1, x2, x3 *float32, w *uint16, ldw, k int)

//go:noescape
func dot4x3Q8Asm(s *[12]float32, x0, x1, x2, x3 *float32, q *int8, scale *float32, ldq, nb int, tmp *[24]float32)

//go:noescape
func axpyRowsBF16Asm(y, z *float32, rows *uint16, ld, n, k int)
