//go:build amd64 && !purego

package cpu

// pack16AVX2 is packPanels for one full panel of 16 rows, k%8 == 0: 8×8
// blocks transposed in registers.
func pack16AVX2(pk, w []float32, ldw, k int) {
	_ = pk[gemmNR*k-1]
	_ = w[(gemmNR-1)*ldw+k-1]
	pack16Asm(&pk[0], &w[0], ldw, k)
}

// Implemented in gemm_amd64.s; the callers check bounds.

//go:noescape
func gemm6x16Asm(y *float32, ldy int, x *float32, ldx int, p *float32, k int, acc bool)

//go:noescape
func pack16Asm(pk, w *float32, ldw, k int)
