//go:build amd64 && !purego

#include "textflag.h"

// NF4 panels × int8 activations on AVX-512 VNNI (see nf4panel.go for the
// weight layout, nf4gemm.go for the activations': groups of 12 tokens,
// each block [12][64] bytes in planes order, with d and bias [12]).
//
// A panel block is 16 rows × 64 values in 512 bytes of nibbles: 8 loads,
// each split into two vectors of 16 rows × 4 unsigned codes (code+128)
// with one shift, two ANDs and two VPSHUFB, then multiplied by every
// token's 4 activation bytes with one VPDPBUSD each (a lane is a row: no
// horizontal sums). The block's int32 sums start at -128·Σx (bias), which
// cancels the codes' +128, and are then scaled in float by absmax·d, the
// two products rounded separately and added in block order, as the pure
// Go kernel (dotNF4Int8Go) does, so the result is the same bit for bit.
//
// Napkin: per block and token, 16 VPDPBUSD do 1,024 MACs; the decode
// costs 48 vector ops per block, shared by the call's tokens. One token
// reads 576 bytes per 1,024 MACs: memory-bound; 8 or 12 tokens are
// compute-bound on the VPDPBUSD.

// PDEC decodes group h of the panel block at AX into Z24 (the high
// nibbles: planes positions 4h..4h+3) and Z30 (the low ones: 32+4h..).
// Z28 holds the nibble mask, Z29 the unsigned code table in each 128-bit
// lane. Clobbers Z27.
#define PDEC(h) \
	VMOVDQU32 h*64(AX), Z27; \
	VPSRLD    $4, Z27, Z24; \
	VPANDD    Z28, Z24, Z24; \
	VPANDD    Z28, Z27, Z30; \
	VPSHUFB   Z24, Z29, Z24; \
	VPSHUFB   Z30, Z29, Z30

// HI and LO add token t's products with group h's high or low nibbles to
// acc (the token's 64 bytes at SI+64t).
#define HI(t, h, acc) VPDPBUSD.BCST t*64+h*4(SI), Z24, acc
#define LO(t, h, acc) VPDPBUSD.BCST t*64+32+h*4(SI), Z30, acc

// PFETCH asks for the panel block 8 KiB ahead (8 cache lines) and its
// scales 1 KiB ahead (one line), for a stream from memory.
#define PFETCH \
	PREFETCHT0 8192(AX); \
	PREFETCHT0 8256(AX); \
	PREFETCHT0 8320(AX); \
	PREFETCHT0 8384(AX); \
	PREFETCHT0 8448(AX); \
	PREFETCHT0 8512(AX); \
	PREFETCHT0 8576(AX); \
	PREFETCHT0 8640(AX); \
	PREFETCHT0 1024(R11)

// PFLUSH adds token t's block total: f += float(i)·(absmax·d[t]), the
// block's 16 absmax (from R11) in Z25, both products rounded (as the Go
// twin's explicit conversions).
#define PFLUSH(t, i, f) \
	VCVTDQ2PS   i, i; \
	VMULPS.BCST t*4(DX), Z25, Z26; \
	VMULPS      Z26, i, i; \
	VADDPS      i, f, f

// PSTORE writes one token's 16 outputs at DI and steps DI to the next
// token's (R8 bytes on).
#define PSTORE(f) \
	VMOVUPS f, (DI); \
	ADDQ    R8, DI

// PARGS loads the arguments and constants common to the kernels.
#define PARGS \
	MOVQ            x+16(FP), SI; \
	MOVQ            d+24(FP), DX; \
	MOVQ            bias+32(FP), BX; \
	MOVQ            panel+40(FP), AX; \
	MOVQ            absmax+48(FP), R11; \
	MOVQ            nb+56(FP), CX; \
	MOVQ            utbl+64(FP), R10; \
	VBROADCASTI32X4 (R10), Z29; \
	MOVL            $0x0f0f0f0f, R10; \
	VPBROADCASTD    R10, Z28

// PNEXT steps to the next block and loops to label l.
#define PNEXT(l) \
	ADDQ $512, AX; \
	ADDQ $64, R11; \
	ADDQ $768, SI; \
	ADDQ $48, DX; \
	ADDQ $48, BX; \
	DECQ CX; \
	JNZ  l

