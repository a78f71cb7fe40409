//go:build amd64 && !purego

package cpu

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
