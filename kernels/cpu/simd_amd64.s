//go:build amd64 && !purego

#include "textflag.h"
#include "vec_amd64.h"

// AVX2/FMA inner loops. The Go wrappers in simd_amd64.go check bounds.
//
// NF4 decoding in element order (the general path, for rows that do not
// start on a block), 8 elements (4 packed bytes) at a time: the 4 bytes are
// broadcast to the 8 dword lanes and lane i is shifted right so that its
// nibble is in bits 0-3 (element 2j is the high nibble of byte j, 2j+1 the
// low one: shifts 4,0,12,8,20,16,28,24). VPERMPS looks up bits 0-2 in the
// table of codes 0-7 and in that of codes 8-15, and bit 3, moved to the sign
// bit, chooses between them. The tables are pre-multiplied by the block's
// absmax, so the decoded values are exactly float32(code·absmax).

DATA nf4shifts<>+0(SB)/4, $4
DATA nf4shifts<>+4(SB)/4, $0
DATA nf4shifts<>+8(SB)/4, $12
DATA nf4shifts<>+12(SB)/4, $8
DATA nf4shifts<>+16(SB)/4, $20
DATA nf4shifts<>+20(SB)/4, $16
DATA nf4shifts<>+24(SB)/4, $28
DATA nf4shifts<>+28(SB)/4, $24
GLOBL nf4shifts<>(SB), RODATA|NOPTR, $32

// tailmask+4*(8-r) is a VMASKMOVPS mask of r leading lanes.
DATA tailmask<>+0(SB)/8, $-1
DATA tailmask<>+8(SB)/8, $-1
DATA tailmask<>+16(SB)/8, $-1
DATA tailmask<>+24(SB)/8, $-1
DATA tailmask<>+32(SB)/8, $0
DATA tailmask<>+40(SB)/8, $0
DATA tailmask<>+48(SB)/8, $0
DATA tailmask<>+56(SB)/8, $0
GLOBL tailmask<>(SB), RODATA|NOPTR, $64

// NF4 decodes packed bytes off(SI)..off+3(SI) into dst, with the scaled
// tables in Y12 (codes 0-7) and Y13 (codes 8-15) and the shifts in Y10.
// Clobbers Y4 and Y6.
#define NF4(off, dst) \
	VPBROADCASTD off(SI), Y4; \
	VPSRLVD      Y10, Y4, Y4; \
	VPERMPS      Y12, Y4, dst; \
	VPERMPS      Y13, Y4, Y6; \
	VPSLLD       $28, Y4, Y4; \
	VBLENDVPS    Y4, Y6, dst, dst

// SCALE loads the tables for the block whose absmax is at (DX).
#define SCALE \
	VBROADCASTSS (DX), Y11; \
	VMULPS       Y8, Y11, Y12; \
	VMULPS       Y9, Y11, Y13

// func dotNF4BlocksAsm(code *[16]float32, packed *byte, absmax, x *float32, n int) float32
TEXT ·dotNF4BlocksAsm(SB), NOSPLIT, $0-44
	MOVQ    code+0(FP), AX
	MOVQ    packed+8(FP), SI
	MOVQ    absmax+16(FP), DX
	MOVQ    x+24(FP), DI
	MOVQ    n+32(FP), CX
	VMOVUPS (AX), Y8
	VMOVUPS 32(AX), Y9
	VMOVDQU nf4shifts<>(SB), Y10
	VXORPS  Y0, Y0, Y0
	VXORPS  Y1, Y1, Y1
	VXORPS  Y2, Y2, Y2
	VXORPS  Y3, Y3, Y3

nf4dotblock:
	SCALE
	NF4(0, Y5)
	VFMADD231PS 0(DI), Y5, Y0
	NF4(4, Y7)
	VFMADD231PS 32(DI), Y7, Y1
	NF4(8, Y5)
	VFMADD231PS 64(DI), Y5, Y2
	NF4(12, Y7)
	VFMADD231PS 96(DI), Y7, Y3
	NF4(16, Y5)
	VFMADD231PS 128(DI), Y5, Y0
	NF4(20, Y7)
	VFMADD231PS 160(DI), Y7, Y1
	NF4(24, Y5)
	VFMADD231PS 192(DI), Y5, Y2
	NF4(28, Y7)
	VFMADD231PS 224(DI), Y7, Y3
	ADDQ        $32, SI
	ADDQ        $4, DX
	ADDQ        $256, DI
	DECQ        CX
	JNZ         nf4dotblock

	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	HSUM
	VZEROUPPER
	MOVSS        X0, ret+40(FP)
	RET