// PAIR12 multiplies group h of the panel block by the 12 tokens.
#define PAIR12(h) \
	PDEC(h); \
	HI(0, h, Z12); \
	HI(1, h, Z13); \
	HI(2, h, Z14); \
	HI(3, h, Z15); \
	HI(4, h, Z16); \
	HI(5, h, Z17); \
	HI(6, h, Z18); \
	HI(7, h, Z19); \
	HI(8, h, Z20); \
	HI(9, h, Z21); \
	HI(10, h, Z22); \
	HI(11, h, Z23); \
	LO(0, h, Z12); \
	LO(1, h, Z13); \
	LO(2, h, Z14); \
	LO(3, h, Z15); \
	LO(4, h, Z16); \
	LO(5, h, Z17); \
	LO(6, h, Z18); \
	LO(7, h, Z19); \
	LO(8, h, Z20); \
	LO(9, h, Z21); \
	LO(10, h, Z22); \
	LO(11, h, Z23)

// func panelNF4x12Asm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, absmax *float32, nb int, utbl *[32]uint8)
//
// For t < 12, r < 16: y[t·ldy + r] = Σ_{b<nb} float(Σ_e u·x + bias[b,t])·
// (absmax[b,r]·d[b,t]); ldy in floats.
TEXT ·panelNF4x12Asm(SB), NOSPLIT, $0-72
	PARGS
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

px12block:
	// The integer sums start at -128·Σx, cancelling the codes' +128.
	VPBROADCASTD 0(BX), Z12
	VPBROADCASTD 4(BX), Z13
	VPBROADCASTD 8(BX), Z14
	VPBROADCASTD 12(BX), Z15
	VPBROADCASTD 16(BX), Z16
	VPBROADCASTD 20(BX), Z17
	VPBROADCASTD 24(BX), Z18
	VPBROADCASTD 28(BX), Z19
	VPBROADCASTD 32(BX), Z20
	VPBROADCASTD 36(BX), Z21
	VPBROADCASTD 40(BX), Z22
	VPBROADCASTD 44(BX), Z23
	PFETCH
	PAIR12(0)
	PAIR12(1)
	PAIR12(2)
	PAIR12(3)
	PAIR12(4)
	PAIR12(5)
	PAIR12(6)
	PAIR12(7)
	VMOVUPS (R11), Z25
	PFLUSH(0, Z12, Z0)
	PFLUSH(1, Z13, Z1)
	PFLUSH(2, Z14, Z2)
	PFLUSH(3, Z15, Z3)
	PFLUSH(4, Z16, Z4)
	PFLUSH(5, Z17, Z5)
	PFLUSH(6, Z18, Z6)
	PFLUSH(7, Z19, Z7)
	PFLUSH(8, Z20, Z8)
	PFLUSH(9, Z21, Z9)
	PFLUSH(10, Z22, Z10)
	PFLUSH(11, Z23, Z11)
	PNEXT(px12block)

	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R8
	SHLQ $2, R8
	PSTORE(Z0)
	PSTORE(Z1)
	PSTORE(Z2)
	PSTORE(Z3)
	PSTORE(Z4)
	PSTORE(Z5)
	PSTORE(Z6)
	PSTORE(Z7)
	PSTORE(Z8)
	PSTORE(Z9)
	PSTORE(Z10)
	PSTORE(Z11)
	VZEROUPPER
	RET

// PAIR8 multiplies group h of the panel block by the 8 tokens.
#define PAIR8(h) \
	PDEC(h); \
	HI(0, h, Z12); \
	HI(1, h, Z13); \
	HI(2, h, Z14); \
	HI(3, h, Z15); \
	HI(4, h, Z16); \
	HI(5, h, Z17); \
	HI(6, h, Z18); \
	HI(7, h, Z19); \
	LO(0, h, Z12); \
	LO(1, h, Z13); \
	LO(2, h, Z14); \
	LO(3, h, Z15); \
	LO(4, h, Z16); \
	LO(5, h, Z17); \
	LO(6, h, Z18); \
	LO(7, h, Z19)

// func panelNF4x8Asm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, absmax *float32, nb int, utbl *[32]uint8)
//
// For t < 8, r < 16: y[t·ldy + r] = Σ_{b<nb} float(Σ_e u·x + bias[b,t])·
// (absmax[b,r]·d[b,t]); ldy in floats.
TEXT ·panelNF4x8Asm(SB), NOSPLIT, $0-72
	PARGS
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7

