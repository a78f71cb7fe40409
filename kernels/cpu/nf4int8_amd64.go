//go:build amd64 && !purego

package cpu

// dotNF4Int8x4AVX2 is dotNF4Int8Go for 4 rows pstride bytes (astride
// scales) apart, n whole blocks each, into out.
func dotNF4Int8x4AVX2(out *[4]float32, tbl *[32]int8, packed []byte, pstride int, absmax []float32, astride int, xq []int8, xd []float32, n int) {
	if n == 0 {
		*out = [4]float32{}
		return
	}
	_ = packed[3*pstride+n*blockBytes-1]
	_ = absmax[3*astride+n-1]
	_ = xq[n*blockElems-1]
	_ = xd[n-1]
	dotNF4Int8x4Asm(out, tbl, &packed[0], pstride, &absmax[0], astride, &xq[0], &xd[0], n)
}

//go:noescape
func dotNF4Int8x4Asm(out *[4]float32, tbl *[32]int8, packed *byte, pstride int, absmax *float32, astride int, xq *int8, xd *float32, n int)
