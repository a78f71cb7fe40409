//go:build amd64 && !purego

#include "textflag.h"
#include "vec_amd64.h"

// AVX2/FMA kernels for BF16 and Q8 weights. The Go wrappers in
// bf16q8_amd64.go check bounds.
//
// bfloat16 is the top half of a float32: VPMOVZXWD widens 8 of them to
// dwords and VPSLLD $16 moves them into place. Q8 codes are sign-extended
// (VPMOVSXBD), converted exactly (VCVTDQ2PS) and scaled once per block of 32.

// BF16 loads the 8 bfloat16 at off(SI) into dst as float32.
#define BF16(off, dst) \
	VPMOVZXWD off(SI), dst; \
	VPSLLD    $16, dst, dst

// func dotBF16Asm(w *uint16, x *float32, n int) float32
TEXT ·dotBF16Asm(SB), NOSPLIT, $0-28
	MOVQ   w+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

bf16dot32:
	CMPQ        CX, $32
	JL          bf16dot8
	BF16(0, Y4)
	BF16(16, Y5)
	BF16(32, Y6)
	BF16(48, Y7)
	VFMADD231PS 0(DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $64, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         bf16dot32

bf16dot8:
	CMPQ        CX, $8
	JL          bf16dotsum
	BF16(0, Y4)
	VFMADD231PS 0(DI), Y4, Y0
	ADDQ        $16, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         bf16dot8

bf16dotsum:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func decodeBF16Asm(dst *float32, w *uint16, n int)
TEXT ·decodeBF16Asm(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ n+16(FP), CX

bf16deq32:
	CMPQ    CX, $32
	JL      bf16deq8
	BF16(0, Y4)
	BF16(16, Y5)
	BF16(32, Y6)
	BF16(48, Y7)
	VMOVUPS Y4, 0(DI)
	VMOVUPS Y5, 32(DI)
	VMOVUPS Y6, 64(DI)
	VMOVUPS Y7, 96(DI)
	ADDQ    $64, SI
	ADDQ    $128, DI
	SUBQ    $32, CX
	JMP     bf16deq32

bf16deq8:
	CMPQ    CX, $8
	JL      bf16deqdone
	BF16(0, Y4)
	VMOVUPS Y4, 0(DI)
	ADDQ    $16, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     bf16deq8

bf16deqdone:
	VZEROUPPER
	RET

// Q8LOAD loads the 32 codes of the block at qo(SI) into Y4-Y7 as float32.
#define Q8LOAD(qo) \
	VPMOVSXBD qo(SI), Y4; \
	VPMOVSXBD (qo+8)(SI), Y5; \
	VPMOVSXBD (qo+16)(SI), Y6; \
	VPMOVSXBD (qo+24)(SI), Y7; \
	VCVTDQ2PS Y4, Y4; \
	VCVTDQ2PS Y5, Y5; \
	VCVTDQ2PS Y6, Y6; \
	VCVTDQ2PS Y7, Y7

// Q8DOT adds scale·(q·x) of the block at qo(SI), xo(DI), scale so(DX) to
// acc. Clobbers Y4-Y8.
#define Q8DOT(qo, xo, so, acc) \
	Q8LOAD(qo); \
	VMULPS       xo(DI), Y4, Y4; \
	VMULPS       (xo+32)(DI), Y5, Y5; \
	VFMADD231PS  (xo+64)(DI), Y6, Y4; \
	VFMADD231PS  (xo+96)(DI), Y7, Y5; \
	VADDPS       Y5, Y4, Y4; \
	VBROADCASTSS so(DX), Y8; \
	VFMADD231PS  Y8, Y4, acc

// func dotQ8Asm(q *int8, scale, x *float32, nb int) float32
// Two blocks per iteration into two accumulators, so that consecutive
// blocks' final FMAs do not wait on each other.
TEXT ·dotQ8Asm(SB), NOSPLIT, $0-36
	MOVQ   q+0(FP), SI
	MOVQ   scale+8(FP), DX
	MOVQ   x+16(FP), DI
	MOVQ   nb+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

q8dot2:
	CMPQ CX, $2
	JL   q8dot1
	Q8DOT(0, 0, 0, Y0)
	Q8DOT(32, 128, 4, Y1)
	ADDQ $64, SI
	ADDQ $8, DX
	ADDQ $256, DI
	SUBQ $2, CX
	JMP  q8dot2

q8dot1:
	TESTQ CX, CX
	JZ    q8dotsum
	Q8DOT(0, 0, 0, Y0)

q8dotsum:
	VADDPS Y1, Y0, Y0
	HSUM
	VZEROUPPER
	MOVSS  X0, ret+32(FP)
	RET

// func decodeQ8Asm(dst *float32, q *int8, scale *float32, nb int)
TEXT ·decodeQ8Asm(SB), NOSPLIT, $0-32
	MOVQ  dst+0(FP), DI
	MOVQ  q+8(FP), SI
	MOVQ  scale+16(FP), DX
	MOVQ  nb+24(FP), CX
	TESTQ CX, CX
	JZ    q8deqdone

q8deq:
	Q8LOAD(0)
	VBROADCASTSS (DX), Y8
	VMULPS       Y8, Y4, Y4
	VMULPS       Y8, Y5, Y5
	VMULPS       Y8, Y6, Y6
	VMULPS       Y8, Y7, Y7
	VMOVUPS      Y4, 0(DI)
	VMOVUPS      Y5, 32(DI)
	VMOVUPS      Y6, 64(DI)
	VMOVUPS      Y7, 96(DI)
	ADDQ         $32, SI
	ADDQ         $4, DX
	ADDQ         $128, DI
	DECQ         CX
	JNZ          q8deq

q8deqdone:
	VZEROUPPER
	RET

// The 4x3 kernels multiply 3 rows by 4 tokens' x, like dot4x3Asm: 12 sums
// in Y0-Y11 (Y(3i+j) for token i, row j), the 3 rows' decoded weights in
// Y12-Y14, each x vector loaded once into Y15 for 3 FMAs. DX is the element
// index: weights at DX*2 (bf16) or DX (q8) bytes, x at DX*4.

// FMAX3 loads 8 floats of x at (p)(DX*4) and adds them times the 3 rows'
// weights into a, b, c.
#define FMAX3(p, a, b, c) \
	VMOVUPS     (p)(DX*4), Y15; \
	VFMADD231PS Y12, Y15, a; \
	VFMADD231PS Y13, Y15, b; \
	VFMADD231PS Y14, Y15, c

#define FMA12 \
	FMAX3(DI, Y0, Y1, Y2); \
	FMAX3(R8, Y3, Y4, Y5); \
	FMAX3(R9, Y6, Y7, Y8); \
	FMAX3(R10, Y9, Y10, Y11)

// TOTAL4 stores to off(AX) the totals of the 4 accumulators a, b, c, d.
// Clobbers Y12, Y13.
#define TOTAL4(a, b, c, d, off) \
	VHADDPS      b, a, Y12; \
	VHADDPS      d, c, Y13; \
	VHADDPS      Y13, Y12, Y12; \
	VEXTRACTF128 $1, Y12, X13; \
	VADDPS       X13, X12, X12; \
	VMOVUPS      X12, off(AX)

#define TOTAL12 \
	TOTAL4(Y0, Y1, Y2, Y3, 0); \
	TOTAL4(Y4, Y5, Y6, Y7, 16); \
	TOTAL4(Y8, Y9, Y10, Y11, 32)

// func dot4x3BF16Asm(s *[12]float32, x0, x1, x2, x3 *float32, w *uint16, ldw, k int)
// s[3*i+j] = Σ_{c < k&^7} x_i[c]·bf16(w[j*ldw+c]).
TEXT ·dot4x3BF16Asm(SB), NOSPLIT, $0-64
	MOVQ x0+8(FP), DI
	MOVQ x1+16(FP), R8
	MOVQ x2+24(FP), R9
	MOVQ x3+32(FP), R10
	MOVQ w+40(FP), SI
	MOVQ ldw+48(FP), AX
	LEAQ (SI)(AX*2), R11
	LEAQ (R11)(AX*2), R12
	MOVQ k+56(FP), CX
	XORQ DX, DX
	ZERO12

bf16x12:
	CMPQ      CX, $8
	JL        bf16x12sum
	VPMOVZXWD (SI)(DX*2), Y12
	VPMOVZXWD (R11)(DX*2), Y13
	VPMOVZXWD (R12)(DX*2), Y14
	VPSLLD    $16, Y12, Y12
	VPSLLD    $16, Y13, Y13
	VPSLLD    $16, Y14, Y14
	FMA12
	ADDQ      $8, DX
	SUBQ      $8, CX
	JMP       bf16x12

bf16x12sum:
	MOVQ s+0(FP), AX
	TOTAL12
	VZEROUPPER
	RET

// Q8ROWS decodes the 8 codes of each row at DX into Y12-Y14 as float32,
// times the rows' block scales broadcast at 0, 32, 64(AX): exactly ref's
// float32(q)·scale.
#define Q8ROWS \
	VPMOVSXBD (SI)(DX*1), Y12; \
	VPMOVSXBD (R11)(DX*1), Y13; \
	VPMOVSXBD (R12)(DX*1), Y14; \
	VCVTDQ2PS Y12, Y12; \
	VCVTDQ2PS Y13, Y13; \
	VCVTDQ2PS Y14, Y14; \
	VMULPS    0(AX), Y12, Y12; \
	VMULPS    32(AX), Y13, Y13; \
	VMULPS    64(AX), Y14, Y14

// func dot4x3Q8Asm(s *[12]float32, x0, x1, x2, x3 *float32, q *int8, scale *float32, ldq, nb int, tmp *[24]float32)
// s[3*i+j] = Σ_{c < 32·nb} x_i[c]·float32(q[j*ldq+c])·scale[(j*ldq+c)/32],
// ldq a multiple of 32; tmp holds the 3 rows' current scales, broadcast.
TEXT ·dot4x3Q8Asm(SB), NOSPLIT, $0-80
	MOVQ x0+8(FP), DI
	MOVQ x1+16(FP), R8
	MOVQ x2+24(FP), R9
	MOVQ x3+32(FP), R10
	MOVQ q+40(FP), SI
	MOVQ scale+48(FP), R13
	MOVQ ldq+56(FP), BX
	LEAQ (SI)(BX*1), R11
	LEAQ (R11)(BX*1), R12
	SHRQ $3, BX               // the scale stride in bytes: ldq/32 floats
	MOVQ nb+64(FP), CX
	MOVQ tmp+72(FP), AX
	XORQ DX, DX
	ZERO12
	TESTQ CX, CX
	JZ    q8x12sum

q8x12block:
	VBROADCASTSS (R13), Y12
	VBROADCASTSS (R13)(BX*1), Y13
	VBROADCASTSS (R13)(BX*2), Y14
	VMOVUPS      Y12, 0(AX)
	VMOVUPS      Y13, 32(AX)
	VMOVUPS      Y14, 64(AX)
	Q8ROWS
	FMA12
	ADDQ         $8, DX
	Q8ROWS
	FMA12
	ADDQ         $8, DX
	Q8ROWS
	FMA12
	ADDQ         $8, DX
	Q8ROWS
	FMA12
	ADDQ         $8, DX
	ADDQ         $4, R13
	DECQ         CX
	JNZ          q8x12block

q8x12sum:
	MOVQ s+0(FP), AX
	TOTAL12
	VZEROUPPER
	RET

// BT16FMA adds z (broadcast in Y8) times the 8 bfloat16 at off(R10) to acc.
#define BT16FMA(off, tmp, acc) \
	VPMOVZXWD   off(R10), tmp; \
	VPSLLD      $16, tmp, tmp; \
	VFMADD231PS Y8, tmp, acc

// func axpyRowsBF16Asm(y, z *float32, rows *uint16, ld, n, k int)
// y[o] += z[r]·bf16(rows[r·ld+o]) for r = 0, 1, ..., k-1 in turn (one
// FMA each, as an axpy per row would), o < n&^7, k >= 1: the outputs
// stay in registers across the rows (a LoRA expand's ranks, attention's
// value rows).
TEXT ·axpyRowsBF16Asm(SB), NOSPLIT, $0-48
	MOVQ y+0(FP), DI
	MOVQ z+8(FP), DX
	MOVQ rows+16(FP), SI
	MOVQ ld+24(FP), R8
	SHLQ $1, R8
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), R9

expand32:
	CMPQ    CX, $32
	JL      expand8
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	MOVQ    SI, R10
	MOVQ    DX, R11
	MOVQ    R9, R12

expand32rank:
	VBROADCASTSS (R11), Y8
	BT16FMA(0, Y4, Y0)
	BT16FMA(16, Y5, Y1)
	BT16FMA(32, Y6, Y2)
	BT16FMA(48, Y7, Y3)
	ADDQ         R8, R10
	ADDQ         $4, R11
	DECQ         R12
	JNZ          expand32rank
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	ADDQ         $128, DI
	ADDQ         $64, SI
	SUBQ         $32, CX
	JMP          expand32

expand8:
	CMPQ    CX, $8
	JL      expanddone
	VMOVUPS (DI), Y0
	MOVQ    SI, R10
	MOVQ    DX, R11
	MOVQ    R9, R12

expand8rank:
	VBROADCASTSS (R11), Y8
	BT16FMA(0, Y4, Y0)
	ADDQ         R8, R10
	ADDQ         $4, R11
	DECQ         R12
	JNZ          expand8rank
	VMOVUPS      Y0, (DI)
	ADDQ         $32, DI
	ADDQ         $16, SI
	SUBQ         $8, CX
	JMP          expand8

expanddone:
	VZEROUPPER
	RET
