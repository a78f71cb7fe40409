package cpu

import (
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

// NF4 layout (kernels.NF4Matrix): element i of the row-major flattening of W
// is Code[nibble_i]·Absmax[i/64]; element 2i is the high nibble of Packed[i],
// element 2i+1 the low one. A whole block is 32 packed bytes and one scale.
//
// Fast path (Cols%64 == 0, AVX2): every row is whole blocks, and the
// "planes" kernels decode them in a permuted order, so x is permuted the
// same way once per call (permuteBlocks).
// General path: rows need not start on a block (or even a byte) boundary,
// so a range of elements is split into a scalar head up to the first block
// boundary, whole blocks (natural-order loops), and a scalar tail.
const (
	blockElems = kernels.NF4BlockSize
	blockBytes = blockElems / 2
)

// nf4Job: items are weight rows.
type nf4Job struct {
	m       *kernels.NF4Matrix
	x, y    []float32 // [T, Cols] (in permuteBlocks order when planes), [T, Rows]
	T       int
	scratch [][]float32 // per worker: the dequantized [rows, Cols] tile (T > 1)
	gemm    []gemmBuf   // per worker, for the packed GEMM (T > smallBatch)
	simd    bool
	// planes: Cols%64 == 0 and AVX2, so every row is whole blocks and the
	// planes kernels run, with x permuted to match.
	planes bool

	// useInt8: the activations are quantized (xq, xd) and the int8
	// kernels run (whole-block rows, T <= smallBatch).
	useInt8 bool
	xq      []int8    // [T, Cols] in quantizeInt8Planes order
	xd      []float32 // [T, Cols/64] block scales
	int8    int8Code
	// vnni: the AVX-512 VNNI kernels run instead of the AVX2 ones, on xv
	// [T, Cols/64, 96] bytes in quantizeInt8VNNI's layout (xq unused).
	vnni bool
	xv   []byte
	xd8  []float32 // [T/8, Cols/64, 8] xd of each group of 8 tokens, 8 to a block

	lut    [256][2]float32 // packed byte → (Code[high nibble], Code[low nibble])
	planeT [4][32]byte     // planeT[k][c] = byte k of Code[c], twice (one per 128-bit lane)
	code   [16]float32     // the code book the tables were built from
	hasLU  bool
}

// setCode builds the lookup tables for code, unless they already are.
func (j *nf4Job) setCode(code *[16]float32) {
	if j.hasLU && j.code == *code {
		return
	}
	for b := range j.lut {
		j.lut[b] = [2]float32{code[b>>4], code[b&0x0F]}
	}
	for c, v := range code {
		bits := math.Float32bits(v)
		for k := range j.planeT {
			j.planeT[k][c] = byte(bits >> (8 * k))
			j.planeT[k][c+16] = byte(bits >> (8 * k))
		}
	}
	j.int8 = newInt8Code(code)
	j.code, j.hasLU = *code, true
}

// permuteBlocks copies src to dst, each 64-element block in the order in
// which the planes kernels produce weights: positions 0-31 hold the even
// elements (high nibbles), 32-63 the odd ones; within each half, the 8 lanes
// of vector v hold packed bytes 4v..4v+3 and 16+4v..16+4v+3.
func permuteBlocks(dst, src []float32) {
	for b := 0; b+blockElems <= len(src); b += blockElems {
		s := (*[blockElems]float32)(src[b:])
		d := (*[blockElems]float32)(dst[b:])
		for half := 0; half < 2; half++ {
			for v := 0; v < 4; v++ {
				for lane := 0; lane < 8; lane++ {
					byteIdx := 4*v + lane&3 + 16*(lane>>2)
					d[32*half+8*v+lane] = s[2*byteIdx+half]
				}
			}
		}
	}
}

// smallBatch is the largest T that takes the decode path of NF4 MatMul:
// 3 rows (the height of the AVX2 micro-kernel) are dequantized at a time
// and every token's whole row of x is read from cache for them. Larger
// batches (prefill) dequantize nf4Tile floats of rows at a time and go
// through the columns kBlock at a time, so that x is read less often.
const smallBatch = 8

// nf4Tile is the size in floats of the prefill path's dequantized tile:
// 256 KiB, half of a typical L2.
const nf4Tile = 64 << 10

// nf4Grain returns the rows per work item: ~256 KiB of packed weights on
// the decode path, as streamGrain (long contiguous runs for the
// prefetchers: 2 cores streamed a 2048×2048 matrix at ~34 GB/s with such
// items, ~21 GB/s with 32 KiB ones), a tile on the prefill path. Both read
// whole rows, one contiguous range of memory.
func nf4Grain(cols, T int) int {
	rows := max(1, 2*(256<<10)/cols)
	if T > smallBatch {
		rows = max(1, nf4Tile/cols)
	}
	if T > 1 && rows > 3 {
		rows -= rows % 3
	}
	return rows
}

func (b *Backend) matMulNF4(y, x []float32, m *kernels.NF4Matrix, T int) {
	j := &b.nf4
	j.setCode(&m.Code)
	grain := nf4Grain(m.Cols, T)
	j.useInt8 = m.Cols%blockElems == 0 && (b.int8Act && T <= smallBatch || b.int8Prefill && T > smallBatch)
	switch {
	case j.useInt8: // no tile: the int8 kernels decode in registers
	case packed(T, b.simd):
		grain = gemmGrain
		b.reserveGemm(grain)
	case T > smallBatch:
		b.reserve(grain * m.Cols)
	case T > 1:
		b.reserve(min(grain, 3) * m.Cols)
	}
	j.planes = b.simd && m.Cols%blockElems == 0 && !j.useInt8
	j.vnni = j.useInt8 && b.vnni
	switch {
	case j.vnni:
		_, j.xd = b.int8Activations(T * m.Cols)
		j.xv = b.vnniActivations(T * m.Cols / blockElems)
		quantizeInt8VNNI(j.xv, j.xd, x[:T*m.Cols], j.int8.scale, b.simd)
		if T >= 8 {
			n := T / 8 * 8 * m.Cols / blockElems
			if len(b.xd8) < n {
				b.xd8 = make([]float32, n)
			}
			j.xd8 = b.xd8[:n]
			transpose8Scales(j.xd8, j.xd, T, m.Cols/blockElems)
		}
	case j.useInt8:
		j.xq, j.xd = b.int8Activations(T * m.Cols)
		quantizeInt8Planes(j.xq, j.xd, x[:T*m.Cols], j.int8.scale, b.simd)
	}
	if j.planes {
		n := T * m.Cols
		if len(b.xperm) < n {
			b.xperm = make([]float32, n)
		}
		permuteBlocks(b.xperm[:n], x[:n])
		x = b.xperm[:n]
	}
	j.m, j.x, j.y, j.T, j.scratch, j.gemm, j.simd = m, x, y, T, b.scratch, b.gemm, b.simd
	b.pool.parallel(j, m.Rows, grain)
	j.m, j.x, j.y, j.scratch, j.gemm, j.xq, j.xd, j.xv, j.xd8 = nil, nil, nil, nil, nil, nil, nil, nil, nil
}

func (j *nf4Job) run(w, lo, hi int) {
	if j.useInt8 {
		j.runInt8(lo, hi)
		return
	}
	m := j.m
	cols := m.Cols
	if packed(j.T, j.simd) {
		gemmPacked(j.y[lo:], m.Rows, j.x, cols, j.T, j, lo, hi-lo, cols, &j.gemm[w], j.simd, false)
		return
	}
	if j.T == 1 {
		for r := lo; r < hi; r++ {
			if j.planes {
				i0, i1 := r*cols, (r+1)*cols
				j.y[r] = dotNF4PlanesAVX2(&j.planeT, m.Packed[i0/2:i1/2], m.Absmax[i0/blockElems:i1/blockElems], j.x)
			} else {
				j.y[r] = dotNF4(m, &j.lut, r*cols, (r+1)*cols, j.x, j.simd)
			}
		}
		return
	}
	// Dequantize rows into a tile, then multiply every token by it: each
	// weight byte is read from memory once for the whole batch.
	step := hi - lo
	if j.T <= smallBatch {
		step = 3
	}
	for r0 := lo; r0 < hi; r0 += step {
		r1 := min(r0+step, hi)
		n0, n1 := r0*cols, r1*cols
		tile := j.scratch[w][:n1-n0]
		j.dequant(tile, n0, n1)
		if j.T <= smallBatch {
			gemmBlock(j.y[r0:], m.Rows, j.x, cols, j.T, tile, cols, r1-r0, cols, false, j.simd)
		} else {
			gemm(j.y[r0:], m.Rows, j.x, j.T, tile, r1-r0, cols, j.simd)
		}
	}
}

// dequant writes flattened elements [i0, i1) of W to dst; with planes,
// i0 and i1 are on block boundaries and the blocks come out in the order x
// was permuted to.
func (j *nf4Job) dequant(dst []float32, i0, i1 int) {
	m := j.m
	if j.planes {
		dequantNF4PlanesAVX2(dst, &j.planeT, m.Packed[i0/2:i1/2], m.Absmax[i0/blockElems:i1/blockElems])
		return
	}
	dequantNF4(dst, m, &j.lut, i0, i1, j.simd)
}

// wRows dequantizes W[r0:r0+nr, k0:k0+k] into tile (with planes, whole
// blocks: Cols%64 == 0 and gemmKC%64 == 0).
func (j *nf4Job) wRows(tile []float32, r0, nr, k0, k int) ([]float32, int) {
	for i := range nr {
		i0 := (r0+i)*j.m.Cols + k0
		j.dequant(tile[i*k:(i+1)*k], i0, i0+k)
	}
	return tile, k
}

// nf4At returns flattened element i of m.
func nf4At(m *kernels.NF4Matrix, i int) float32 {
	b := m.Packed[i>>1]
	if i&1 == 0 {
		b >>= 4
	}
	return m.Code[b&0x0F] * m.Absmax[i/blockElems]
}

// split returns the whole blocks [b0, b1) inside flattened range [i0, i1);
// the head [i0, b0·64) and tail [b1·64, i1) are partial (possibly empty, and
// b1 < b0 means the range lies inside one block, all of it head).
func split(i0, i1 int) (b0, b1 int) {
	return (i0 + blockElems - 1) / blockElems, i1 / blockElems
}

// dotNF4 returns Σ_{i0<=i<i1} W_flat[i]·x[i-i0].
func dotNF4(m *kernels.NF4Matrix, lut *[256][2]float32, i0, i1 int, x []float32, simd bool) float32 {
	b0, b1 := split(i0, i1)
	if b1 <= b0 {
		return dotNF4Scalar(m, i0, i1, x)
	}
	s := dotNF4Scalar(m, i0, b0*blockElems, x)
	xs := x[b0*blockElems-i0 : b1*blockElems-i0]
	if simd {
		s += dotNF4BlocksAVX2(&m.Code, m.Packed[b0*blockBytes:b1*blockBytes], m.Absmax[b0:b1], xs)
	} else {
		s += dotNF4Blocks(lut, m.Packed[b0*blockBytes:b1*blockBytes], m.Absmax[b0:b1], xs)
	}
	return s + dotNF4Scalar(m, b1*blockElems, i1, x[b1*blockElems-i0:])
}

func dotNF4Scalar(m *kernels.NF4Matrix, i0, i1 int, x []float32) float32 {
	var s float32
	for i := i0; i < i1; i++ {
		s += nf4At(m, i) * x[i-i0]
	}
	return s
}

// dotNF4Blocks returns Σ_b absmax[b]·Σ_{e<64} code(e)·x[64b+e] over whole
// blocks, with 4 independent sums per block.
func dotNF4Blocks(lut *[256][2]float32, packed []byte, absmax []float32, x []float32) float32 {
	var s float32
	for b, a := range absmax {
		p := (*[blockBytes]byte)(packed[b*blockBytes:])
		xb := (*[blockElems]float32)(x[b*blockElems:])
		var s0, s1, s2, s3 float32
		for e := 0; e < blockBytes; e += 2 {
			v, u := &lut[p[e]], &lut[p[e+1]]
			s0 += v[0] * xb[2*e]
			s1 += v[1] * xb[2*e+1]
			s2 += u[0] * xb[2*e+2]
			s3 += u[1] * xb[2*e+3]
		}
		s += a * ((s0 + s1) + (s2 + s3))
	}
	return s
}

// dequantNF4 writes W_flat[i0:i1] to dst.
func dequantNF4(dst []float32, m *kernels.NF4Matrix, lut *[256][2]float32, i0, i1 int, simd bool) {
	dst = dst[:i1-i0]
	b0, b1 := split(i0, i1)
	if b1 <= b0 {
		for i := i0; i < i1; i++ {
			dst[i-i0] = nf4At(m, i)
		}
		return
	}
	for i := i0; i < b0*blockElems; i++ {
		dst[i-i0] = nf4At(m, i)
	}
	d := dst[b0*blockElems-i0 : b1*blockElems-i0]
	if simd {
		dequantNF4BlocksAVX2(d, &m.Code, m.Packed[b0*blockBytes:b1*blockBytes], m.Absmax[b0:b1])
	} else {
		dequantNF4Blocks(d, lut, m.Packed[b0*blockBytes:b1*blockBytes], m.Absmax[b0:b1])
	}
	for i := b1 * blockElems; i < i1; i++ {
		dst[i-i0] = nf4At(m, i)
	}
}

// dequantNF4Blocks writes whole blocks: dst[64b+e] = code(e)·absmax[b].
func dequantNF4Blocks(dst []float32, lut *[256][2]float32, packed []byte, absmax []float32) {
	for b, a := range absmax {
		p := (*[blockBytes]byte)(packed[b*blockBytes:])
		d := (*[blockElems]float32)(dst[b*blockElems:])
		for e, v := range p {
			pair := &lut[v]
			d[2*e] = pair[0] * a
			d[2*e+1] = pair[1] * a
		}
	}
}

// dequantRow writes row r of m to dst [Cols].
func dequantRow(dst []float32, m *kernels.NF4Matrix, lut *[256][2]float32, r int, simd bool) {
	dequantNF4(dst, m, lut, r*m.Cols, (r+1)*m.Cols, simd)
}
