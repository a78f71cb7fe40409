//go:build amd64 && !purego

#include "textflag.h"
#include "vec_amd64.h"

// NF4 × int8 activations, AVX2 (the integer dot product of llama.cpp's
// IQ4_NL × Q8_0 in ggml-cpu's quants.c, on bitsandbytes NF4 blocks).
//
// Per 64-element block: the 32 packed bytes split into high nibbles (even
// elements) and low nibbles (odd ones); VPSHUFB maps each nibble to its
// int8 code. The activations come quantized and split the same way: 32
// even bytes, then 32 odd ones (quantizeInt8Planes). VPMADDUBSW multiplies
// unsigned by signed bytes, so it gets |x| and the codes carrying x's sign
// (VPSIGNB): |x|·sign(x)·w = x·w, and |x|, |w| <= 127 keep each pair sum
// below 2^15 (no saturation). VPMADDWD by ones widens to int32, and the
// block's 8 lane sums are scaled once, in float, by absmax·d.

BCAST8(i8nib<>, $0x0f0f0f0f)
BCAST8(i8ones<>, $0x00010001)

// One row at a time, so that the weights stream in order: reading 4 rows
// side by side (to load each activation block once for 4) measured slower
// from memory, 4 short streams defeating the hardware prefetcher.
//
// ROW adds one row's block to acc: packed bytes at p, absmax at a, with the
// even/odd activations in Y4/Y5, their magnitudes in Y6/Y7, the block's
// activation scale broadcast in Y8, the code table in Y14, the nibble mask
// in Y15 and int16 ones in Y13. Clobbers Y9-Y11.
#define ROW(p, a, acc) \
	VMOVDQU      p, Y9; \
	VPSRLW       $4, Y9, Y10; \
	VPAND        Y15, Y10, Y10; \
	VPAND        Y15, Y9, Y9; \
	VPSHUFB      Y10, Y14, Y10; \
	VPSHUFB      Y9, Y14, Y9; \
	VPSIGNB      Y4, Y10, Y10; \
	VPSIGNB      Y5, Y9, Y9; \
	VPMADDUBSW   Y10, Y6, Y10; \
	VPMADDUBSW   Y9, Y7, Y9; \
	VPMADDWD     Y13, Y10, Y10; \
	VPMADDWD     Y13, Y9, Y9; \
	VPADDD       Y9, Y10, Y10; \
	VCVTDQ2PS    Y10, Y10; \
	VBROADCASTSS a, Y11; \
	VMULPS       Y8, Y11, Y11; \
	VFMADD231PS  Y11, Y10, acc

// ABLK adds the block at SI (packed), DX (absmax), DI (activations) and
// BX (their scale) to acc, and steps the pointers to the next block.
#define ABLK(acc) \
	VMOVDQU      (DI), Y4; \
	VMOVDQU      32(DI), Y5; \
	VPABSB       Y4, Y6; \
	VPABSB       Y5, Y7; \
	VBROADCASTSS (BX), Y8; \
	ROW((SI), (DX), acc); \
	ADDQ         $32, SI; \
	ADDQ         $4, DX; \
	ADDQ         $64, DI; \
	ADDQ         $4, BX

// func dotNF4Int8Asm(tbl *[32]int8, packed *byte, absmax *float32, xq *int8, xd *float32, n int) float32
//
// One row: Σ_{b<n} absmax[b]·xd[b]·Σ_e code·xq. Blocks alternate between
// two accumulators (one FMA chain would bound a block to its latency),
// the last n%8 into the first, exactly as dotNF4Int8VNNIAsm. Prefetching
// 8 KiB ahead keeps a core's stream ahead of DRAM latency: one core
// streamed ~20 GB/s with it, ~13 GB/s with 1 KiB (Zen 4, measured).
TEXT ·dotNF4Int8Asm(SB), NOSPLIT, $0-52
	MOVQ    tbl+0(FP), AX
	MOVQ    packed+8(FP), SI
	MOVQ    absmax+16(FP), DX
	MOVQ    xq+24(FP), DI
	MOVQ    xd+32(FP), BX
	MOVQ    n+40(FP), CX
	VMOVDQU (AX), Y14
	VMOVDQU i8nib<>(SB), Y15
	VMOVDQU i8ones<>(SB), Y13
	VXORPS  Y0, Y0, Y0
	VXORPS  Y1, Y1, Y1
	MOVQ    CX, R8
	ANDQ    $7, R8 // the last n%8 blocks add into Y0 alone
	SUBQ    R8, CX
	JZ      int8tail

	// Pairs of blocks into Y0 and Y1, as the VNNI kernel adds them.
