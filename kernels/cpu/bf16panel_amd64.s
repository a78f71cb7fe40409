//go:build amd64 && !purego

#include "textflag.h"

// bfloat16 panels × float32 activations on AVX-512 (see bf16panel.go for
// the layouts). Column k of a panel is 16 rows' bfloat16 weights in 32
// bytes: one VPMOVZXWD and one shift make them 16 float32 lanes (a lane is
// a row), and each token adds weight·x[t][k] with one FMA whose x is
// broadcast from memory: no horizontal sums, and each weight is decoded
// once for up to 12 tokens.
//
// Napkin: 16 MACs per FMA; a 512-bit FMA is one a cycle on Zen 4 (two
// 256-bit halves), two on Intel cores with two FMA-512 units. One token
// reads 2 bytes per MAC: memory-bound; 8 or 12 tokens are FMA-bound.

// BCOL decodes column off/32 of the panel at AX into zw.
#define BCOL(off, zw) \
	VPMOVZXWD off(AX), zw; \
	VPSLLD    $16, zw, zw

// BFMA0 and BFMA1 add column zw times token t's x (column 0 of the pair at SI,
// column 1 at SI+R9, R9 the bytes between columns) to acc.
#define BFMA0(t, zw, acc) VFMADD231PS.BCST t*4(SI), zw, acc
#define BFMA1(t, zw, acc) VFMADD231PS.BCST t*4(SI)(R9*1), zw, acc

// BSTORE writes one token's 16 outputs at DI and steps DI to the next
// token's (R8 bytes on).
#define BSTORE(f) \
	VMOVUPS f, (DI); \
	ADDQ    R8, DI

