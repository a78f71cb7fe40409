package cpu

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// BF16 and Q8 weights (kernels.BF16Matrix, kernels.Q8Matrix) are the large
// embedding/lm_head matrices, which decode streams once per step: like the
// NF4 path, MatMul splits rows across the pool and reads each weight byte
// once per call for every token. Up to smallBatch tokens (decode), weights
// are decoded in registers inside the dot products: one row at a time for
// T = 1, 3 rows × 4 tokens at a time for T > 1 (each weight decoded once
// per 4 tokens, each x load shared by 3 rows). For prefill the packed GEMM
// (gemm.go) decodes rows 256 columns at a time into its panels and
// multiplies every token by them; without AVX2 a tile of whole rows is
// decoded and the pure Go micro-kernels run.

// streamJob: items are weight rows of bf16 or q8 (exactly one is set).
type streamJob struct {
	bf16    *kernels.BF16Matrix
	q8      *kernels.Q8Matrix
	x, y    []float32 // [T, Cols], [T, Rows]
	T       int
	scratch [][]float32 // per worker: the decoded tile of rows (T > smallBatch)
	gemm    []gemmBuf   // per worker, for the packed GEMM (T > smallBatch)
	simd    bool
	// Q8 with int8 activations (Backend.SetInt8Activations, T <=
	// smallBatch, Cols % 64 == 0): x quantized per 64 in natural order.
	xq []int8    // [T, Cols]
	xd []float32 // [T, Cols/64]
}

const q8Block = kernels.Q8BlockSize

// streamGrain returns the rows per work item: ~256 KiB of weights when
// decoding (long runs of contiguous memory for the prefetcher: measured
// ~10% faster than 64 KiB on the lm_head, which still has ~2000 items to
// balance the cores), a tile of nf4Tile floats for prefill.
func streamGrain(rowBytes, cols, T int) int {
	const itemBytes = 256 << 10
	switch {
	case T > smallBatch:
		return max(1, nf4Tile/cols)
	case T > 1:
		rows := max(3, itemBytes/rowBytes)
		return rows - rows%3 // whole groups of 3 rows
	}
	return max(1, itemBytes/rowBytes)
}

func (b *Backend) matMulStream(y, x []float32, bf16 *kernels.BF16Matrix, q8 *kernels.Q8Matrix, T int) {
	rows, cols := 0, 0
	rowBytes := 0
	if bf16 != nil {
		rows, cols, rowBytes = bf16.Rows, bf16.Cols, 2*bf16.Cols
	} else {
		rows, cols, rowBytes = q8.Rows, q8.Cols, q8.Cols+4*q8.Cols/q8Block
	}
	grain := streamGrain(rowBytes, cols, T)
	switch {
	case packed(T, b.simd):
		grain = gemmGrain
		b.reserveGemm(grain)
	case T > smallBatch:
		b.reserve(grain * cols)
	}
	b.stream = streamJob{bf16: bf16, q8: q8, x: x, y: y, T: T, scratch: b.scratch, gemm: b.gemm, simd: b.simd}
	if q8 != nil && b.int8Act && T <= smallBatch && cols%blockElems == 0 {
		b.stream.xq, b.stream.xd = b.int8Activations(T * cols)
		kernels.QuantizeBlocksInt8(b.stream.xq, b.stream.xd, x[:T*cols])
	}
	b.pool.parallel(&b.stream, rows, grain)
	b.stream = streamJob{}
}

