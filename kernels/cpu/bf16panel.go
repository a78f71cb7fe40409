package cpu

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// bfloat16 panels: the lm_head (and tied embedding table) of a bf16
// checkpoint, [128256, 2048] for Llama-3.2-1B, repacked by Upload in
// serve's configuration (panelLayouts) so that batched decode steps
// multiply it at the FMA units' speed: row-major, the 3-row × 4-token
// kernels reduce every row horizontally and decode each weight once per 4
// tokens, at about half the FMA peak for 8 tokens. In panels a vector lane
// is a row, as in the NF4 panels (nf4panel.go), and one kernel serves 1
// to 12 tokens (bf16panel_amd64.s). The values are the same; only the
// order of the float32 sums differs from the row-major kernels', within
// the tolerance of every float32 product (kernels/ref).
//
// Layout: panel p (rows 16p..16p+15) is [cols][16] bfloat16, column k
// holding W[16p+r, k] at 16k+r. Activations: tokens in groups of 12, each
// group [cols][n] float32 (x transposed), n = 12 but for a last, partial
// group of n tokens: one token's x stays contiguous, and a few tokens'
// share cache lines.
type bf16Panels struct {
	rows, cols int
	data       []uint16 // [rows/16, cols, 16]
}

func (p *bf16Panels) Shape() (int, int) { return p.rows, p.cols }

// Bytes is the memory the panels take (kernels.MatrixBytes).
func (p *bf16Panels) Bytes() int { return 2 * len(p.data) }

// DecodeRow writes row r as float32 to dst (kernels.HostRows).
func (p *bf16Panels) DecodeRow(r int, dst []float32) {
	panel := p.data[r/panelRows*p.cols*panelRows:]
	for k := range p.cols {
		dst[k] = kernels.BF16ToF32(panel[k*panelRows+r%panelRows])
	}
}

// repackBF16 returns m in panels (m.Rows a multiple of 16), in a new
// buffer or in place, as repackNF4.
func repackBF16(m *kernels.BF16Matrix, inPlace bool, forEach func(n int, f func(lo, hi int))) *bf16Panels {
	p := &bf16Panels{rows: m.Rows, cols: m.Cols, data: m.Data}
	if !inPlace {
		p.data = make([]uint16, len(m.Data))
	}
	forEach(m.Rows/panelRows, func(lo, hi int) {
		rows := make([]uint16, panelRows*m.Cols) // the panel's rows, copied out first
		for pi := lo; pi < hi; pi++ {
			copy(rows, m.Data[pi*len(rows):][:len(rows)])
			panel := p.data[pi*len(rows):][:len(rows)]
			for r := range panelRows {
				for k, v := range rows[r*m.Cols:][:m.Cols] {
					panel[k*panelRows+r] = v
				}
			}
		}
	})
	return p
}

func checkBF16Panels(op string, p *bf16Panels) {
	if p.rows%panelRows != 0 || len(p.data) != p.rows*p.cols {
		panic(fmt.Sprintf("kernels/cpu: %s: malformed bf16 panels [%d,%d] of %d values", op, p.rows, p.cols, len(p.data)))
	}
}

// bf16PanelJob: items are rows, in whole panels.
type bf16PanelJob struct {
	p  *bf16Panels
	y  []float32 // [T, rows]
	xg []float32 // the activations in groups: group g at g·cols·12, [cols, n]
	T  int
}

// matMulBF16Panels: y = W·x for W in bf16 panels, every batch size on the
// panel kernels.
func (b *Backend) matMulBF16Panels(y, x []float32, p *bf16Panels, T int) {
	groups := (T + panelTokens - 1) / panelTokens
	n := groups * p.cols * panelTokens
	if len(b.bf16x) < n {
		b.bf16x = make([]float32, n)
	}
	xg := b.bf16x[:n]
	for t := range T {
		g0 := t / panelTokens * panelTokens
		n := min(panelTokens, T-g0) // the group's tokens: its stride
		g := xg[g0*p.cols+t-g0:]
		for k, v := range x[t*p.cols : (t+1)*p.cols] {
			g[k*n] = v
		}
	}
	// ~256 KiB of weights per item, as streamGrain.
	grain := max(panelRows, (256<<10)/(2*p.cols)/panelRows*panelRows)
	b.bf16Panel = bf16PanelJob{p: p, y: y, xg: xg, T: T}
	b.pool.parallel(&b.bf16Panel, p.rows, grain)
	b.bf16Panel = bf16PanelJob{}
}

// run computes rows [lo, hi) of y, group by group, each panel of the item
// multiplied by the group's tokens (12, else 8, 4 and single ones).
func (j *bf16PanelJob) run(_, lo, hi int) {
	p := j.p
	for g0 := 0; g0 < j.T; g0 += panelTokens {
		nt := min(panelTokens, j.T-g0)
		xg := j.xg[g0*p.cols:][:p.cols*nt]
		for r := lo; r < hi; r += panelRows {
			panel := p.data[r*p.cols:][:p.cols*panelRows]
			for t := 0; t < nt; {
				n := panelChunk(nt - t)
				bf16PanelKernel(n, j.y[(g0+t)*p.rows+r:], p.rows, xg[t:], nt, panel, p.cols)
				t += n
			}
		}
	}
}

// panelChunk is the widest panel kernel for k tokens: 12, 8, 4 or 1.
func panelChunk(k int) int {
	switch {
	case k >= 12:
		return 12
	case k >= 8:
		return 8
	case k >= 4:
		return 4
	}
	return 1
}

// bf16PanelKernel checks the slices' extents and runs the n-token kernel:
// y[t·ldy + r] for t < n, r < 16, from tokens x onwards of a group of
// xstride.
func bf16PanelKernel(n int, y []float32, ldy int, x []float32, xstride int, panel []uint16, cols int) {
	_ = y[(n-1)*ldy+panelRows-1]
	_ = x[(cols-1)*xstride+n-1]
	_ = panel[cols*panelRows-1]
	switch n {
	case 12:
		bf16PanelX12Asm(&y[0], ldy, &x[0], xstride, &panel[0], cols)
	case 8:
		bf16PanelX8Asm(&y[0], ldy, &x[0], xstride, &panel[0], cols)
	case 4:
		bf16PanelX4Asm(&y[0], ldy, &x[0], xstride, &panel[0], cols)
	case 1:
		bf16PanelX1Asm(&y[0], ldy, &x[0], xstride, &panel[0], cols)
	default:
		panic(fmt.Sprintf("kernels/cpu: no %d-token bf16 panel kernel", n))
	}
}
