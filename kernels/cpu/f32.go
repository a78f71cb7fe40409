package cpu

import "github.com/parrot-llm/parrot/kernels"

// kBlock is the number of columns a matmul works on at a time: a tile of
// rows × kBlock weights stays in L1/L2 while every token's slice of x
// streams past it.
const kBlock = 512

// f32Job: items are weight rows. With AVX2 every batch size takes the
// packed GEMM, so that a token's outputs do not depend on how many tokens
// share its batch (float32 weights serve the test models and training's
// transposed products, not decode at speed).
type f32Job struct {
	m    *kernels.F32Matrix
	x, y []float32 // [T, Cols], [T, Rows]
	T    int
	simd bool
	gemm []gemmBuf // per worker, for the packed GEMM
}

// f32TJob is f32Job for the transpose of wt [k, Rows] (row-major, leading
// dimension ld): W[r, c] = wt[c·ld + r], so that MatMulT multiplies by W
// (or a tile of its rows) without transposing it first. x has leading
// dimension ldx; with add, the product is added to y.
type f32TJob struct {
	f32Job
	wt      []float32
	ld, ldx int
	add     bool
}

func (j *f32TJob) run(w, lo, hi int) {
	gemmPacked(j.y[lo:], j.m.Rows, j.x, j.ldx, j.T, j, lo, hi-lo, j.m.Cols, &j.gemm[w], true, j.add)
}

// packT copies W[r0:r0+nr, k0:k0+k] into 16-row panels: panel row c of
// panel p is wt[(k0+c)·ld + r0+16p :][:16], rows past nr zero.
func (j *f32TJob) packT(panel []float32, r0, nr, k0, k int) {
	for p0 := 0; p0 < nr; p0 += gemmNR {
		pk := panel[p0*k : (p0+gemmNR)*k]
		n := min(gemmNR, nr-p0)
		for c := range k {
			src := j.wt[(k0+c)*j.ld+r0+p0:]
			dst := pk[c*gemmNR : (c+1)*gemmNR]
			copy(dst, src[:n])
			clear(dst[n:])
		}
	}
}

// matMulTF32 computes y [T, rows] = x·W, or adds it to y with add, for
// x [T, k] (leading dimension ldx) and W[r, c] = wt[c·ld + r] (wt [k, ld],
// ld >= rows): the packed GEMM, so AVX2 only.
func (b *Backend) matMulTF32(y, x []float32, ldx int, wt []float32, ld, rows, k, T int, add bool) {
	b.reserveGemm(gemmGrain)
	j := &f32TJob{f32Job: f32Job{m: &kernels.F32Matrix{Rows: rows, Cols: k}, x: x, y: y, T: T, simd: true, gemm: b.gemm},
		wt: wt, ld: ld, ldx: ldx, add: add}
	b.pool.parallel(j, rows, gemmGrain)
}

// f32Grain is the number of rows per work item: a multiple of the 3 rows of
// the AVX2 micro-kernel; 24 rows × kBlock columns is 48 KiB of weights.
const f32Grain = 24

func (b *Backend) matMulF32(y, x []float32, m *kernels.F32Matrix, T int) {
	b.f32 = f32Job{m: m, x: x, y: y, T: T, simd: b.simd, gemm: b.gemm}
	grain := f32Grain
	if b.simd {
		grain = gemmGrain
		b.reserveGemm(grain)
	}
	b.pool.parallel(&b.f32, m.Rows, grain)
	b.f32 = f32Job{}
}

func (j *f32Job) run(w, lo, hi int) {
	cols := j.m.Cols
	if j.simd {
		gemmPacked(j.y[lo:], j.m.Rows, j.x, cols, j.T, j, lo, hi-lo, cols, &j.gemm[w], j.simd, false)
		return
	}
	gemm(j.y[lo:], j.m.Rows, j.x, j.T, j.m.Data[lo*cols:hi*cols], hi-lo, cols, j.simd)
}

// wRows: the weights are float32 already, so the view is W itself.
func (j *f32Job) wRows(_ []float32, r0, _, k0, _ int) ([]float32, int) {
	return j.m.Data[r0*j.m.Cols+k0:], j.m.Cols
}

// gemm: y[t*ldy+r] = Σ_c x[t*cols+c]·w[r*cols+c] for t < T, r < nr.
// With 4 or more tokens the columns go kBlock at a time, so that the
// weights are reused from cache by every group of 4 tokens; with fewer,
// each row is a single streaming pass.
func gemm(y []float32, ldy int, x []float32, T int, w []float32, nr, cols int, simd bool) {
	if T < 4 {
		gemmBlock(y, ldy, x, cols, T, w, cols, nr, cols, false, simd)
		return
	}
	for k0 := 0; k0 < cols; k0 += kBlock {
		k := min(kBlock, cols-k0)
		gemmBlock(y, ldy, x[k0:], cols, T, w[k0:], cols, nr, k, k0 > 0, simd)
	}
}