px8block:
	// The integer sums start at -128·Σx, cancelling the codes' +128.
	VPBROADCASTD 0(BX), Z12
	VPBROADCASTD 4(BX), Z13
	VPBROADCASTD 8(BX), Z14
	VPBROADCASTD 12(BX), Z15
	VPBROADCASTD 16(BX), Z16
	VPBROADCASTD 20(BX), Z17
	VPBROADCASTD 24(BX), Z18
	VPBROADCASTD 28(BX), Z19
	PFETCH
	PAIR8(0)
	PAIR8(1)
	PAIR8(2)
	PAIR8(3)
	PAIR8(4)
	PAIR8(5)
	PAIR8(6)
	PAIR8(7)
	VMOVUPS (R11), Z25
	PFLUSH(0, Z12, Z0)
	PFLUSH(1, Z13, Z1)
	PFLUSH(2, Z14, Z2)
	PFLUSH(3, Z15, Z3)
	PFLUSH(4, Z16, Z4)
	PFLUSH(5, Z17, Z5)
	PFLUSH(6, Z18, Z6)
	PFLUSH(7, Z19, Z7)
	PNEXT(px8block)

	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R8
	SHLQ $2, R8
	PSTORE(Z0)
	PSTORE(Z1)
	PSTORE(Z2)
	PSTORE(Z3)
	PSTORE(Z4)
	PSTORE(Z5)
	PSTORE(Z6)
	PSTORE(Z7)
	VZEROUPPER
	RET

// PAIR4 multiplies group h of the panel block by the 4 tokens.
#define PAIR4(h) \
	PDEC(h); \
	HI(0, h, Z12); \
	HI(1, h, Z13); \
	HI(2, h, Z14); \
	HI(3, h, Z15); \
	LO(0, h, Z16); \
	LO(1, h, Z17); \
	LO(2, h, Z18); \
	LO(3, h, Z19)

// func panelNF4x4Asm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, absmax *float32, nb int, utbl *[32]uint8)
//
// For t < 4, r < 16: y[t·ldy + r] = Σ_{b<nb} float(Σ_e u·x + bias[b,t])·
// (absmax[b,r]·d[b,t]); ldy in floats.
// The high and low nibbles' sums go to separate registers (integers: the
// order does not matter): two dependency chains of 8 instead of one of 16.
TEXT ·panelNF4x4Asm(SB), NOSPLIT, $0-72
	PARGS
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3

px4block:
	// The integer sums start at -128·Σx, cancelling the codes' +128.
	VPBROADCASTD 0(BX), Z12
	VPBROADCASTD 4(BX), Z13
	VPBROADCASTD 8(BX), Z14
	VPBROADCASTD 12(BX), Z15
	VPXORD       Z16, Z16, Z16
	VPXORD       Z17, Z17, Z17
	VPXORD       Z18, Z18, Z18
	VPXORD       Z19, Z19, Z19
	PFETCH
	PAIR4(0)
	PAIR4(1)
	PAIR4(2)
	PAIR4(3)
	PAIR4(4)
	PAIR4(5)
	PAIR4(6)
	PAIR4(7)
	VMOVUPS (R11), Z25
	VPADDD  Z16, Z12, Z12
	PFLUSH(0, Z12, Z0)
	VPADDD  Z17, Z13, Z13
	PFLUSH(1, Z13, Z1)
	VPADDD  Z18, Z14, Z14
	PFLUSH(2, Z14, Z2)
	VPADDD  Z19, Z15, Z15
	PFLUSH(3, Z15, Z3)
	PNEXT(px4block)

	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R8
	SHLQ $2, R8
	PSTORE(Z0)
	PSTORE(Z1)
	PSTORE(Z2)
	PSTORE(Z3)
	VZEROUPPER
	RET

// PAIR1 multiplies group h of the panel block by the 1 tokens.
#define PAIR1(h) \
	PDEC(h); \
	HI(0, h, Z12); \
	LO(0, h, Z13)

// func panelNF4x1Asm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, absmax *float32, nb int, utbl *[32]uint8)
//
// For t < 1, r < 16: y[t·ldy + r] = Σ_{b<nb} float(Σ_e u·x + bias[b,t])·
// (absmax[b,r]·d[b,t]); ldy in floats.
// The high and low nibbles' sums go to separate registers (integers: the
// order does not matter): two dependency chains of 8 instead of one of 16.
TEXT ·panelNF4x1Asm(SB), NOSPLIT, $0-72
	PARGS
	VPXORD Z0, Z0, Z0

px1block:
	// The integer sums start at -128·Σx, cancelling the codes' +128.
	VPBROADCASTD 0(BX), Z12
	VPXORD       Z13, Z13, Z13
	PFETCH
	PAIR1(0)
	PAIR1(1)
	PAIR1(2)
	PAIR1(3)
	PAIR1(4)
	PAIR1(5)
	PAIR1(6)
	PAIR1(7)
	VMOVUPS (R11), Z25
	VPADDD  Z13, Z12, Z12
	PFLUSH(0, Z12, Z0)
	PNEXT(px1block)

	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R8
	SHLQ $2, R8
	PSTORE(Z0)
	VZEROUPPER
	RET