int8dot2:
	PREFETCHT0 8192(SI)
	ABLK(Y0)
	ABLK(Y1)
	SUBQ       $2, CX
	JNZ        int8dot2

int8tail:
	TESTQ R8, R8
	JZ    int8done

int8dot:
	ABLK(Y0)
	DECQ R8
	JNZ  int8dot

int8done:
	VADDPS Y1, Y0, Y0
	HSUM
	VZEROUPPER
	MOVSS  X0, ret+48(FP)
	RET

// func dotQ8Int8Asm(q *int8, scale *float32, xq *int8, xd *float32, n int) float32
//
// Q8 weights (blocks of 32, one scale each) against int8 activations
// (blocks of 64 in natural order, one scale each), n activation blocks:
// Σ_b xd[b]·(scale[2b]·Σ q·xq + scale[2b+1]·Σ q·xq), with the same
// VPSIGNB/VPMADDUBSW pairing as ROW (|q|, |xq| <= 127).
TEXT ·dotQ8Int8Asm(SB), NOSPLIT, $0-44
	MOVQ    q+0(FP), SI
	MOVQ    scale+8(FP), DX
	MOVQ    xq+16(FP), DI
	MOVQ    xd+24(FP), BX
	MOVQ    n+32(FP), CX
	VMOVDQU i8ones<>(SB), Y13
	VXORPS  Y7, Y7, Y7

q8int8:
	PREFETCHT0   1024(SI)
	VMOVDQU      (SI), Y0
	VMOVDQU      32(SI), Y1
	VPSIGNB      (DI), Y0, Y0
	VPSIGNB      32(DI), Y1, Y1
	VPABSB       (DI), Y2
	VPABSB       32(DI), Y3
	VPMADDUBSW   Y0, Y2, Y0
	VPMADDUBSW   Y1, Y3, Y1
	VPMADDWD     Y13, Y0, Y0
	VPMADDWD     Y13, Y1, Y1
	VCVTDQ2PS    Y0, Y0
	VCVTDQ2PS    Y1, Y1
	VBROADCASTSS (DX), Y4
	VBROADCASTSS 4(DX), Y5
	VMULPS       Y4, Y0, Y0
	VFMADD231PS  Y5, Y1, Y0
	VBROADCASTSS (BX), Y6
	VFMADD231PS  Y6, Y0, Y7
	ADDQ         $64, SI
	ADDQ         $8, DX
	ADDQ         $64, DI
	ADDQ         $4, BX
	DECQ         CX
	JNZ          q8int8

	VEXTRACTF128 $1, Y7, X1
	VADDPS       X1, X7, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+40(FP)
	RET

// TOK adds one token's block to acc, for the row's codes decoded in Y10
// (even elements) and Y9 (odd ones) and its absmax broadcast in Y12: the
// token's quantized block at xe/xo (even, odd halves) and its scale at xd.
// Clobbers Y4-Y7.
#define TOK(xe, xo, xd, acc) \
	VPSIGNB      xe, Y10, Y4; \
	VPSIGNB      xo, Y9, Y5; \
	VPABSB       xe, Y6; \
	VPABSB       xo, Y7; \
	VPMADDUBSW   Y4, Y6, Y4; \
	VPMADDUBSW   Y5, Y7, Y5; \
	VPMADDWD     Y13, Y4, Y4; \
	VPMADDWD     Y13, Y5, Y5; \
	VPADDD       Y5, Y4, Y4; \
	VCVTDQ2PS    Y4, Y4; \
	VBROADCASTSS xd, Y6; \
	VMULPS       Y12, Y6, Y6; \
	VFMADD231PS  Y6, Y4, acc

