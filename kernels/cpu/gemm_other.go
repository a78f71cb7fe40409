//go:build !amd64 || purego

package cpu

// Never called: simd is false without the assembly.

func pack16AVX2(pk, w []float32, ldw, k int) { panic("unreachable") }

func gemm6x16Asm(y *float32, ldy int, x *float32, ldx int, p *float32, k int, acc bool) {
	panic("unreachable")
}
