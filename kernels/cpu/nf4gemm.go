package cpu

import "encoding/binary"

// NF4 × int8 prefill (Backend.SetInt8Prefill): batches of more than
// smallBatch tokens quantize their activations as decode steps do
// (quantizeInt8VNNI) and, where the CPU has AVX-512 VNNI and the rows come
// in panels of 16, multiply them in a blocked integer GEMM
// (nf4gemm_amd64.s); elsewhere the decode kernels run 8 tokens (AVX2) or
// one (Go) at a time. Either way the result is kernels/ref.MatMulNF4Int8's,
// and the GEMM's is the Go kernel's bit for bit: both add
// float32(Σ code·x)·(absmax·d) block by block, each product rounded.
//
// Layouts (b a 64-value block, planes order as quantizeInt8Planes):
//   - panel: a work item's rows in panels of 16, each [nb] blocks of 1088
//     bytes: 16 steps of [16 rows][4 bytes] unsigned codes (code+128) for
//     planes positions 4s..4s+3, then the 16 rows' absmax (float32);
//   - activations: tokens in groups of 12, each [nb][12][64] bytes, with
//     d [nb][12] and bias [nb][12] = -128·Σ of the block's bytes (which
//     cancels the codes' +128); a last, partial group is zero-padded.
//
// A work item packs its panels once (544 KiB for 8192 columns) and every
// group of 12 tokens passes over them while they stay in L2.
const (
	vgTokens     = 12                           // tokens per micro-kernel call
	vgRows       = 16                           // rows per panel: one vector of int32 lanes
	vgPanelBlock = vgRows*blockElems + vgRows*4 // bytes per block of a panel
	vgGrain      = 64                           // rows per work item: 4 panels
)

// vnniGroups is a batch's activations in the GEMM's layout.
type vnniGroups struct {
	x    []byte    // [G, nb, 12, 64]
	d    []float32 // [G, nb, 12]
	bias []int32   // [G, nb, 12]
}

// regroup lays out T tokens of activations in quantizeInt8VNNI's layout
// (xv [T, nb, 96], xd [T, nb]) in groups of 12 for the GEMM.
func (g *vnniGroups) regroup(xv []byte, xd []float32, T, nb int) {
	groups := (T + vgTokens - 1) / vgTokens
	n := groups * nb * vgTokens
	if len(g.d) < n {
		g.x, g.d, g.bias = make([]byte, n*blockElems), make([]float32, n), make([]int32, n)
	}
	x, d, bias := g.x[:n*blockElems], g.d[:n], g.bias[:n]
	for t := range groups * vgTokens {
		gi, ti := t/vgTokens, t%vgTokens
		for b := range nb {
			i := (gi*nb+b)*vgTokens + ti
			dst := x[i*blockElems : (i+1)*blockElems]
			if t >= T {
				clear(dst)
				d[i], bias[i] = 0, 0
				continue
			}
			src := xv[(t*nb+b)*vnniBlock : (t*nb+b+1)*vnniBlock]
			copy(dst, src[:blockElems])
			var sum int32
			for lane := range 8 {
				sum += int32(binary.LittleEndian.Uint32(src[blockElems+4*lane:]))
			}
			d[i], bias[i] = xd[t*nb+b], sum
		}
	}
}

// vnniGemmRows reports whether an [rows, cols] NF4 product can take the
// GEMM: whole panels and whole blocks, and a panel's byte offsets within
// the gathers' int32.
func vnniGemmRows(rows, cols int) bool {
	return rows%vgRows == 0 && cols%blockElems == 0 && cols <= 1<<24
}

// runVNNIGemm computes rows [lo, hi) of y for every token: it packs the
// rows' panels into worker w's space, then multiplies each group of 12
// tokens by each panel.
func (j *nf4Job) runVNNIGemm(w, lo, hi int) {
	m := j.m
	nb := m.Cols / blockElems
	pstride := m.Cols / 2
	gb := &j.gemm[w]
	np := (hi - lo) / vgRows
	psize := nb * vgPanelBlock
	if len(gb.vpanel) < np*psize {
		gb.vpanel = make([]byte, np*psize)
	}
	var offs, aoffs [vgRows]int32
	for r := range vgRows {
		offs[r], aoffs[r] = int32(r*pstride), int32(r*nb)
	}
	for p := range np {
		r := lo + p*vgRows
		packVNNIPanel(gb.vpanel[p*psize:(p+1)*psize], m.Packed[r*pstride:(r+vgRows)*pstride], m.Absmax[r*nb:(r+vgRows)*nb], nb, &j.int8.utbl, &offs, &aoffs)
	}
	g := &j.groups
	for t0 := 0; t0 < j.T; t0 += vgTokens {
		nt := min(vgTokens, j.T-t0)
		i0 := (t0 / vgTokens) * nb * vgTokens
		x, d, bias := g.x[i0*blockElems:(i0+nb*vgTokens)*blockElems], g.d[i0:i0+nb*vgTokens], g.bias[i0:i0+nb*vgTokens]
		for p := range np {
			panel := gb.vpanel[p*psize : (p+1)*psize]
			r := lo + p*vgRows
			if nt == vgTokens {
				gemmVNNI(j.y[t0*m.Rows+r:], m.Rows, x, d, bias, panel, nb)
				continue
			}
			gemmVNNI(gb.vypad[:], vgRows, x, d, bias, panel, nb)
			for i := range nt {
				copy(j.y[(t0+i)*m.Rows+r:(t0+i)*m.Rows+r+vgRows], gb.vypad[i*vgRows:])
			}
		}
	}
}

// gemmVNNI checks the slices' extents and runs the micro-kernel: y[t·ldy+r]
// for t < 12, r < 16.
func gemmVNNI(y []float32, ldy int, x []byte, d []float32, bias []int32, panel []byte, nb int) {
	_ = y[(vgTokens-1)*ldy+vgRows-1]
	_ = x[nb*vgTokens*blockElems-1]
	_ = d[nb*vgTokens-1]
	_ = bias[nb*vgTokens-1]
	_ = panel[nb*vgPanelBlock-1]
	gemmVNNIAsm(&y[0], ldy, &x[0], &d[0], &bias[0], &panel[0], nb)
}

// packVNNIPanel checks the extents and packs 16 rows (packed and absmax
// from the panel's first row) into panel.
func packVNNIPanel(panel, packed []byte, absmax []float32, nb int, utbl *[32]uint8, offs, aoffs *[vgRows]int32) {
	_ = panel[nb*vgPanelBlock-1]
	_ = packed[offs[vgRows-1]+int32(nb*blockBytes)-1]
	_ = absmax[aoffs[vgRows-1]+int32(nb)-1]
	packVNNIPanelAsm(&panel[0], &packed[0], &absmax[0], nb, utbl, offs, aoffs)
}
