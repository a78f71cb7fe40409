//go:build amd64 && !purego

#include "textflag.h"
#include "vec_amd64.h"

// The packed GEMM's micro-kernel and panel packing (gemm.go).

// ROW(xrow, acc0, acc1): broadcast one token's activation at this column
// and multiply it by the panel's two vectors of weights (Y12, Y13).
#define ROW(xrow, acc0, acc1) \
	VBROADCASTSS xrow, Y14      \
	VFMADD231PS  Y12, Y14, acc0 \
	VFMADD231PS  Y13, Y14, acc1

// func gemm6x16Asm(y *float32, ldy int, x *float32, ldx int, p *float32, k int, acc bool)
// Y(2i), Y(2i+1) accumulate token i's 16 outputs. Tokens 0-2 are at SI,
// SI+DX, SI+2·DX; tokens 3-5 at BX = SI+3·DX likewise.
TEXT ·gemm6x16Asm(SB), NOSPLIT, $0-49
	MOVQ   x+16(FP), SI
	MOVQ   ldx+24(FP), DX
	SHLQ   $2, DX
	LEAQ   (SI)(DX*2), BX
	ADDQ   DX, BX
	MOVQ   p+32(FP), DI
	MOVQ   k+40(FP), CX
	ZERO12

g6loop:
	TESTQ   CX, CX
	JZ      g6store
	VMOVUPS (DI), Y12
	VMOVUPS 32(DI), Y13
	ROW((SI), Y0, Y1)
	ROW((SI)(DX*1), Y2, Y3)
	ROW((SI)(DX*2), Y4, Y5)
	ROW((BX), Y6, Y7)
	ROW((BX)(DX*1), Y8, Y9)
	ROW((BX)(DX*2), Y10, Y11)
	ADDQ    $4, SI
	ADDQ    $4, BX
	ADDQ    $64, DI
	DECQ    CX
	JMP     g6loop

g6store:
	MOVQ    y+0(FP), AX
	MOVQ    ldy+8(FP), R8
	SHLQ    $2, R8
	LEAQ    (AX)(R8*2), R9
	ADDQ    R8, R9
	MOVBLZX acc+48(FP), R10
	TESTQ   R10, R10
	JZ      g6put
	VADDPS  (AX), Y0, Y0
	VADDPS  32(AX), Y1, Y1
	VADDPS  (AX)(R8*1), Y2, Y2
	VADDPS  32(AX)(R8*1), Y3, Y3
	VADDPS  (AX)(R8*2), Y4, Y4
	VADDPS  32(AX)(R8*2), Y5, Y5
	VADDPS  (R9), Y6, Y6
	VADDPS  32(R9), Y7, Y7
	VADDPS  (R9)(R8*1), Y8, Y8
	VADDPS  32(R9)(R8*1), Y9, Y9
	VADDPS  (R9)(R8*2), Y10, Y10
	VADDPS  32(R9)(R8*2), Y11, Y11

g6put:
	VMOVUPS Y0, (AX)
	VMOVUPS Y1, 32(AX)
	VMOVUPS Y2, (AX)(R8*1)
	VMOVUPS Y3, 32(AX)(R8*1)
	VMOVUPS Y4, (AX)(R8*2)
	VMOVUPS Y5, 32(AX)(R8*2)
	VMOVUPS Y6, (R9)
	VMOVUPS Y7, 32(R9)
	VMOVUPS Y8, (R9)(R8*1)
	VMOVUPS Y9, 32(R9)(R8*1)
	VMOVUPS Y10, (R9)(R8*2)
	VMOVUPS Y11, 32(R9)(R8*2)
	VZEROUPPER
	RET

// TRANSPOSE8: Y0-Y7 hold 8 rows of 8 columns; afterwards Y8-Y15 hold the
// 8 columns (Y0-Y7 are clobbered).
#define TRANSPOSE8 \
	VUNPCKLPS  Y1, Y0, Y8        \
	VUNPCKHPS  Y1, Y0, Y9        \
	VUNPCKLPS  Y3, Y2, Y10       \
	VUNPCKHPS  Y3, Y2, Y11       \
	VUNPCKLPS  Y5, Y4, Y12       \
	VUNPCKHPS  Y5, Y4, Y13       \
	VUNPCKLPS  Y7, Y6, Y14       \
	VUNPCKHPS  Y7, Y6, Y15       \
	VSHUFPS    $0x44, Y10, Y8, Y0  \
	VSHUFPS    $0xEE, Y10, Y8, Y1  \
	VSHUFPS    $0x44, Y11, Y9, Y2  \
	VSHUFPS    $0xEE, Y11, Y9, Y3  \
	VSHUFPS    $0x44, Y14, Y12, Y4 \
	VSHUFPS    $0xEE, Y14, Y12, Y5 \
	VSHUFPS    $0x44, Y15, Y13, Y6 \
	VSHUFPS    $0xEE, Y15, Y13, Y7 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VPERM2F128 $0x20, Y5, Y1, Y9 \
	VPERM2F128 $0x20, Y6, Y2, Y10 \
	VPERM2F128 $0x20, Y7, Y3, Y11 \
	VPERM2F128 $0x31, Y4, Y0, Y12 \
	VPERM2F128 $0x31, Y5, Y1, Y13 \
	VPERM2F128 $0x31, Y6, Y2, Y14 \
	VPERM2F128 $0x31, Y7, Y3, Y15

// HALF(base, off): rows base.. base+7 (R9 = base+3 rows, R10 = base+6
// rows) at the current 8 columns, transposed into the panel at DI+off:
// column j's 8 values go to DI + 64·j + off.
#define HALF(base, off) \
	LEAQ    (base)(DX*2), R9     \
	ADDQ    DX, R9               \
	LEAQ    (R9)(DX*2), R10      \
	ADDQ    DX, R10              \
	VMOVUPS (base), Y0           \
	VMOVUPS (base)(DX*1), Y1     \
	VMOVUPS (base)(DX*2), Y2     \
	VMOVUPS (R9), Y3             \
	VMOVUPS (base)(DX*4), Y4     \
	VMOVUPS (R9)(DX*2), Y5       \
	VMOVUPS (R10), Y6            \
	VMOVUPS (R10)(DX*1), Y7      \
	TRANSPOSE8                   \
	VMOVUPS Y8, off(DI)          \
	VMOVUPS Y9, 64+off(DI)       \
	VMOVUPS Y10, 128+off(DI)     \
	VMOVUPS Y11, 192+off(DI)     \
	VMOVUPS Y12, 256+off(DI)     \
	VMOVUPS Y13, 320+off(DI)     \
	VMOVUPS Y14, 384+off(DI)     \
	VMOVUPS Y15, 448+off(DI)

// func pack16Asm(pk, w *float32, ldw, k int)
// pk[c*16+i] = w[i*ldw+c] for i < 16, c < k (k a multiple of 8): 8
// columns at a time, rows 0-7 (SI) and 8-15 (R11 = SI + 8 rows).
TEXT ·pack16Asm(SB), NOSPLIT, $0-32
	MOVQ pk+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ ldw+16(FP), DX
	SHLQ $2, DX
	MOVQ k+24(FP), CX
	LEAQ (SI)(DX*8), R11

p16loop:
	CMPQ CX, $8
	JL   p16done
	HALF(SI, 0)
	HALF(R11, 32)
	ADDQ $32, SI
	ADDQ $32, R11
	ADDQ $512, DI
	SUBQ $8, CX
	JMP  p16loop

p16done:
	VZEROUPPER
	RET