func (j *streamJob) run(w, lo, hi int) {
	rows, cols := j.shape()
	switch {
	case packed(j.T, j.simd):
		gemmPacked(j.y[lo:], rows, j.x, cols, j.T, j, lo, hi-lo, cols, &j.gemm[w], j.simd, false)
	case j.xq != nil:
		// Q8 × int8, row after row (see nf4Job.runInt8).
		m, nb := j.q8, cols/blockElems
		for r := lo; r < hi; r++ {
			q, scale := m.Q[r*cols:(r+1)*cols], m.Scale[r*cols/q8Block:(r+1)*cols/q8Block]
			for t := range j.T {
				xq, xd := j.xq[t*cols:(t+1)*cols], j.xd[t*nb:(t+1)*nb]
				if j.simd {
					j.y[t*rows+r] = dotQ8Int8AVX2(q, scale, xq, xd)
				} else {
					j.y[t*rows+r] = dotQ8Int8Go(q, scale, xq, xd)
				}
			}
		}
	case j.T == 1 || j.T <= smallBatch && !j.simd:
		for r := lo; r < hi; r++ {
			for t := 0; t < j.T; t++ {
				j.y[t*rows+r] = j.dotRow(r, j.x[t*cols:(t+1)*cols])
			}
		}
	case j.T <= smallBatch:
		// Items are whole groups of 3 rows but for the matrix's last rows,
		// which go one at a time (as 3 copies of the row: ld = 0).
		for r := lo; r < hi; r += 3 {
			if hi-r >= 3 {
				j.dot3Rows(r, 3, cols)
				continue
			}
			for ; r < hi; r++ {
				j.dot3Rows(r, 1, 0)
			}
		}
	default:
		// Prefill: decode a tile of rows, then multiply every token by it.
		tile := j.scratch[w][:(hi-lo)*cols]
		j.decodeRows(tile, lo, hi)
		gemm(j.y[lo:], rows, j.x, j.T, tile, hi-lo, cols, j.simd)
	}
}

// dot3Rows writes y[t, r+i] = W[r+i,:]·x[t,:] for i < n and every token,
// with the 4x3 kernels on rows r, r+ld, r+2·ld (ld = 0 or Cols), 4 tokens at
// a time: each weight is decoded once per 4 tokens, and each x load serves
// 3 rows.
func (j *streamJob) dot3Rows(r, n, ld int) {
	rows, cols := j.shape()
	for t := 0; t < j.T; t += 4 {
		// A last, partial group of tokens repeats its last token and drops
		// those sums.
		nt := min(4, j.T-t)
		var xs [4][]float32
		for i := range xs {
			xs[i] = j.x[(t+min(i, nt-1))*cols:][:cols]
		}
		var s [12]float32 // [token][row]
		if m := j.bf16; m != nil {
			k := cols &^ 7
			if k > 0 {
				dot4x3BF16AVX2(&s, &xs, m.Data[r*cols:], ld, k)
			}
			for i := 0; i < nt && k < cols; i++ {
				for jr := 0; jr < n; jr++ {
					s[3*i+jr] += dotBF16Go(m.Data[(r+jr)*cols+k:(r+jr+1)*cols], xs[i][k:])
				}
			}
		} else {
			m := j.q8
			dot4x3Q8AVX2(&s, &xs, m.Q[r*cols:], m.Scale[r*cols/q8Block:], ld, cols/q8Block)
		}
		for i := 0; i < nt; i++ {
			for jr := 0; jr < n; jr++ {
				j.y[(t+i)*rows+r+jr] = s[3*i+jr]
			}
		}
	}
}

func (j *streamJob) shape() (int, int) {
	if j.bf16 != nil {
		return j.bf16.Rows, j.bf16.Cols
	}
	return j.q8.Rows, j.q8.Cols
}

// dotRow returns W[r,:]·x. x [Cols].
func (j *streamJob) dotRow(r int, x []float32) float32 {
	if m := j.bf16; m != nil {
		return dotBF16(m.Data[r*m.Cols:(r+1)*m.Cols], x, j.simd)
	}
	m := j.q8
	return dotQ8(m.Q[r*m.Cols:(r+1)*m.Cols], m.Scale[r*m.Cols/q8Block:(r+1)*m.Cols/q8Block], x, j.simd)
}

// wRows decodes W[r0:r0+nr, k0:k0+k] into tile; k0 and k are whole Q8
// blocks (gemmKC%32 == 0 and Cols%32 == 0).
func (j *streamJob) wRows(tile []float32, r0, nr, k0, k int) ([]float32, int) {
	_, cols := j.shape()
	for i := range nr {
		i0 := (r0+i)*cols + k0
		j.decode(tile[i*k:(i+1)*k], i0, i0+k)
	}
	return tile, k
}

// decodeRows writes rows [r0, r1) of W to dst [(r1-r0)*Cols] as float32.
func (j *streamJob) decodeRows(dst []float32, r0, r1 int) {
	_, cols := j.shape()
	j.decode(dst, r0*cols, r1*cols)
}

