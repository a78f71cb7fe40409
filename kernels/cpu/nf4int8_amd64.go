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