// TOTAL4 stores at dst the totals of the 8 lanes of a, b, c, d (the
// 4- and 8-token kernels sum them this way). Clobbers a, b, c.
#define TOTAL4(a, b, c, d, xa, xb, dst) \
	VHADDPS      b, a, a; \
	VHADDPS      d, c, c; \
	VHADDPS      c, a, a; \
	VEXTRACTF128 $1, a, xb; \
	VADDPS       xb, xa, xa; \
	VMOVUPS      xa, dst

// func dotNF4Int8x4TokAsm(out *[4]float32, tbl *[32]int8, packed *byte, absmax *float32, xq *int8, xqStride int, xd *float32, xdStride int, n int)
//
// One row against 4 tokens (xqStride bytes, xdStride scales apart): each
// block's codes are decoded once for the 4.
TEXT ·dotNF4Int8x4TokAsm(SB), NOSPLIT, $0-72
	MOVQ    tbl+8(FP), AX
	MOVQ    packed+16(FP), SI
	MOVQ    absmax+24(FP), DX
	MOVQ    xq+32(FP), DI
	MOVQ    xqStride+40(FP), R8
	MOVQ    xd+48(FP), BX
	MOVQ    xdStride+56(FP), R10
	SHLQ    $2, R10
	MOVQ    n+64(FP), CX
	LEAQ    (DI)(R8*1), R9
	LEAQ    (BX)(R10*1), R11
	VMOVDQU (AX), Y14
	VMOVDQU i8nib<>(SB), Y15
	VMOVDQU i8ones<>(SB), Y13
	VXORPS  Y0, Y0, Y0
	VXORPS  Y1, Y1, Y1
	VXORPS  Y2, Y2, Y2
	VXORPS  Y3, Y3, Y3

int8tok:
	VMOVDQU      (SI), Y9
	VPSRLW       $4, Y9, Y10
	VPAND        Y15, Y10, Y10
	VPAND        Y15, Y9, Y9
	VPSHUFB      Y10, Y14, Y10
	VPSHUFB      Y9, Y14, Y9
	VBROADCASTSS (DX), Y12
	TOK((DI), 32(DI), (BX), Y0)
	TOK((R9), 32(R9), (R11), Y1)
	TOK((DI)(R8*2), 32(DI)(R8*2), (BX)(R10*2), Y2)
	TOK((R9)(R8*2), 32(R9)(R8*2), (R11)(R10*2), Y3)
	ADDQ         $32, SI
	ADDQ         $4, DX
	ADDQ         $64, DI
	ADDQ         $64, R9
	ADDQ         $4, BX
	ADDQ         $4, R11
	DECQ         CX
	JNZ          int8tok

	MOVQ         out+0(FP), AX
	TOTAL4(Y0, Y1, Y2, Y3, X0, X1, (AX))
	VZEROUPPER
	RET

// TOK8 adds one token's block to acc, for the row's codes decoded in Y8
// (even elements) and Y9 (odd ones), their magnitudes in Y10/Y11 and its
// absmax broadcast in Y12: the token's quantized block at xe/xo and its
// scale at xd. The sign moves onto x here (|w|·(x·sign w) = w·x), so that
// the row's magnitudes serve all 8 tokens: the same int16 pair sums as TOK,
// and the same float steps after them. Clobbers Y13-Y15.
#define TOK8(xe, xo, xd, acc) \
	VMOVDQU      xe, Y13; \
	VMOVDQU      xo, Y14; \
	VPSIGNB      Y8, Y13, Y13; \
	VPSIGNB      Y9, Y14, Y14; \
	VPMADDUBSW   Y13, Y10, Y13; \
	VPMADDUBSW   Y14, Y11, Y14; \
	VPMADDWD     i8ones<>(SB), Y13, Y13; \
	VPMADDWD     i8ones<>(SB), Y14, Y14; \
	VPADDD       Y14, Y13, Y13; \
	VCVTDQ2PS    Y13, Y13; \
	VBROADCASTSS xd, Y15; \
	VMULPS       Y12, Y15, Y15; \
	VFMADD231PS  Y15, Y13, acc