// func bf16PanelX12Asm(y *float32, ldy int, x *float32, xstride int, panel *uint16, cols int)
//
// For t < 12, r < 16: y[t·ldy + r] = Σ_{k<cols} bf16(panel[16k+r])·x[xstride·k+t];
// ldy and xstride in floats.
TEXT ·bf16PanelX12Asm(SB), NOSPLIT, $0-48
	MOVQ x+16(FP), SI
	MOVQ xstride+24(FP), R9
	SHLQ $2, R9
	MOVQ panel+32(FP), AX
	MOVQ cols+40(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	SUBQ $2, CX
	JLT  bx12tail

bx12pair:
	PREFETCHT0 4096(AX)
	BCOL(0, Z24)
	BCOL(32, Z25)
	BFMA0(0, Z24, Z0)
	BFMA0(1, Z24, Z1)
	BFMA0(2, Z24, Z2)
	BFMA0(3, Z24, Z3)
	BFMA0(4, Z24, Z4)
	BFMA0(5, Z24, Z5)
	BFMA0(6, Z24, Z6)
	BFMA0(7, Z24, Z7)
	BFMA0(8, Z24, Z8)
	BFMA0(9, Z24, Z9)
	BFMA0(10, Z24, Z10)
	BFMA0(11, Z24, Z11)
	BFMA1(0, Z25, Z0)
	BFMA1(1, Z25, Z1)
	BFMA1(2, Z25, Z2)
	BFMA1(3, Z25, Z3)
	BFMA1(4, Z25, Z4)
	BFMA1(5, Z25, Z5)
	BFMA1(6, Z25, Z6)
	BFMA1(7, Z25, Z7)
	BFMA1(8, Z25, Z8)
	BFMA1(9, Z25, Z9)
	BFMA1(10, Z25, Z10)
	BFMA1(11, Z25, Z11)
	ADDQ $64, AX
	LEAQ (SI)(R9*2), SI
	SUBQ $2, CX
	JGE  bx12pair

bx12tail:
	ADDQ $2, CX
	JZ   bx12done
	BCOL(0, Z24)
	BFMA0(0, Z24, Z0)
	BFMA0(1, Z24, Z1)
	BFMA0(2, Z24, Z2)
	BFMA0(3, Z24, Z3)
	BFMA0(4, Z24, Z4)
	BFMA0(5, Z24, Z5)
	BFMA0(6, Z24, Z6)
	BFMA0(7, Z24, Z7)
	BFMA0(8, Z24, Z8)
	BFMA0(9, Z24, Z9)
	BFMA0(10, Z24, Z10)
	BFMA0(11, Z24, Z11)

bx12done:
	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R8
	SHLQ $2, R8
	BSTORE(Z0)
	BSTORE(Z1)
	BSTORE(Z2)
	BSTORE(Z3)
	BSTORE(Z4)
	BSTORE(Z5)
	BSTORE(Z6)
	BSTORE(Z7)
	BSTORE(Z8)
	BSTORE(Z9)
	BSTORE(Z10)
	BSTORE(Z11)
	VZEROUPPER
	RET

// func bf16PanelX8Asm(y *float32, ldy int, x *float32, xstride int, panel *uint16, cols int)
//
// For t < 8, r < 16: y[t·ldy + r] = Σ_{k<cols} bf16(panel[16k+r])·x[xstride·k+t];
// ldy and xstride in floats.
TEXT ·bf16PanelX8Asm(SB), NOSPLIT, $0-48
	MOVQ x+16(FP), SI
	MOVQ xstride+24(FP), R9
	SHLQ $2, R9
	MOVQ panel+32(FP), AX
	MOVQ cols+40(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	SUBQ $2, CX
	JLT  bx8tail

bx8pair:
	PREFETCHT0 4096(AX)
	BCOL(0, Z24)
	BCOL(32, Z25)
	BFMA0(0, Z24, Z0)
	BFMA0(1, Z24, Z1)
	BFMA0(2, Z24, Z2)
	BFMA0(3, Z24, Z3)
	BFMA0(4, Z24, Z4)
	BFMA0(5, Z24, Z5)
	BFMA0(6, Z24, Z6)
	BFMA0(7, Z24, Z7)
	BFMA1(0, Z25, Z0)
	BFMA1(1, Z25, Z1)
	BFMA1(2, Z25, Z2)
	BFMA1(3, Z25, Z3)
	BFMA1(4, Z25, Z4)
	BFMA1(5, Z25, Z5)
	BFMA1(6, Z25, Z6)
	BFMA1(7, Z25, Z7)
	ADDQ $64, AX
	LEAQ (SI)(R9*2), SI
	SUBQ $2, CX
	JGE  bx8pair

bx8tail:
	ADDQ $2, CX
	JZ   bx8done
	BCOL(0, Z24)
	BFMA0(0, Z24, Z0)
	BFMA0(1, Z24, Z1)
	BFMA0(2, Z24, Z2)
	BFMA0(3, Z24, Z3)
	BFMA0(4, Z24, Z4)
	BFMA0(5, Z24, Z5)
	BFMA0(6, Z24, Z6)
	BFMA0(7, Z24, Z7)

bx8done:
	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R8
	SHLQ $2, R8
	BSTORE(Z0)
	BSTORE(Z1)
	BSTORE(Z2)
	BSTORE(Z3)
	BSTORE(Z4)
	BSTORE(Z5)
	BSTORE(Z6)
	BSTORE(Z7)
	VZEROUPPER
	RET

// func bf16PanelX4Asm(y *float32, ldy int, x *float32, xstride int, panel *uint16, cols int)
//
// For t < 4, r < 16: y[t·ldy + r] = Σ_{k<cols} bf16(panel[16k+r])·x[xstride·k+t];
// ldy and xstride in floats.
TEXT ·bf16PanelX4Asm(SB), NOSPLIT, $0-48
	MOVQ x+16(FP), SI
	MOVQ xstride+24(FP), R9
	SHLQ $2, R9
	MOVQ panel+32(FP), AX
	MOVQ cols+40(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	SUBQ $2, CX
	JLT  bx4tail

bx4pair:
	PREFETCHT0 4096(AX)
	BCOL(0, Z24)
	BCOL(32, Z25)
	BFMA0(0, Z24, Z0)
	BFMA0(1, Z24, Z1)
	BFMA0(2, Z24, Z2)
	BFMA0(3, Z24, Z3)
	BFMA1(0, Z25, Z0)
	BFMA1(1, Z25, Z1)
	BFMA1(2, Z25, Z2)
	BFMA1(3, Z25, Z3)
	ADDQ $64, AX
	LEAQ (SI)(R9*2), SI
	SUBQ $2, CX
	JGE  bx4pair

bx4tail:
	ADDQ $2, CX
	JZ   bx4done
	BCOL(0, Z24)
	BFMA0(0, Z24, Z0)
	BFMA0(1, Z24, Z1)
	BFMA0(2, Z24, Z2)
	BFMA0(3, Z24, Z3)

bx4done:
	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R8
	SHLQ $2, R8
	BSTORE(Z0)
	BSTORE(Z1)
	BSTORE(Z2)
	BSTORE(Z3)
	VZEROUPPER
	RET

// func bf16PanelX1Asm(y *float32, ldy int, x *float32, xstride int, panel *uint16, cols int)
//
// For t < 1, r < 16: y[t·ldy + r] = Σ_{k<cols} bf16(panel[16k+r])·x[xstride·k+t];
// ldy and xstride in floats.
// Even and odd columns go to two accumulators (one chain of FMAs would
// wait on its latency), added at the end.
TEXT ·bf16PanelX1Asm(SB), NOSPLIT, $0-48
	MOVQ x+16(FP), SI
	MOVQ xstride+24(FP), R9
	SHLQ $2, R9
	MOVQ panel+32(FP), AX
	MOVQ cols+40(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	SUBQ $2, CX
	JLT  bx1tail

bx1pair:
	PREFETCHT0 4096(AX)
	BCOL(0, Z24)
	BCOL(32, Z25)
	BFMA0(0, Z24, Z0)
	BFMA1(0, Z25, Z1)
	ADDQ $64, AX
	LEAQ (SI)(R9*2), SI
	SUBQ $2, CX
	JGE  bx1pair

bx1tail:
	ADDQ $2, CX
	JZ   bx1done
	BCOL(0, Z24)
	BFMA0(0, Z24, Z0)

bx1done:
	VADDPS Z1, Z0, Z0
	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R8
	SHLQ $2, R8
	BSTORE(Z0)
	VZEROUPPER
	RET
