//go:build amd64 && !purego

#include "textflag.h"

// NF4 × int8 GEMM on AVX-512 VNNI, for prefill-sized batches (see
// nf4gemm.go for the layouts). One VPDPBUSD on 512-bit vectors multiplies
// 16 rows' 4 unsigned code bytes by one token's 4 activation bytes
// (broadcast from memory) and adds the 16 sums into 16 int32 lanes: the
// 64 MACs of llama.cpp's q4_0 × q8_0 AVX-512 path in one instruction, with
// no horizontal sums, since a lane is a row. A block of 64 values is 16
// of them per token; its int32 sums are then scaled in float by
// absmax·d and added, per row and token, in block order.

// STEP multiplies step s of the panel (16 rows × 4 bytes) by the 12 tokens'
// bytes 4s..4s+3 of the block at SI (64 bytes a token) into Z12-Z23.
#define STEP(s) \
	VMOVDQU32     s*64(AX), Z24; \
	VPDPBUSD.BCST s*4(SI), Z24, Z12; \
	VPDPBUSD.BCST 64+s*4(SI), Z24, Z13; \
	VPDPBUSD.BCST 128+s*4(SI), Z24, Z14; \
	VPDPBUSD.BCST 192+s*4(SI), Z24, Z15; \
	VPDPBUSD.BCST 256+s*4(SI), Z24, Z16; \
	VPDPBUSD.BCST 320+s*4(SI), Z24, Z17; \
	VPDPBUSD.BCST 384+s*4(SI), Z24, Z18; \
	VPDPBUSD.BCST 448+s*4(SI), Z24, Z19; \
	VPDPBUSD.BCST 512+s*4(SI), Z24, Z20; \
	VPDPBUSD.BCST 576+s*4(SI), Z24, Z21; \
	VPDPBUSD.BCST 640+s*4(SI), Z24, Z22; \
	VPDPBUSD.BCST 704+s*4(SI), Z24, Z23

// FLUSH adds token t's block total: f += float(i)·(absmax·d[t]), the two
// products rounded separately (as the Go twin's explicit conversions).
#define FLUSH(t, i, f) \
	VCVTDQ2PS     i, i; \
	VMULPS.BCST   t*4(DX), Z25, Z26; \
	VMULPS        Z26, i, i; \
	VADDPS        i, f, f

// STORE writes one token's 16 outputs at DI and steps DI to the next
// token's (R8 bytes on).
#define STORE(f) \
	VMOVUPS f, (DI); \
	ADDQ    R8, DI

// func gemmVNNIAsm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, nb int)
//
// For t < 12, r < 16: y[t·ldy + r] = Σ_{b<nb} float(Σ_e u·x + bias[b,t])·
// (absmax[b,r]·d[b,t]), u the panel's unsigned codes; ldy in floats.
TEXT ·gemmVNNIAsm(SB), NOSPLIT, $0-56
	MOVQ   x+16(FP), SI
	MOVQ   d+24(FP), DX
	MOVQ   bias+32(FP), BX
	MOVQ   panel+40(FP), AX
	MOVQ   nb+48(FP), CX
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

vgblock:
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
	PREFETCHT0   1088(AX)
	STEP(0)
	STEP(1)
	STEP(2)
	STEP(3)
	PREFETCHT0   1152(AX)
	STEP(4)
	STEP(5)
	STEP(6)
	STEP(7)
	PREFETCHT0   1216(AX)
	STEP(8)
	STEP(9)
	STEP(10)
	STEP(11)
	PREFETCHT0   1280(AX)
	STEP(12)
	STEP(13)
	STEP(14)
	STEP(15)
	VMOVUPS      1024(AX), Z25
	FLUSH(0, Z12, Z0)
	FLUSH(1, Z13, Z1)
	FLUSH(2, Z14, Z2)
	FLUSH(3, Z15, Z3)
	FLUSH(4, Z16, Z4)
	FLUSH(5, Z17, Z5)
	FLUSH(6, Z18, Z6)
	FLUSH(7, Z19, Z7)
	FLUSH(8, Z20, Z8)
	FLUSH(9, Z21, Z9)
	FLUSH(10, Z22, Z10)
	FLUSH(11, Z23, Z11)
	ADDQ         $1088, AX
	ADDQ         $768, SI
	ADDQ         $48, DX
	ADDQ         $48, BX
	DECQ         CX
	JNZ          vgblock

	MOVQ    y+0(FP), DI
	MOVQ    ldy+8(FP), R8
	SHLQ    $2, R8
	STORE(Z0)
	STORE(Z1)
	STORE(Z2)
	STORE(Z3)
	STORE(Z4)
	STORE(Z5)
	STORE(Z6)
	STORE(Z7)
	STORE(Z8)
	STORE(Z9)
	STORE(Z10)
	STORE(Z11)
	VZEROUPPER
	RET

// PACK gathers packed dword j of the block at SI from the 16 rows (byte
// offsets in Z27) and writes its high nibbles' codes as step j of the
// panel block at DI and its low nibbles' as step j+8 (the activations'
// planes order: 32 even values, then 32 odd ones). Z28 holds the nibble
// mask, Z29 the unsigned code table in each 128-bit lane.
#define PACK(j) \
	KXNORW        K1, K1, K1; \
	VPGATHERDD    j*4(SI)(Z27*1), K1, Z30; \
	VPSRLD        $4, Z30, Z31; \
	VPANDD        Z28, Z31, Z31; \
	VPANDD        Z28, Z30, Z30; \
	VPSHUFB       Z31, Z29, Z31; \
	VPSHUFB       Z30, Z29, Z30; \
	VMOVDQU32     Z31, j*64(DI); \
	VMOVDQU32     Z30, 512+j*64(DI)

// func packVNNIPanelAsm(dst *byte, packed *byte, absmax *float32, nb int, utbl *[32]uint8, offs *[16]int32, aoffs *[16]int32)
//
// Packs 16 rows of NF4 blocks into nb panel blocks of 1088 bytes: 16 steps
// of 64 bytes (step s holds each row's unsigned codes for planes positions
// 4s..4s+3, row r at 4r), then the rows' 16 absmax. offs[r] is row r's
// byte offset in packed, aoffs[r] its index offset in absmax.
TEXT ·packVNNIPanelAsm(SB), NOSPLIT, $0-56
	MOVQ            dst+0(FP), DI
	MOVQ            packed+8(FP), SI
	MOVQ            absmax+16(FP), DX
	MOVQ            nb+24(FP), CX
	MOVQ            utbl+32(FP), AX
	VBROADCASTI32X4 (AX), Z29
	MOVQ            offs+40(FP), AX
	VMOVDQU32       (AX), Z27
	MOVQ            aoffs+48(FP), AX
	VMOVDQU32       (AX), Z26
	MOVL            $0x0f0f0f0f, AX
	VPBROADCASTD    AX, Z28

vpblock:
	PACK(0)
	PACK(1)
	PACK(2)
	PACK(3)
	PACK(4)
	PACK(5)
	PACK(6)
	PACK(7)
	KXNORW     K1, K1, K1
	VGATHERDPS (DX)(Z26*4), K1, Z30
	VMOVUPS    Z30, 1024(DI)
	ADDQ       $32, SI
	ADDQ       $4, DX
	ADDQ       $1088, DI
	DECQ       CX
	JNZ        vpblock
	VZEROUPPER
	RET