// func dotNF4Int8x8TokAsm(out *[8]float32, tbl *[32]int8, packed *byte, absmax *float32, xq *int8, xqStride int, xd *float32, xdStride int, n int)
//
// One row against 8 tokens (xqStride bytes, xdStride scales apart): each
// block is decoded once for the 8, the results bit for bit those of
// dotNF4Int8x4TokAsm. Token i's block is at DI + i·R8 (R9 = DI + 3·R8,
// R12 = 3·R8) and its scale at BX + i·R10 (R11 = BX + 3·R10, R13 = 3·R10).
// X8ARGS loads the arguments of the 8-token kernels (table pointer in AX,
// token i's block at DI + i·R8 with R9 = DI + 3·R8 and R12 = 3·R8, its
// scale at BX + i·R10 with R11 = BX + 3·R10 and R13 = 3·R10) and zeroes
// the accumulators Y0-Y7.
#define X8ARGS \
	MOVQ   tbl+8(FP), AX; \
	MOVQ   packed+16(FP), SI; \
	MOVQ   absmax+24(FP), DX; \
	MOVQ   xq+32(FP), DI; \
	MOVQ   xqStride+40(FP), R8; \
	MOVQ   xd+48(FP), BX; \
	MOVQ   xdStride+56(FP), R10; \
	SHLQ   $2, R10; \
	MOVQ   n+64(FP), CX; \
	LEAQ   (R8)(R8*2), R12; \
	LEAQ   (DI)(R12*1), R9; \
	LEAQ   (R10)(R10*2), R13; \
	LEAQ   (BX)(R13*1), R11; \
	ZERO8

// X8NEXT moves the 8-token kernels to the next block (activation blocks of
// xstride bytes) and counts it down, setting the flags for the loop's JNZ.
#define X8NEXT(xstride) \
	ADDQ $32, SI; \
	ADDQ $4, DX; \
	ADDQ xstride, DI; \
	ADDQ xstride, R9; \
	ADDQ $4, BX; \
	ADDQ $4, R11; \
	DECQ CX

// X8TOTALS stores the 8 tokens' totals at out and returns.
#define X8TOTALS \
	MOVQ    out+0(FP), AX; \
	TOTAL4(Y0, Y1, Y2, Y3, X0, X1, (AX)); \
	TOTAL4(Y4, Y5, Y6, Y7, X4, X5, 16(AX)); \
	VZEROUPPER; \
	RET

TEXT ·dotNF4Int8x8TokAsm(SB), NOSPLIT, $0-72
	X8ARGS

int8tok8:
	VMOVDQU      (SI), Y13
	VMOVDQU      (AX), Y15
	VPSRLW       $4, Y13, Y14
	VPAND        i8nib<>(SB), Y14, Y14
	VPAND        i8nib<>(SB), Y13, Y13
	VPSHUFB      Y14, Y15, Y8
	VPSHUFB      Y13, Y15, Y9
	VPABSB       Y8, Y10
	VPABSB       Y9, Y11
	VBROADCASTSS (DX), Y12
	TOK8((DI), 32(DI), (BX), Y0)
	TOK8((DI)(R8*1), 32(DI)(R8*1), (BX)(R10*1), Y1)
	TOK8((DI)(R8*2), 32(DI)(R8*2), (BX)(R10*2), Y2)
	TOK8((R9), 32(R9), (R11), Y3)
	TOK8((DI)(R8*4), 32(DI)(R8*4), (BX)(R10*4), Y4)
	TOK8((R9)(R8*2), 32(R9)(R8*2), (R11)(R10*2), Y5)
	TOK8((DI)(R12*2), 32(DI)(R12*2), (BX)(R13*2), Y6)
	TOK8((R9)(R8*4), 32(R9)(R8*4), (R11)(R10*4), Y7)
	X8NEXT($64)
	JNZ    int8tok8
	X8TOTALS

