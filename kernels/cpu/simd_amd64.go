//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// haveSIMD reports whether the AVX2/FMA kernels of simd_amd64.s can run.
func haveSIMD() bool { return cpu.X86.HasAVX2 && cpu.X86.HasFMA }

// The wrappers check the bounds that the assembly relies on, so a caller's
// mistake panics here instead of reading past a slice.

// dotNF4BlocksAVX2 is dotNF4Blocks: whole blocks, len(absmax) of them.
func dotNF4BlocksAVX2(code *[16]float32, packed []byte, absmax, x []float32) float32 {
	nb := len(absmax)
	if nb == 0 {
		return 0
	}
	_ = packed[nb*blockBytes-1]
	_ = x[nb*blockElems-1]
	return dotNF4BlocksAsm(code, &packed[0], &absmax[0], &x[0], nb)
}

// dequantNF4BlocksAVX2 is dequantNF4Blocks: whole blocks, len(absmax) of them.
func dequantNF4BlocksAVX2(dst []float32, code *[16]float32, packed []byte, absmax []float32) {
	nb := len(absmax)
	if nb == 0 {
		return
	}
	_ = packed[nb*blockBytes-1]
	_ = dst[nb*blockElems-1]
	dequantNF4BlocksAsm(&dst[0], code, &packed[0], &absmax[0], nb)
}

// dotNF4PlanesAVX2 is dotNF4Blocks with x in permuteBlocks order.
func dotNF4PlanesAVX2(planes *[4][32]byte, packed []byte, absmax, x []float32) float32 {
	nb := len(absmax)
	if nb == 0 {
		return 0
	}
	_ = packed[nb*blockBytes-1]
	_ = x[nb*blockElems-1]
	return dotNF4PlanesAsm(planes, &packed[0], &absmax[0], &x[0], nb)
}

// dequantNF4PlanesAVX2 is dequantNF4Blocks with dst in permuteBlocks order.
func dequantNF4PlanesAVX2(dst []float32, planes *[4][32]byte, packed []byte, absmax []float32) {
	nb := len(absmax)
	if nb == 0 {
		return
	}
	_ = packed[nb*blockBytes-1]
	_ = dst[nb*blockElems-1]
	dequantNF4PlanesAsm(&dst[0], planes, &packed[0], &absmax[0], nb)
}

// dotAVX2 returns Σ a[i]·b[i], len(b) >= len(a) > 0.
func dotAVX2(a, b []float32) float32 {
	_ = b[len(a)-1]
	return dotAsm(&a[0], &b[0], len(a))
}

// dot4x3AVX2: s[3*i+j] = Σ_{c<k} x[i][c]·w[j*ldw+c], i < 4, j < 3, k > 0.
func dot4x3AVX2(s *[12]float32, x *[4][]float32, w []float32, ldw, k int) {
	_, _, _, _ = x[0][k-1], x[1][k-1], x[2][k-1], x[3][k-1]
	_ = w[2*ldw+k-1]
	dot4x3Asm(s, &x[0][0], &x[1][0], &x[2][0], &x[3][0], &w[0], ldw, k)
}

// axpyAVX2: y += a·x, len(x) >= len(y) > 0.
func axpyAVX2(y []float32, a float32, x []float32) {
	_ = x[len(y)-1]
	axpyAsm(&y[0], a, &x[0], len(y))
}

// axpyRowsF32AVX2: y[o] += Σ_r z[r]·rows[r*ld+o], the rows added one FMA
// at a time in order, for o < len(y)&^7 (len(y) >= 8, len(z) >= 1).
func axpyRowsF32AVX2(y, z, rows []float32, ld int) {
	n, k := len(y), len(z)
	_ = rows[(k-1)*ld+n&^7-1]
	axpyRowsF32Asm(&y[0], &z[0], &rows[0], ld, n, k)
}

// Implemented in simd_amd64.s. Counts are in elements (n blocks of 64 for
// the NF4 kernels), strides in elements.

//go:noescape
func dotNF4BlocksAsm(code *[16]float32, packed *byte, absmax, x *float32, n int) float32

//go:noescape
func dequantNF4BlocksAsm(dst *float32, code *[16]float32, packed *byte, absmax *float32, n int)

//go:noescape
func dotNF4PlanesAsm(planes *[4][32]byte, packed *byte, absmax, x *float32, n int) float32

//go:noescape
func dequantNF4PlanesAsm(dst *float32, planes *[4][32]byte, packed *byte, absmax *float32, n int)

//go:noescape
func dotAsm(a, b *float32, n int) float32

//go:noescape
func dot4x3Asm(s *[12]float32, x0, x1, x2, x3, w *float32, ldw, k int)

//go:noescape
func axpyAsm(y *float32, a float32, x *float32, n int)

//go:noescape
func axpyRowsF32Asm(y, z, rows *float32, ld, n, k int)