// func dequantNF4BlocksAsm(dst *float32, code *[16]float32, packed *byte, absmax *float32, n int)
TEXT ·dequantNF4BlocksAsm(SB), NOSPLIT, $0-40
	MOVQ    dst+0(FP), DI
	MOVQ    code+8(FP), AX
	MOVQ    packed+16(FP), SI
	MOVQ    absmax+24(FP), DX
	MOVQ    n+32(FP), CX
	VMOVUPS (AX), Y8
	VMOVUPS 32(AX), Y9
	VMOVDQU nf4shifts<>(SB), Y10

nf4deqblock:
	SCALE
	NF4(0, Y5)
	VMOVUPS Y5, 0(DI)
	NF4(4, Y7)
	VMOVUPS Y7, 32(DI)
	NF4(8, Y5)
	VMOVUPS Y5, 64(DI)
	NF4(12, Y7)
	VMOVUPS Y7, 96(DI)
	NF4(16, Y5)
	VMOVUPS Y5, 128(DI)
	NF4(20, Y7)
	VMOVUPS Y7, 160(DI)
	NF4(24, Y5)
	VMOVUPS Y5, 192(DI)
	NF4(28, Y7)
	VMOVUPS Y7, 224(DI)
	ADDQ    $32, SI
	ADDQ    $4, DX
	ADDQ    $256, DI
	DECQ    CX
	JNZ     nf4deqblock
	VZEROUPPER
	RET

// TAILMASK sets Y15 to the mask of the CX (1..7) leading lanes.
#define TAILMASK \
	LEAQ    tailmask<>+32(SB), AX; \
	SHLQ    $2, CX; \
	SUBQ    CX, AX; \
	VMOVDQU (AX), Y15