// NF4 × int8 activations with AVX-512 VNNI (VPDPBUSD on 256-bit vectors,
// EVEX-encoded: AVX512_VNNI + AVX512VL), llama.cpp's IQ4_NL × Q8_0 dot on
// its AVX-512 VNNI path, on bitsandbytes NF4 blocks.
//
// VPDPBUSD multiplies unsigned by signed bytes and adds each group of 4
// products to an int32 lane, without saturation. The codes are looked up
// offset by 128 (q+128 in [1, 255], unsigned) and the activations stay
// signed, so each lane gets Σ q·x + 128·Σ x; the lane is started from
// -128·Σ x of its 8 activations, stored with the block
// (quantizeInt8VNNI), which leaves exactly the lane sums of the AVX2
// kernels (VPMADDUBSW then VPMADDWD group the same 4 bytes of each half).
// The float steps after the lane sums are theirs too, so the results are
// theirs bit for bit, at 2 integer instructions per token and block
// instead of 9.
//
// Activation blocks are 96 bytes: the 32 even elements, the 32 odd ones,
// then 8 int32 lane starts. VPDPBUSD's accumulators are Y16 and up, which
// only an EVEX encoding reaches (Zen 4 has AVX512_VNNI but not the VEX
// AVX-VNNI form).

// DECODE loads the block's 32 packed bytes at p and looks up the offset
// codes of its high nibbles (even elements) into Y8 and of its low nibbles
// (odd ones) into Y9, from the table in Y14. Clobbers Y10.
#define DECODER(p) \
	VMOVDQU p, Y9; \
	VPSRLW  $4, Y9, Y10; \
	VPAND   Y15, Y10, Y10; \
	VPAND   Y15, Y9, Y9; \
	VPSHUFB Y10, Y14, Y8; \
	VPSHUFB Y9, Y14, Y9

#define DECODE(p) \
	VMOVDQU p, Y9; \
	VPSRLW  $4, Y9, Y10; \
	VPAND   i8nib<>(SB), Y10, Y10; \
	VPAND   i8nib<>(SB), Y9, Y9; \
	VPSHUFB Y10, Y14, Y8; \
	VPSHUFB Y9, Y14, Y9

// VBLK adds block k of an 8-block stretch to acc: packed bytes at
// SI+32k, activations at DI+96k, its scale absmax·xd at k*4(SP).
#define VBLK(k, acc) \
	DECODER(k*32(SI)); \
	VMOVDQU32    k*96+64(DI), Y16; \
	VPDPBUSD     k*96(DI), Y8, Y16; \
	VPDPBUSD     k*96+32(DI), Y9, Y16; \
	VCVTDQ2PS    Y16, Y16; \
	VBROADCASTSS k*4(SP), Y17; \
	VFMADD231PS  Y17, Y16, acc

// VTOKS is VTOK with the block's scale absmax·xd already computed, at s8.
#define VTOKS(x, s8, iacc, s, acc) \
	VMOVDQU32    64(x), iacc; \
	VPDPBUSD     (x), Y8, iacc; \
	VPDPBUSD     32(x), Y9, iacc; \
	VCVTDQ2PS    iacc, iacc; \
	VBROADCASTSS s8, s; \
	VFMADD231PS  s, iacc, acc

// VTOK adds one token's block to acc: its 96-byte block at x, its scale at
// xd, the row's absmax broadcast in Y12; iacc and s are the token's integer
// and scale temporaries.
#define VTOK(x, xd, iacc, s, acc) \
	VMOVDQU32    64(x), iacc; \
	VPDPBUSD     (x), Y8, iacc; \
	VPDPBUSD     32(x), Y9, iacc; \
	VCVTDQ2PS    iacc, iacc; \
	VBROADCASTSS xd, s; \
	VMULPS       Y12, s, s; \
	VFMADD231PS  s, iacc, acc

