//go:build amd64 && !purego

package cpu

import "unsafe"

// dotNF4Int8AVX2 is dotNF4Int8Go on one row of len(absmax) blocks.
func dotNF4Int8AVX2(tbl *[32]int8, packed []byte, absmax []float32, xq []int8, xd []float32) float32 {
	n := len(absmax)
	if n == 0 {
		return 0
	}
	_ = packed[n*blockBytes-1]
	_ = xq[n*blockElems-1]
	_ = xd[n-1]
	return dotNF4Int8Asm(tbl, &packed[0], &absmax[0], &xq[0], &xd[0], n)
}

//go:noescape
func dotNF4Int8Asm(tbl *[32]int8, packed *byte, absmax *float32, xq *int8, xd *float32, n int) float32

// dotQ8Int8AVX2 is dotQ8Int8Go: len(xd) activation blocks of 64.
func dotQ8Int8AVX2(q []int8, scale []float32, xq []int8, xd []float32) float32 {
	n := len(xd)
	if n == 0 {
		return 0
	}
	_ = q[n*blockElems-1]
	_ = scale[2*n-1]
	_ = xq[n*blockElems-1]
	return dotQ8Int8Asm(&q[0], &scale[0], &xq[0], &xd[0], n)
}

//go:noescape
func dotQ8Int8Asm(q *int8, scale *float32, xq *int8, xd *float32, n int) float32

// dotNF4Int8x4TokAVX2: out[i] = dotNF4Int8Go of one row (len(absmax)
// blocks) against tokens i < 4 of xq [4, cols] and xd [4, cols/64].
func dotNF4Int8x4TokAVX2(out *[4]float32, tbl *[32]int8, packed []byte, absmax []float32, xq []int8, xd []float32, cols int) {
	n := len(absmax)
	if n == 0 {
		*out = [4]float32{}
		return
	}
	nb := cols / blockElems
	_ = packed[n*blockBytes-1]
	_ = xq[3*cols+n*blockElems-1]
	_ = xd[3*nb+n-1]
	dotNF4Int8x4TokAsm(out, tbl, &packed[0], &absmax[0], &xq[0], cols, &xd[0], nb, n)
}

//go:noescape
func dotNF4Int8x4TokAsm(out *[4]float32, tbl *[32]int8, packed *byte, absmax *float32, xq *int8, xqStride int, xd *float32, xdStride int, n int)

// dotNF4Int8x8TokAVX2 is dotNF4Int8x4TokAVX2 for tokens i < 8, with the
// same results for each.
func dotNF4Int8x8TokAVX2(out *[8]float32, tbl *[32]int8, packed []byte, absmax []float32, xq []int8, xd []float32, cols int) {
	n := len(absmax)
	if n == 0 {
		*out = [8]float32{}
		return
	}
	nb := cols / blockElems
	_ = packed[n*blockBytes-1]
	_ = xq[7*cols+n*blockElems-1]
	_ = xd[7*nb+n-1]
	dotNF4Int8x8TokAsm(out, tbl, &packed[0], &absmax[0], &xq[0], cols, &xd[0], nb, n)
}

//go:noescape
func dotNF4Int8x8TokAsm(out *[8]float32, tbl *[32]int8, packed *byte, absmax *float32, xq *int8, xqStride int, xd *float32, xdStride int, n int)

// quantizePlanesAVX2 is quantizeInt8Planes over len(x)/64 > 0 blocks.
func quantizePlanesAVX2(q []int8, d, x []float32, codeScale float32) {
	nb := len(x) / blockElems
	_ = q[nb*blockElems-1]
	_ = d[nb-1]
	quantizeInt8Asm((*byte)(unsafe.Pointer(&q[0])), &d[0], &x[0], nb, codeScale, blockElems, false)
}

// quantizeVNNIAVX2 is quantizeInt8VNNI over len(x)/64 > 0 blocks.
func quantizeVNNIAVX2(q []byte, d, x []float32, codeScale float32) {
	nb := len(x) / blockElems
	_ = q[nb*vnniBlock-1]
	_ = d[nb-1]
	quantizeInt8Asm(&q[0], &d[0], &x[0], nb, codeScale, vnniBlock, true)
}

//go:noescape
func quantizeInt8Asm(q *byte, d *float32, x *float32, nb int, codeScale float32, qstride int, lanes bool)
