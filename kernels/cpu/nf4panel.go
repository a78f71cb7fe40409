package cpu

import (
	"encoding/binary"
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// NF4 panels: on a CPU with AVX-512 VNNI and int8 NF4 products switched on
// (SetInt8Activations and SetInt8Prefill), Upload repacks an NF4 weight of
// whole 16-row panels and whole blocks into this layout once, at load, as
// llama.cpp's CPU backend repacks q4_0 into q4_0_8x8 (ggml-cpu/repack.cpp):
// the same nibbles and scales, reordered, so memory stays the same
// (UploadOwned reorders the weight's own buffers in place). A lane of a
// 512-bit vector is then a row, and one VPDPBUSD multiplies 16 rows by one
// token's 4 activations, with no horizontal sums and no per-call packing,
// for every batch size (nf4panel_amd64.s).
//
// Layout: panel p (rows 16p..16p+15), block b (columns 64b..64b+63) is 512
// bytes of packed: 8 groups of [16 rows][4 bytes], group h holding bytes
// 4h..4h+3 of each row's 32 bitsandbytes bytes of the block (row r at 4r);
// and 16 floats of absmax, the rows' scales. Each panel takes exactly the
// bytes its rows take in the bitsandbytes layout, in both arrays. A byte's
// high nibble is an even element of the block and its low nibble an odd
// one, so group h's high nibbles meet the activations' planes positions
// 4h..4h+3 (the even values, quantizeInt8Planes order) and its low nibbles
// positions 32+4h..32+4h+3 (the odd ones).
//
// Activations: the batch's tokens quantized per block (quantizeInt8VNNI)
// and laid out in groups of 12 (panelGroups), each group [nb][12][64]
// bytes in planes order, with d [nb][12] and bias [nb][12] = -128·Σ of the
// block's bytes (which cancels the codes' +128). A last, partial group is
// not padded: the kernels read only its tokens.
const (
	panelRows   = 16                     // rows per panel: one vector of int32 lanes
	panelBlock  = panelRows * blockBytes // 512 bytes of packed per block
	panelTokens = 12                     // tokens per group: the widest kernel's
	panelGrain  = 64                     // rows per work item for prefill-sized batches: 4 panels
)

// nf4Panels is an NF4 weight in the panel layout. It is a kernels.Matrix
// that only this package's ops understand.
type nf4Panels struct {
	rows, cols int
	packed     []byte    // [rows/16, cols/64, 512]
	absmax     []float32 // [rows/16, cols/64, 16]
	code       [16]float32
}

func (p *nf4Panels) Shape() (int, int) { return p.rows, p.cols }

// Bytes is the memory the panels take (kernels.MatrixBytes): the
// bitsandbytes weight's, nibbles and float32 scales.
func (p *nf4Panels) Bytes() int { return len(p.packed) + 4*len(p.absmax) }

// panelable reports whether an NF4 weight can be repacked: whole panels,
// whole blocks.
func panelable(m *kernels.NF4Matrix) bool {
	return m.Rows%panelRows == 0 && m.Cols%blockElems == 0
}

// repackNF4 returns m in the panel layout (m must be panelable and valid)
// in new buffers, or, inPlace, in m's own (which m then no longer
// describes); panels are split over forEach (a parallel for over [0, n)).
func repackNF4(m *kernels.NF4Matrix, inPlace bool, forEach func(n int, f func(lo, hi int))) *nf4Panels {
	p := &nf4Panels{rows: m.Rows, cols: m.Cols, code: m.Code, packed: m.Packed, absmax: m.Absmax}
	if !inPlace {
		p.packed, p.absmax = make([]byte, len(m.Packed)), make([]float32, len(m.Absmax))
	}
	nb := m.Cols / blockElems
	forEach(m.Rows/panelRows, func(lo, hi int) {
		// The panel's rows, copied out first: its bytes are the same
		// ranges in both layouts, so a panel may be written over itself.
		packed, absmax := make([]byte, panelRows*nb*blockBytes), make([]float32, panelRows*nb)
		for pi := lo; pi < hi; pi++ {
			copy(packed, m.Packed[pi*len(packed):][:len(packed)])
			copy(absmax, m.Absmax[pi*len(absmax):][:len(absmax)])
			p.writePanel(pi, packed, absmax)
		}
	})
	return p
}

// writePanel writes panel pi from its rows in the bitsandbytes layout:
// packed [16, cols/2], absmax [16, cols/64].
func (p *nf4Panels) writePanel(pi int, packed []byte, absmax []float32) {
	nb := p.cols / blockElems
	for b := range nb {
		dst := p.packed[(pi*nb+b)*panelBlock:][:panelBlock]
		scales := p.absmax[(pi*nb+b)*panelRows:][:panelRows]
		for r := range panelRows {
			src := packed[(r*nb+b)*blockBytes:][:blockBytes]
			for h := range blockBytes / 4 {
				copy(dst[h*64+4*r:][:4], src[4*h:])
			}
			scales[r] = absmax[r*nb+b]
		}
	}
}

// DecodeRow writes row r as float32 to dst (kernels.HostRows).
func (p *nf4Panels) DecodeRow(r int, dst []float32) { p.dequantRows(dst, r, 1) }

// dequantRows writes rows [r0, r0+n) of W as float32 to dst [n, cols]:
// Code[nibble]·absmax, the values the bitsandbytes layout dequantizes to.
func (p *nf4Panels) dequantRows(dst []float32, r0, n int) {
	nb := p.cols / blockElems
	for i := range n {
		r := r0 + i
		pi, lane := r/panelRows, r%panelRows
		row := dst[i*p.cols : (i+1)*p.cols]
		for b := range nb {
			blk := p.packed[(pi*nb+b)*panelBlock:][:panelBlock]
			a := p.absmax[(pi*nb+b)*panelRows+lane]
			out := row[b*blockElems:][:blockElems]
			for h := range blockBytes / 4 {
				for k, v := range blk[h*64+4*lane:][:4] {
					j := 4*h + k // the byte's index in the bitsandbytes block
					out[2*j] = p.code[v>>4] * a
					out[2*j+1] = p.code[v&0x0F] * a
				}
			}
		}
	}
}

func checkPanels(op string, p *nf4Panels) {
	n := p.rows * p.cols
	if p.rows%panelRows != 0 || p.cols%blockElems != 0 || len(p.packed) != n/2 || len(p.absmax) != n/blockElems {
		panic(fmt.Sprintf("kernels/cpu: %s: malformed NF4 panels [%d,%d] of %d bytes and %d scales", op, p.rows, p.cols, len(p.packed), len(p.absmax)))
	}
}

// panelJob: items are rows, in whole panels.
type panelJob struct {
	p      *nf4Panels
	y      []float32 // [T, rows]
	T      int
	groups *panelGroups // the activations
	utbl   *[32]uint8
}

// matMulPanels: y = W·x for W in panels. The int8 kernels run when the
// batch's mode is int8 (as for a bitsandbytes-layout weight); otherwise
// (the mode switched off after Upload) W is dequantized a tile at a time
// into a float32 product: exact, and slower.
func (b *Backend) matMulPanels(y, x []float32, p *nf4Panels, T int) {
	if !b.vnni || T <= smallBatch && !b.int8Act || T > smallBatch && !b.int8Prefill {
		b.matMulPanelsFloat(y, x, p, T)
		return
	}
	nb := p.cols / blockElems
	b.nf4.setCode(&p.code)
	_, xd := b.int8Activations(T * p.cols)
	xv := b.vnniActivations(T * nb)
	quantizeInt8VNNI(xv, xd, x[:T*p.cols], b.nf4.int8.scale, b.simd)
	b.panelGroups.regroup(xv, xd, T, nb)
	grain := panelGrain
	if T <= smallBatch {
		grain = max(panelRows, nf4Grain(p.cols, T)/panelRows*panelRows)
	}
	j := &b.panel
	*j = panelJob{p: p, y: y, T: T, groups: &b.panelGroups, utbl: &b.nf4.int8.utbl}
	b.pool.parallel(j, p.rows, grain)
	*j = panelJob{}
}

// run computes rows [lo, hi) of y, 12 tokens at a time: for each group,
// every panel of the item in turn is multiplied by the group's tokens (12,
// else 8, 4 and single ones), so a panel is read once per group (from
// memory for the first group, from cache for the others).
func (j *panelJob) run(_, lo, hi int) {
	p := j.p
	nb := p.cols / blockElems
	g := j.groups
	for g0 := 0; g0 < j.T; g0 += panelTokens {
		nt := min(panelTokens, j.T-g0)
		i0 := g0 / panelTokens * nb * panelTokens // the group's first (block, token)
		for r := lo; r < hi; r += panelRows {
			pi := r / panelRows
			panel, absmax := p.packed[pi*nb*panelBlock:][:nb*panelBlock], p.absmax[pi*nb*panelRows:][:nb*panelRows]
			for t := 0; t < nt; {
				n := panelChunk(nt - t)
				i := i0 + t
				panelKernel(n, j.y[(g0+t)*p.rows+r:], p.rows, g.x[i*blockElems:], g.d[i:], g.bias[i:], panel, absmax, nb, j.utbl)
				t += n
			}
		}
	}
}

// panelKernel checks the slices' extents and runs the n-token kernel
// (n = 12, 8, 4 or 1): y[t·ldy + r] for t < n, r < 16, from the
// activations of tokens x, d, bias onwards in a group of 12, the panel's
// packed bytes and absmax.
func panelKernel(n int, y []float32, ldy int, x []byte, d []float32, bias []int32, panel []byte, absmax []float32, nb int, utbl *[32]uint8) {
	_ = y[(n-1)*ldy+panelRows-1]
	_ = x[((nb-1)*panelTokens+n)*blockElems-1]
	_ = d[(nb-1)*panelTokens+n-1]
	_ = bias[(nb-1)*panelTokens+n-1]
	_ = panel[nb*panelBlock-1]
	_ = absmax[nb*panelRows-1]
	switch n {
	case 12:
		panelNF4x12Asm(&y[0], ldy, &x[0], &d[0], &bias[0], &panel[0], &absmax[0], nb, utbl)
	case 8:
		panelNF4x8Asm(&y[0], ldy, &x[0], &d[0], &bias[0], &panel[0], &absmax[0], nb, utbl)
	case 4:
		panelNF4x4Asm(&y[0], ldy, &x[0], &d[0], &bias[0], &panel[0], &absmax[0], nb, utbl)
	case 1:
		panelNF4x1Asm(&y[0], ldy, &x[0], &d[0], &bias[0], &panel[0], &absmax[0], nb, utbl)
	default:
		panic(fmt.Sprintf("kernels/cpu: no %d-token panel kernel", n))
	}
}

// matMulPanelsFloat is the float32 product of W in panels: tiles of rows
// dequantized, multiplied with the float32 kernels, scattered into y.
func (b *Backend) matMulPanelsFloat(y, x []float32, p *nf4Panels, T int) {
	nr := min(p.rows, max(panelRows, tileFloats/p.cols))
	tile, yt := make([]float32, nr*p.cols), make([]float32, T*nr)
	for r0 := 0; r0 < p.rows; r0 += nr {
		n := min(nr, p.rows-r0)
		p.dequantRows(tile, r0, n)
		b.matMulF32(yt[:T*n], x, &kernels.F32Matrix{Rows: n, Cols: p.cols, Data: tile[:n*p.cols]}, T)
		for t := range T {
			copy(y[t*p.rows+r0:][:n], yt[t*n:(t+1)*n])
		}
	}
}

// panelGroups is a batch's activations in the panel kernels' layout.
type panelGroups struct {
	x    []byte    // [G, nb, 12, 64]
	d    []float32 // [G, nb, 12]
	bias []int32   // [G, nb, 12]
}

// regroup lays out T tokens of activations in quantizeInt8VNNI's layout
// (xv [T, nb, 96], xd [T, nb]) in groups of 12.
func (g *panelGroups) regroup(xv []byte, xd []float32, T, nb int) {
	n := (T + panelTokens - 1) / panelTokens * nb * panelTokens
	if len(g.d) < n {
		g.x, g.d, g.bias = make([]byte, n*blockElems), make([]float32, n), make([]int32, n)
	}
	for t := range T {
		gi, ti := t/panelTokens, t%panelTokens
		for b := range nb {
			i := (gi*nb+b)*panelTokens + ti
			src := xv[(t*nb+b)*vnniBlock : (t*nb+b+1)*vnniBlock]
			copy(g.x[i*blockElems:(i+1)*blockElems], src[:blockElems])
			var sum int32
			for lane := range 8 {
				sum += int32(binary.LittleEndian.Uint32(src[blockElems+4*lane:]))
			}
			g.d[i], g.bias[i] = xd[t*nb+b], sum
		}
	}
}