// gemmBlock computes, for t < T and r < nr,
//
//	s = Σ_{c<k} x[t*ldx+c]·w[r*ldw+c]
//	y[t*ldy+r] = s, or += s when acc.
func gemmBlock(y []float32, ldy int, x []float32, ldx, T int, w []float32, ldw, nr, k int, acc, simd bool) {
	put := func(i int, v float32) {
		if acc {
			y[i] += v
		} else {
			y[i] = v
		}
	}
	if simd && k >= 8 {
		// 4 tokens × 3 rows per call, 12 sums in registers. A last, partial
		// group of tokens repeats its last row of x and drops those sums.
		for t := 0; t < T; t += 4 {
			n := min(4, T-t)
			var xs [4][]float32
			for i := range xs {
				xs[i] = x[(t+min(i, n-1))*ldx:]
			}
			r := 0
			for ; r+3 <= nr; r += 3 {
				var s [12]float32 // [token][row]
				dot4x3AVX2(&s, &xs, w[r*ldw:], ldw, k)
				for i := 0; i < n; i++ {
					put((t+i)*ldy+r, s[3*i])
					put((t+i)*ldy+r+1, s[3*i+1])
					put((t+i)*ldy+r+2, s[3*i+2])
				}
			}
			for ; r < nr; r++ {
				for i := 0; i < n; i++ {
					put((t+i)*ldy+r, dotAVX2(xs[i][:k], w[r*ldw:r*ldw+k]))
				}
			}
		}
		return
	}
	// Pure Go: tokens 4 at a time against 2 rows (8 sums share the loads),
	// the leftover tokens one at a time against 4 rows.
	t := 0
	for ; t+4 <= T; t += 4 {
		xt := x[t*ldx:]
		r := 0
		for ; r+2 <= nr; r += 2 {
			var s [8]float32 // [token][row]
			dot4x2(&s, xt, ldx, w[r*ldw:], ldw, k)
			for i := 0; i < 4; i++ {
				put((t+i)*ldy+r, s[2*i])
				put((t+i)*ldy+r+1, s[2*i+1])
			}
		}
		if r < nr {
			for i := 0; i < 4; i++ {
				put((t+i)*ldy+r, dot(xt[i*ldx:i*ldx+k], w[r*ldw:r*ldw+k], false))
			}
		}
	}
	for ; t < T; t++ {
		xt := x[t*ldx : t*ldx+k]
		r := 0
		for ; r+4 <= nr; r += 4 {
			var s [4]float32 // [row]
			dot1x4(&s, xt, w[r*ldw:], ldw, k)
			for i := 0; i < 4; i++ {
				put(t*ldy+r+i, s[i])
			}
		}
		for ; r < nr; r++ {
			put(t*ldy+r, dot(xt, w[r*ldw:r*ldw+k], false))
		}
	}
}

// dot returns Σ a[i]·b[i], len(b) >= len(a).
func dot(a, b []float32, simd bool) float32 {
	if simd && len(a) >= 16 {
		return dotAVX2(a, b)
	}
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dot4x2: s[2*i+j] = Σ_{c<k} x[i*ldx+c]·w[j*ldw+c], i < 4, j < 2.
func dot4x2(s *[8]float32, x []float32, ldx int, w []float32, ldw, k int) {
	x0, x1, x2, x3 := x[:k], x[ldx:ldx+k], x[2*ldx:2*ldx+k], x[3*ldx:3*ldx+k]
	w0, w1 := w[:k], w[ldw:ldw+k]
	var s00, s01, s10, s11, s20, s21, s30, s31 float32
	for c := range x0 {
		a, b := w0[c], w1[c]
		s00 += x0[c] * a
		s01 += x0[c] * b
		s10 += x1[c] * a
		s11 += x1[c] * b
		s20 += x2[c] * a
		s21 += x2[c] * b
		s30 += x3[c] * a
		s31 += x3[c] * b
	}
	*s = [8]float32{s00, s01, s10, s11, s20, s21, s30, s31}
}

// dot1x4: s[j] = Σ_{c<k} x[c]·w[j*ldw+c], j < 4.
func dot1x4(s *[4]float32, x []float32, w []float32, ldw, k int) {
	x = x[:k]
	w0, w1, w2, w3 := w[:k], w[ldw:ldw+k], w[2*ldw:2*ldw+k], w[3*ldw:3*ldw+k]
	var s0, s1, s2, s3 float32
	for c, v := range x {
		s0 += v * w0[c]
		s1 += v * w1[c]
		s2 += v * w2[c]
		s3 += v * w3[c]
	}
	*s = [4]float32{s0, s1, s2, s3}
}
