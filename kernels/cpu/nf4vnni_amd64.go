//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// haveVNNI reports whether the AVX-512 VNNI kernels of nf4vnni_amd64.s can
// run: VPDPBUSD on 256-bit vectors and the EVEX registers Y16-Y31 (x/sys/cpu
// reports AVX-512 features only when the OS saves their state).
func haveVNNI() bool {
	return haveSIMD() && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI
}

// dotNF4Int8VNNI is dotNF4Int8AVX2 on activations in quantizeInt8VNNI's
// layout (96 bytes a block), with the same result.
func dotNF4Int8VNNI(utbl *[32]uint8, packed []byte, absmax []float32, xv []byte, xd []float32) float32 {
	n := len(absmax)
	if n == 0 {
		return 0
	}
	_ = packed[n*blockBytes-1]
	_ = xv[n*vnniBlock-1]
	_ = xd[n-1]
	return dotNF4Int8VNNIAsm(utbl, &packed[0], &absmax[0], &xv[0], &xd[0], n)
}

// dotNF4Int8x8VNNI is dotNF4Int8x8TokAVX2 on activations in
// quantizeInt8VNNI's layout, with the same results; xd8 holds the 8
// tokens' scales 8 to a block (transpose8Scales).
func dotNF4Int8x8VNNI(out *[8]float32, utbl *[32]uint8, packed []byte, absmax []float32, xv []byte, xd8 []float32, cols int) {
	n := len(absmax)
	if n == 0 {
		*out = [8]float32{}
		return
	}
	nb := cols / blockElems
	_ = packed[n*blockBytes-1]
	_ = xv[7*nb*vnniBlock+n*vnniBlock-1]
	_ = xd8[8*n-1]
	dotNF4Int8x8VNNIAsm(out, utbl, &packed[0], &absmax[0], &xv[0], nb*vnniBlock, &xd8[0], n)
}

//go:noescape
func dotNF4Int8VNNIAsm(utbl *[32]uint8, packed *byte, absmax *float32, xq *byte, xd *float32, n int) float32

//go:noescape
func dotNF4Int8x8VNNIAsm(out *[8]float32, tbl *[32]uint8, packed *byte, absmax *float32, xq *byte, xqStride int, xd8 *float32, n int)