// decode writes flattened elements [i0, i1) of W to dst (for Q8, on block
// boundaries).
func (j *streamJob) decode(dst []float32, i0, i1 int) {
	if m := j.bf16; m != nil {
		decodeBF16(dst, m.Data[i0:i1], j.simd)
		return
	}
	decodeQ8(dst, j.q8.Q[i0:i1], j.q8.Scale[i0/q8Block:i1/q8Block], j.simd)
}

// dotBF16 returns Σ bf16(w[i])·x[i], len(x) >= len(w). The assembly takes
// whole groups of 8, Go the rest.
func dotBF16(w []uint16, x []float32, simd bool) float32 {
	i, s := 0, float32(0)
	if simd && len(w) >= 8 {
		i = len(w) &^ 7
		s = dotBF16AVX2(w[:i], x[:i])
	}
	return s + dotBF16Go(w[i:], x[i:len(w)])
}

func dotBF16Go(w []uint16, x []float32) float32 {
	x = x[:len(w)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(w); i += 4 {
		s0 += kernels.BF16ToF32(w[i]) * x[i]
		s1 += kernels.BF16ToF32(w[i+1]) * x[i+1]
		s2 += kernels.BF16ToF32(w[i+2]) * x[i+2]
		s3 += kernels.BF16ToF32(w[i+3]) * x[i+3]
	}
	for ; i < len(w); i++ {
		s0 += kernels.BF16ToF32(w[i]) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// decodeBF16 writes dst[i] = bf16(w[i]), len(dst) >= len(w).
func decodeBF16(dst []float32, w []uint16, simd bool) {
	i := 0
	if simd && len(w) >= 8 {
		i = len(w) &^ 7
		decodeBF16AVX2(dst[:i], w[:i])
	}
	dst = dst[:len(w)]
	for ; i < len(w); i++ {
		dst[i] = kernels.BF16ToF32(w[i])
	}
}

// dotQ8 returns Σ_b scale[b]·Σ_{e<32} q[32b+e]·x[32b+e] over len(scale)
// whole blocks.
func dotQ8(q []int8, scale []float32, x []float32, simd bool) float32 {
	if len(scale) == 0 {
		return 0
	}
	if simd {
		return dotQ8AVX2(q, scale, x)
	}
	var s float32
	for b, sc := range scale {
		qb := (*[q8Block]int8)(q[b*q8Block:])
		xb := (*[q8Block]float32)(x[b*q8Block:])
		var s0, s1, s2, s3 float32
		for e := 0; e < q8Block; e += 4 {
			s0 += float32(qb[e]) * xb[e]
			s1 += float32(qb[e+1]) * xb[e+1]
			s2 += float32(qb[e+2]) * xb[e+2]
			s3 += float32(qb[e+3]) * xb[e+3]
		}
		s += sc * ((s0 + s1) + (s2 + s3))
	}
	return s
}

// decodeQ8 writes dst[32b+e] = float32(q[32b+e])·scale[b] (one rounding,
// as ref) over len(scale) whole blocks.
func decodeQ8(dst []float32, q []int8, scale []float32, simd bool) {
	if len(scale) == 0 {
		return
	}
	if simd {
		decodeQ8AVX2(dst, q, scale)
		return
	}
	for b, sc := range scale {
		qb := (*[q8Block]int8)(q[b*q8Block:])
		d := (*[q8Block]float32)(dst[b*q8Block:])
		for e, v := range qb {
			d[e] = float32(v) * sc
		}
	}
}

func checkBF16(op string, m *kernels.BF16Matrix) {
	need(op, "BF16 data", len(m.Data), m.Rows*m.Cols)
}

func checkQ8(op string, m *kernels.Q8Matrix) {
	if m.Cols%q8Block != 0 {
		panic(fmt.Sprintf("kernels/cpu: %s: Q8 matrix has %d columns, not a multiple of %d", op, m.Cols, q8Block))
	}
	need(op, "Q8 q", len(m.Q), m.Rows*m.Cols)
	need(op, "Q8 scale", len(m.Scale), m.Rows*m.Cols/q8Block)
}