// func dotNF4Int8VNNIAsm(utbl *[32]uint8, packed *byte, absmax *float32, xq *byte, xd *float32, n int) float32
//
// One row: Σ_{b<n} absmax[b]·xd[b]·Σ_e code·xq, as dotNF4Int8Asm, with
// its accumulators and prefetch distance. 8 blocks at a time: their 8
// scales absmax·xd in one multiply, kept on the stack for the broadcasts.
TEXT ·dotNF4Int8VNNIAsm(SB), NOSPLIT, $32-52
	MOVQ    utbl+0(FP), AX
	MOVQ    packed+8(FP), SI
	MOVQ    absmax+16(FP), DX
	MOVQ    xq+24(FP), DI
	MOVQ    xd+32(FP), BX
	MOVQ    n+40(FP), CX
	VMOVDQU (AX), Y14
	VMOVDQU i8nib<>(SB), Y15
	VXORPS  Y0, Y0, Y0
	VXORPS  Y1, Y1, Y1
	SUBQ    $8, CX
	JLT     vnnitail

vnni8:
	VMOVUPS    (DX), Y2
	VMULPS     (BX), Y2, Y2
	VMOVUPS    Y2, 0(SP)
	PREFETCHT0 8192(SI)
	PREFETCHT0 8256(SI)
	PREFETCHT0 8320(SI)
	PREFETCHT0 8384(SI)
	VBLK(0, Y0)
	VBLK(1, Y1)
	VBLK(2, Y0)
	VBLK(3, Y1)
	VBLK(4, Y0)
	VBLK(5, Y1)
	VBLK(6, Y0)
	VBLK(7, Y1)
	ADDQ       $256, SI
	ADDQ       $32, DX
	ADDQ       $768, DI
	ADDQ       $32, BX
	SUBQ       $8, CX
	JGE        vnni8

vnnitail:
	ADDQ $8, CX
	JZ   vnnidone

vnnione:
	DECODER((SI))
	VBROADCASTSS (DX), Y12
	VTOK(DI, (BX), Y16, Y17, Y0)
	ADDQ         $32, SI
	ADDQ         $4, DX
	ADDQ         $96, DI
	ADDQ         $4, BX
	DECQ         CX
	JNZ          vnnione

vnnidone:
	VADDPS Y1, Y0, Y0
	HSUM
	VZEROUPPER
	MOVSS  X0, ret+48(FP)
	RET

// func dotNF4Int8x8VNNIAsm(out *[8]float32, tbl *[32]uint8, packed *byte, absmax *float32, xq *byte, xqStride int, xd8 *float32, n int)
//
// One row against 8 tokens (xqStride bytes apart), as dotNF4Int8x8TokAsm:
// token i's block at DI + i·R8 (R9 = DI + 3·R8, R12 = 3·R8). The tokens'
// scales come 8 to a block (xd8[8b+i]), so one multiply gives the block's
// 8 products absmax·xd, kept on the stack for the broadcasts.
TEXT ·dotNF4Int8x8VNNIAsm(SB), NOSPLIT, $32-64
	MOVQ    tbl+8(FP), AX
	MOVQ    packed+16(FP), SI
	MOVQ    absmax+24(FP), DX
	MOVQ    xq+32(FP), DI
	MOVQ    xqStride+40(FP), R8
	MOVQ    xd8+48(FP), BX
	MOVQ    n+56(FP), CX
	LEAQ    (R8)(R8*2), R12
	LEAQ    (DI)(R12*1), R9
	VMOVDQU (AX), Y14
	VMOVDQU i8nib<>(SB), Y15
	ZERO8

