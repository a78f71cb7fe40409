package cpu

// Packed GEMM for batches of more than smallBatch tokens (prefill, training,
// MatMulT), in the BLIS scheme (Van Zee and van de Geijn, "BLIS: A
// Framework for Rapidly Instantiating BLAS Functionality", 2015; the same
// register block as OpenBLAS's Haswell sgemm kernel): kc columns at a time,
// a work item's rows of W are copied into panels of 16 rows stored column
// by column (panel[c][16]), and a micro-kernel multiplies 6 tokens by one
// panel with 12 accumulator vectors, loading 2 vectors of W and
// broadcasting 6 activations per column: 12 FMAs per 8 loads, and no
// horizontal sums. A work item's panels (64 rows × 256 columns, 64 KiB)
// stay in L2 while every token passes; the 6 tokens' slices of x (6 KiB)
// stay in L1 while every panel passes.
//
// Each output is one chain of FMAs over its columns in order (one kc pass
// after another, added to y), so results do not depend on the number of
// workers.

const (
	gemmMR    = 6   // tokens per micro-kernel call
	gemmNR    = 16  // rows of W per panel: two vectors
	gemmKC    = 256 // columns per pass
	gemmGrain = 64  // rows of W per work item: 4 panels
)

// gemmBuf is one worker's space for the packed GEMM.
type gemmBuf struct {
	tile  []float32 // [rows, kc] rows of W decoded to float32
	panel []float32 // [rows/16, kc, 16]
	xpad  []float32 // [6, kc] a last, partial group of tokens, zero-padded
	ypad  [gemmMR * gemmNR]float32
}

// reserve grows the buffers for work items of up to nr rows.
func (g *gemmBuf) reserve(nr int) {
	np := (nr + gemmNR - 1) / gemmNR
	if len(g.tile) < nr*gemmKC {
		g.tile = make([]float32, nr*gemmKC)
	}
	if len(g.panel) < np*gemmNR*gemmKC {
		g.panel = make([]float32, np*gemmNR*gemmKC)
	}
	if len(g.xpad) < gemmMR*gemmKC {
		g.xpad = make([]float32, gemmMR*gemmKC)
	}
}

// wSource gives W[r0:r0+nr, k0:k0+k]: it decodes those rows into tile
// (row-major, leading dimension k) and returns tile and k, or returns a
// view of W itself and W's leading dimension.
type wSource interface {
	wRows(tile []float32, r0, nr, k0, k int) (w []float32, ldw int)
}

// transposedSource is a wSource that holds Wᵀ: row r of W is column r of
// what it stores, so a panel's 16 rows at one column are 16 contiguous
// values, and it packs them itself, a copy per column.
type transposedSource interface {
	wSource
	packT(panel []float32, r0, nr, k0, k int)
}

// packed reports whether a product of T tokens takes the packed GEMM.
func packed(T int, simd bool) bool { return simd && T > smallBatch }

// gemmPacked computes y[t*ldy+r] = Σ_{c<cols} x[t*ldx+c]·W[r0+r,c] (or
// adds it to y, with add) for t < T, r < nr, with W from src.
func gemmPacked(y []float32, ldy int, x []float32, ldx, T int, src wSource, r0, nr, cols int, g *gemmBuf, simd, add bool) {
	np := (nr + gemmNR - 1) / gemmNR
	for k0 := 0; k0 < cols; k0 += gemmKC {
		k := min(gemmKC, cols-k0)
		panel := g.panel[:np*gemmNR*k]
		if t, ok := src.(transposedSource); ok {
			t.packT(panel, r0, nr, k0, k)
		} else {
			w, ldw := src.wRows(g.tile[:nr*k], r0, nr, k0, k)
			packPanels(panel, w, ldw, nr, k, simd)
		}
		acc := add || k0 > 0
		for t0 := 0; t0 < T; t0 += gemmMR {
			nt := min(gemmMR, T-t0)
			xs, ldxs := x[t0*ldx+k0:], ldx
			if nt < gemmMR {
				xs, ldxs = g.xpad[:gemmMR*k], k
				clear(xs)
				for i := range nt {
					copy(xs[i*k:(i+1)*k], x[(t0+i)*ldx+k0:])
				}
			}
			for p := range np {
				j0 := p * gemmNR // the panel's first row
				pk := panel[j0*k : (j0+gemmNR)*k]
				if nt == gemmMR && j0+gemmNR <= nr {
					gemm6x16(y[t0*ldy+j0:], ldy, xs, ldxs, pk, k, acc, simd)
					continue
				}
				gemm6x16(g.ypad[:], gemmNR, xs, ldxs, pk, k, false, simd)
				for i := range nt {
					yi, si := y[(t0+i)*ldy+j0:], g.ypad[i*gemmNR:(i+1)*gemmNR]
					for j := range min(gemmNR, nr-j0) {
						if acc {
							yi[j] += si[j]
						} else {
							yi[j] = si[j]
						}
					}
				}
			}
		}
	}
}

// packPanels copies the nr×k matrix w (leading dimension ldw) into panels
// of 16 rows: panel[p*16*k + c*16 + i] = w[(16p+i)*ldw + c], rows past nr
// zero.
func packPanels(panel, w []float32, ldw, nr, k int, simd bool) {
	for r0 := 0; r0 < nr; r0 += gemmNR {
		pk := panel[r0*k : (r0+gemmNR)*k]
		n := min(gemmNR, nr-r0)
		if simd && n == gemmNR && k%8 == 0 {
			pack16AVX2(pk, w[r0*ldw:], ldw, k)
			continue
		}
		for i := range gemmNR {
			if i >= n {
				for c := range k {
					pk[c*gemmNR+i] = 0
				}
				continue
			}
			row := w[(r0+i)*ldw : (r0+i)*ldw+k]
			for c, v := range row {
				pk[c*gemmNR+i] = v
			}
		}
	}
}

// gemm6x16 computes, for i < 6, j < 16,
//
//	s = Σ_{c<k} x[i*ldx+c]·p[c*16+j]
//	y[i*ldy+j] = s, or += s when acc.
func gemm6x16(y []float32, ldy int, x []float32, ldx int, p []float32, k int, acc, simd bool) {
	_ = y[(gemmMR-1)*ldy+gemmNR-1]
	_ = x[(gemmMR-1)*ldx+k-1]
	_ = p[k*gemmNR-1]
	if simd {
		gemm6x16Asm(&y[0], ldy, &x[0], ldx, &p[0], k, acc)
		return
	}
	var s [gemmMR][gemmNR]float32
	for c := range k {
		pc := p[c*gemmNR : (c+1)*gemmNR]
		for i := range gemmMR {
			v := x[i*ldx+c]
			for j, w := range pc {
				s[i][j] += v * w
			}
		}
	}
	for i := range gemmMR {
		yi := y[i*ldy : i*ldy+gemmNR]
		for j := range yi {
			if acc {
				yi[j] += s[i][j]
			} else {
				yi[j] = s[i][j]
			}
		}
	}
}