// func dotAsm(a, b *float32, n int) float32
TEXT ·dotAsm(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

dot32:
	CMPQ        CX, $32
	JL          dot8
	VMOVUPS     0(SI), Y4
	VFMADD231PS 0(DI), Y4, Y0
	VMOVUPS     32(SI), Y5
	VFMADD231PS 32(DI), Y5, Y1
	VMOVUPS     64(SI), Y6
	VFMADD231PS 64(DI), Y6, Y2
	VMOVUPS     96(SI), Y7
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         dot32

dot8:
	CMPQ        CX, $8
	JL          dottail
	VMOVUPS     0(SI), Y4
	VFMADD231PS 0(DI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         dot8

dottail:
	TESTQ       CX, CX
	JZ          dotsum
	TAILMASK
	VMASKMOVPS  (SI), Y15, Y4
	VMASKMOVPS  (DI), Y15, Y5
	VFMADD231PS Y5, Y4, Y1

dotsum:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	HSUM
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET

// SUM4 stores to off(AX) the totals of the 4 accumulators a, b, c, d.
// Clobbers Y12, Y13.
#define SUM4(a, b, c, d, off) \
	VHADDPS      b, a, Y12; \
	VHADDPS      d, c, Y13; \
	VHADDPS      Y13, Y12, Y12; \
	VEXTRACTF128 $1, Y12, X13; \
	VADDPS       X13, X12, X12; \
	VMOVUPS      X12, off(AX)

// func axpyAsm(y *float32, a float32, x *float32, n int)
TEXT ·axpyAsm(SB), NOSPLIT, $0-32
	MOVQ         y+0(FP), DI
	VBROADCASTSS a+8(FP), Y0
	MOVQ         x+16(FP), SI
	MOVQ         n+24(FP), CX

axpy8:
	CMPQ        CX, $8
	JL          axpytail
	VMOVUPS     (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $32, DI
	ADDQ        $32, SI
	SUBQ        $8, CX
	JMP         axpy8

axpytail:
	TESTQ       CX, CX
	JZ          axpydone
	TAILMASK
	VMASKMOVPS  (DI), Y15, Y1
	VMASKMOVPS  (SI), Y15, Y2
	VFMADD231PS Y2, Y0, Y1
	VMASKMOVPS  Y1, Y15, (DI)

axpydone:
	VZEROUPPER
	RET

// The "planes" NF4 kernels decode a whole block without any cross-lane
// shuffle: VPSHUFB looks the 32 high (or low) nibbles of a block up in four
// 16-entry tables, one per byte of the float32 code, and byte/word unpacks
// assemble the floats. The floats come out in a fixed permuted order (see
// permuteBlocks), so the caller permutes x the same way once per call.

DATA nibmask<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nibmask<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nibmask<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nibmask<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL nibmask<>(SB), RODATA|NOPTR, $32

// PLANES looks up the 32 nibbles in idx (one per byte) in the byte-plane
// tables Y8-Y11 and assembles the floats of bytes [0-3|16-19] into d0,
// [4-7|20-23] into d1, [8-11|24-27] into d2, [12-15|28-31] into d3.
// Clobbers Y2, Y3.
#define PLANES(idx, d0, d1, d2, d3) \
	VPSHUFB    idx, Y8, Y2; \
	VPSHUFB    idx, Y9, Y3; \
	VPSHUFB    idx, Y10, d0; \
	VPSHUFB    idx, Y11, d1; \
	VPUNPCKLBW Y3, Y2, d2; \
	VPUNPCKHBW Y3, Y2, d3; \
	VPUNPCKLBW d1, d0, Y2; \
	VPUNPCKHBW d1, d0, Y3; \
	VPUNPCKLWD Y2, d2, d0; \
	VPUNPCKHWD Y2, d2, d1; \
	VPUNPCKLWD Y3, d3, d2; \
	VPUNPCKHWD Y3, d3, d3

// NIBBLES loads the block at (SI): low nibbles (odd elements) to Y0, high
// nibbles (even elements) to Y1.
#define NIBBLES \
	VMOVDQU (SI), Y0; \
	VPSRLW  $4, Y0, Y1; \
	VPAND   Y15, Y0, Y0; \
	VPAND   Y15, Y1, Y1

#define LOADPLANES \
	VMOVDQU 0(AX), Y8; \
	VMOVDQU 32(AX), Y9; \
	VMOVDQU 64(AX), Y10; \
	VMOVDQU 96(AX), Y11; \
	VMOVDQU nibmask<>(SB), Y15

// func dotNF4PlanesAsm(planes *[4][32]byte, packed *byte, absmax, x *float32, n int) float32
TEXT ·dotNF4PlanesAsm(SB), NOSPLIT, $0-44
	MOVQ   planes+0(FP), AX
	MOVQ   packed+8(FP), SI
	MOVQ   absmax+16(FP), DX
	MOVQ   x+24(FP), DI
	MOVQ   n+32(FP), CX
	LOADPLANES
	VXORPS Y14, Y14, Y14

planesdot:
	NIBBLES
	PLANES(Y1, Y4, Y5, Y6, Y7)
	VMULPS       0(DI), Y4, Y12
	VMULPS       32(DI), Y5, Y13
	VFMADD231PS  64(DI), Y6, Y12
	VFMADD231PS  96(DI), Y7, Y13
	PLANES(Y0, Y4, Y5, Y6, Y7)
	VFMADD231PS  128(DI), Y4, Y12
	VFMADD231PS  160(DI), Y5, Y13
	VFMADD231PS  192(DI), Y6, Y12
	VFMADD231PS  224(DI), Y7, Y13
	VBROADCASTSS (DX), Y2
	VADDPS       Y13, Y12, Y12
	VFMADD231PS  Y12, Y2, Y14
	ADDQ         $32, SI
	ADDQ         $4, DX
	ADDQ         $256, DI
	DECQ         CX
	JNZ          planesdot

	VEXTRACTF128 $1, Y14, X1
	VADDPS       X1, X14, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+40(FP)
	RET

// STORE4 scales d0-d3 by Y12 and stores them from off(DI) on.
#define STORE4(d0, d1, d2, d3, off) \
	VMULPS  Y12, d0, d0; \
	VMULPS  Y12, d1, d1; \
	VMULPS  Y12, d2, d2; \
	VMULPS  Y12, d3, d3; \
	VMOVUPS d0, (off)(DI); \
	VMOVUPS d1, (off+32)(DI); \
	VMOVUPS d2, (off+64)(DI); \
	VMOVUPS d3, (off+96)(DI)

// func dequantNF4PlanesAsm(dst *float32, planes *[4][32]byte, packed *byte, absmax *float32, n int)
TEXT ·dequantNF4PlanesAsm(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ planes+8(FP), AX
	MOVQ packed+16(FP), SI
	MOVQ absmax+24(FP), DX
	MOVQ n+32(FP), CX
	LOADPLANES

planesdeq:
	VBROADCASTSS (DX), Y12
	NIBBLES
	PLANES(Y1, Y4, Y5, Y6, Y7)
	STORE4(Y4, Y5, Y6, Y7, 0)
	PLANES(Y0, Y4, Y5, Y6, Y7)
	STORE4(Y4, Y5, Y6, Y7, 128)
	ADDQ         $32, SI
	ADDQ         $4, DX
	ADDQ         $256, DI
	DECQ         CX
	JNZ          planesdeq
	VZEROUPPER
	RET

// FMA3 multiplies the x vector in Y15 by the 3 w vectors Y12-Y14 into a, b, c.
#define FMA3(a, b, c) \
	VFMADD231PS Y12, Y15, a; \
	VFMADD231PS Y13, Y15, b; \
	VFMADD231PS Y14, Y15, c

// FMA4M adds, for the w vector in Y12, the masked (Y15) x rows times Y12
// into a, b, c, d (tail only). Clobbers Y13.
#define FMA4M(a, b, c, d) \
	VMASKMOVPS  (DI)(BX*1), Y15, Y13; \
	VFMADD231PS Y12, Y13, a; \
	VMASKMOVPS  (R8)(BX*1), Y15, Y13; \
	VFMADD231PS Y12, Y13, b; \
	VMASKMOVPS  (R9)(BX*1), Y15, Y13; \
	VFMADD231PS Y12, Y13, c; \
	VMASKMOVPS  (R10)(BX*1), Y15, Y13; \
	VFMADD231PS Y12, Y13, d

// func dot4x3Asm(s *[12]float32, x0, x1, x2, x3, w *float32, ldw, k int)
// s[3*i+j] = Σ_{c<k} x_i[c]·w[j*ldw+c], i < 4, j < 3, in accumulator
// Y(3i+j): 3 w vectors stay in registers while each x vector is loaded once
// for 3 FMAs.
TEXT ·dot4x3Asm(SB), NOSPLIT, $0-64
	MOVQ   x0+8(FP), DI
	MOVQ   x1+16(FP), R8
	MOVQ   x2+24(FP), R9
	MOVQ   x3+32(FP), R10
	MOVQ   w+40(FP), SI
	MOVQ   ldw+48(FP), AX
	SHLQ   $2, AX
	LEAQ   (SI)(AX*1), R11
	LEAQ   (R11)(AX*1), R12
	MOVQ   k+56(FP), CX
	XORQ   BX, BX
	ZERO12

d43loop:
	CMPQ    CX, $8
	JL      d43tail
	VMOVUPS (SI)(BX*1), Y12
	VMOVUPS (R11)(BX*1), Y13
	VMOVUPS (R12)(BX*1), Y14
	VMOVUPS (DI)(BX*1), Y15
	FMA3(Y0, Y1, Y2)
	VMOVUPS (R8)(BX*1), Y15
	FMA3(Y3, Y4, Y5)
	VMOVUPS (R9)(BX*1), Y15
	FMA3(Y6, Y7, Y8)
	VMOVUPS (R10)(BX*1), Y15
	FMA3(Y9, Y10, Y11)
	ADDQ    $32, BX
	SUBQ    $8, CX
	JMP     d43loop

d43tail:
	TESTQ      CX, CX
	JZ         d43sum
	TAILMASK
	VMASKMOVPS (SI)(BX*1), Y15, Y12
	FMA4M(Y0, Y3, Y6, Y9)
	VMASKMOVPS (R11)(BX*1), Y15, Y12
	FMA4M(Y1, Y4, Y7, Y10)
	VMASKMOVPS (R12)(BX*1), Y15, Y12
	FMA4M(Y2, Y5, Y8, Y11)

d43sum:
	MOVQ s+0(FP), AX
	SUM4(Y0, Y1, Y2, Y3, 0)
	SUM4(Y4, Y5, Y6, Y7, 16)
	SUM4(Y8, Y9, Y10, Y11, 32)
	VZEROUPPER
	RET

// ROWFMA adds z (broadcast in Y8) times the 8 floats at off(R10) to acc.
#define ROWFMA(off, acc) \
	VFMADD231PS off(R10), Y8, acc

// func axpyRowsF32Asm(y, z, rows *float32, ld, n, k int)
// y[o] += z[r]·rows[r·ld+o] for r = 0, 1, ..., k-1 in turn (one FMA each,
// as an axpy per row would), o < n&^7, k >= 1: attention's value rows
// weighted by their probabilities with the output in registers.
TEXT ·axpyRowsF32Asm(SB), NOSPLIT, $0-48
	MOVQ y+0(FP), DI
	MOVQ z+8(FP), DX
	MOVQ rows+16(FP), SI
	MOVQ ld+24(FP), R8
	SHLQ $2, R8
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), R9

rows32:
	CMPQ    CX, $32
	JL      rows8
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	MOVQ    SI, R10
	MOVQ    DX, R11
	MOVQ    R9, R12

rows32row:
	VBROADCASTSS (R11), Y8
	ROWFMA(0, Y0)
	ROWFMA(32, Y1)
	ROWFMA(64, Y2)
	ROWFMA(96, Y3)
	ADDQ         R8, R10
	ADDQ         $4, R11
	DECQ         R12
	JNZ          rows32row
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	ADDQ         $128, DI
	ADDQ         $128, SI
	SUBQ         $32, CX
	JMP          rows32

rows8:
	CMPQ    CX, $8
	JL      rowsdone
	VMOVUPS (DI), Y0
	MOVQ    SI, R10
	MOVQ    DX, R11
	MOVQ    R9, R12

rows8row:
	VBROADCASTSS (R11), Y8
	ROWFMA(0, Y0)
	ADDQ         R8, R10
	ADDQ         $4, R11
	DECQ         R12
	JNZ          rows8row
	VMOVUPS      Y0, (DI)
	ADDQ         $32, DI
	ADDQ         $32, SI
	SUBQ         $8, CX
	JMP          rows8

rowsdone:
	VZEROUPPER
	RET