vnnitok8:
	DECODER((SI))
	VBROADCASTSS (DX), Y12
	VMULPS       (BX), Y12, Y13
	VMOVUPS      Y13, 0(SP)
	LEAQ         (DI)(R8*1), AX
	VTOKS(DI, 0(SP), Y16, Y24, Y0)
	VTOKS(AX, 4(SP), Y17, Y25, Y1)
	LEAQ         (DI)(R8*2), AX
	VTOKS(AX, 8(SP), Y18, Y26, Y2)
	VTOKS(R9, 12(SP), Y19, Y27, Y3)
	LEAQ         (DI)(R8*4), AX
	VTOKS(AX, 16(SP), Y20, Y28, Y4)
	LEAQ         (R9)(R8*2), AX
	VTOKS(AX, 20(SP), Y21, Y29, Y5)
	LEAQ         (DI)(R12*2), AX
	VTOKS(AX, 24(SP), Y22, Y30, Y6)
	LEAQ         (R9)(R8*4), AX
	VTOKS(AX, 28(SP), Y23, Y31, Y7)
	ADDQ         $32, SI
	ADDQ         $4, DX
	ADDQ         $96, DI
	ADDQ         $96, R9
	ADDQ         $32, BX
	DECQ         CX
	JNZ          vnnitok8
	X8TOTALS

// Quantizing activations per 64-value block (kernels.QuantizeBlocksInt8:
// d = amax/127, q = round(x·(127/amax)), halves away from zero), into the
// planes order the kernels read: the 32 even values, then the 32 odd ones.
// Rounding: t = trunc(y), plus sign(y) where |y-t| >= 0.5 (y - t is exact),
// which is math.Round of the float32 product, bit for bit.

BCAST8(qabs<>, $0x7fffffff)
BCAST8(qsign<>, $0x80000000)
BCAST8(qhalf<>, $0x3f000000)
BCAST8(qone<>, $0x3f800000)
BCAST8(qones8<>, $0x01010101)

DATA q127<>+0(SB)/4, $127.0
GLOBL q127<>(SB), RODATA|NOPTR, $4

// qperm gathers dwords 0,4,1,5,2,6,3,7 (VPERMD) and qshuf then interleaves
// the pairs of each 8-byte half (VPSHUFB): together they turn the packs'
// order into the natural one.
DATA qperm<>+0(SB)/8, $0x0000000400000000
DATA qperm<>+8(SB)/8, $0x0000000500000001
DATA qperm<>+16(SB)/8, $0x0000000600000002
DATA qperm<>+24(SB)/8, $0x0000000700000003
GLOBL qperm<>(SB), RODATA|NOPTR, $32
DATA qshuf<>+0(SB)/8, $0x0706030205040100
DATA qshuf<>+8(SB)/8, $0x0f0e0b0a0d0c0908
DATA qshuf<>+16(SB)/8, $0x0706030205040100
DATA qshuf<>+24(SB)/8, $0x0f0e0b0a0d0c0908
GLOBL qshuf<>(SB), RODATA|NOPTR, $32

// QROUND rounds the 8 floats of v (x times 1/d) half away from zero and
// converts them to int32 in v. Clobbers Y13-Y15.
#define QROUND(v) \
	VROUNDPS   $3, v, Y13; \
	VSUBPS     Y13, v, Y14; \
	VANDPS     qabs<>(SB), Y14, Y14; \
	VCMPPS     $13, qhalf<>(SB), Y14, Y14; \
	VANDPS     qsign<>(SB), v, Y15; \
	VORPS      qone<>(SB), Y15, Y15; \
	VANDPS     Y14, Y15, Y15; \
	VADDPS     Y15, Y13, v; \
	VCVTTPS2DQ v, v

// QHALF scales, rounds and splits 32 values at off(SI) into the even ones
// (e0 e1, each [v0 v2 v8 v10 | v4 v6 v12 v14] of its 16) and the odd ones
// (o0 o1). Clobbers Y0-Y3, Y13-Y15.
#define QHALF(off, e0, o0, e1, o1) \
	VMULPS  off(SI), Y12, Y0; \
	VMULPS  off+32(SI), Y12, Y1; \
	VMULPS  off+64(SI), Y12, Y2; \
	VMULPS  off+96(SI), Y12, Y3; \
	QROUND(Y0); \
	QROUND(Y1); \
	QROUND(Y2); \
	QROUND(Y3); \
	VSHUFPS $0x88, Y1, Y0, e0; \
	VSHUFPS $0xdd, Y1, Y0, o0; \
	VSHUFPS $0x88, Y3, Y2, e1; \
	VSHUFPS $0xdd, Y3, Y2, o1

// QPACK packs the 32 int32 of a, b, c, d (QHALF's order) into 32 bytes in
// natural order, in a. Clobbers c. Y8 holds qperm.
#define QPACK(a, b, c, d) \
	VPACKSSDW b, a, a; \
	VPACKSSDW d, c, c; \
	VPACKSSWB c, a, a; \
	VPERMD    a, Y8, a; \
	VPSHUFB   qshuf<>(SB), a, a

// QAMAX folds |x| of the 8 floats at off(SI) into the running max Y0 (Y2
// holds the abs mask). Clobbers Y1.
#define QAMAX(off) \
	VANDPS off(SI), Y2, Y1; \
	VMAXPS Y1, Y0, Y0

// func quantizeInt8Asm(q *int8, d *float32, x *float32, nb int, codeScale float32, qstride int, lanes bool)
//
// nb blocks of x into q (qstride bytes a block: 64 values in planes order,
// then, when lanes, the VNNI kernels' 8 int32 lane starts, -128 times the
// sum of each lane's 8 values) and d (the block scale times codeScale).
TEXT ·quantizeInt8Asm(SB), NOSPLIT, $0-49
	MOVQ    q+0(FP), DI
	MOVQ    d+8(FP), DX
	MOVQ    x+16(FP), SI
	MOVQ    nb+24(FP), CX
	MOVQ    qstride+40(FP), R8
	MOVBLZX lanes+48(FP), R9
	VMOVDQU qperm<>(SB), Y8

qblock:
	VMOVUPS      qabs<>(SB), Y2
	VANDPS       (SI), Y2, Y0
	QAMAX(32)
	QAMAX(64)
	QAMAX(96)
	QAMAX(128)
	QAMAX(160)
	QAMAX(192)
	QAMAX(224)
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0 // amax in every lane

	// d = amax/127 times codeScale; 1/d = 127/amax, 0 for a block of zeros.
	VMOVSS       q127<>(SB), X2
	VDIVSS       X2, X0, X3
	VMULSS       codeScale+32(FP), X3, X3
	VMOVSS       X3, (DX)
	VDIVSS       X0, X2, X5
	VXORPS       X4, X4, X4
	VCMPSS       $4, X4, X0, X6
	VANDPS       X6, X5, X5
	VBROADCASTSS X5, Y12

	QHALF(0, Y4, Y5, Y6, Y7)
	QHALF(128, Y9, Y10, Y11, Y1)
	QPACK(Y4, Y6, Y9, Y11)
	QPACK(Y5, Y7, Y10, Y1)
	VMOVDQU      Y4, (DI)
	VMOVDQU      Y5, 32(DI)
	TESTQ        R9, R9
	JZ           qnext
	VMOVDQU      qones8<>(SB), Y13
	VPMADDUBSW   Y4, Y13, Y14
	VPMADDUBSW   Y5, Y13, Y15
	VPMADDWD     i8ones<>(SB), Y14, Y14
	VPMADDWD     i8ones<>(SB), Y15, Y15
	VPADDD       Y15, Y14, Y14
	VPSLLD       $7, Y14, Y14
	VPXOR        Y15, Y15, Y15
	VPSUBD       Y14, Y15, Y14
	VMOVDQU      Y14, 64(DI)

qnext:
	ADDQ         $256, SI
	ADDQ         $4, DX
	ADDQ         R8, DI
	DECQ         CX
	JNZ          qblock
	VZEROUPPER
	RET
