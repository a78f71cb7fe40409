// Package ref is the naive specification of every kernels.Backend op: one
// obvious loop per op, accumulating in float64, no concurrency. Fast backends
// are tested op by op against it.
//
// Shapes are the caller's responsibility (they are fixed at load time); a
// mismatch panics with an index error. Weights must pass kernels.CheckMatrix.
// Memory is host memory (kernels.HostMemory).
package ref

import (
	"fmt"
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

// Backend is the reference backend. It has no state; its memory is host
// memory (kernels.HostMemory), so a handle's Host slice is the data.
type Backend struct{ kernels.HostMemory }

var _ kernels.Backend = Backend{}

// New returns the reference backend.
func New() kernels.Backend { return Backend{} }

func (Backend) Name() string { return "ref" }

// Upload returns w itself once it passes kernels.CheckMatrix.
func (b Backend) Upload(w kernels.Matrix) (kernels.Matrix, error) { return kernels.HostUpload(b, w) }

// f and ints unwrap handles at an op's entry (host memory only).
func f(op string, b kernels.Buf) []float32     { return kernels.HostFloats("ref "+op, b) }
func ints(op string, b kernels.IntBuf) []int32 { return kernels.HostInts("ref "+op, b) }

// SupportsMatrix reports whether MatMul and Embed accept w: *F32Matrix,
// *NF4Matrix, *BF16Matrix and *Q8Matrix.
func (Backend) SupportsMatrix(w kernels.Matrix) bool {
	switch w.(type) {
	case *kernels.F32Matrix, *kernels.NF4Matrix, *kernels.BF16Matrix, *kernels.Q8Matrix:
		return true
	}
	return false
}

// NF4Element returns element i of the row-major flattening of m:
// Code[nibble_i] * Absmax[i/64], where element 2j is the high nibble of
// Packed[j] and element 2j+1 the low nibble. The product is rounded to
// float32, as bitsandbytes does.
func NF4Element(m *kernels.NF4Matrix, i int) float32 {
	b := m.Packed[i/2]
	nibble := b >> 4
	if i%2 == 1 {
		nibble = b & 0x0F
	}
	return m.Code[nibble] * m.Absmax[i/kernels.NF4BlockSize]
}

// Element returns W[r, c] of an *F32Matrix, *NF4Matrix, *BF16Matrix or
// *Q8Matrix.
func Element(w kernels.Matrix, r, c int) float32 {
	switch m := w.(type) {
	case *kernels.F32Matrix:
		return m.Data[r*m.Cols+c]
	case *kernels.NF4Matrix:
		return NF4Element(m, r*m.Cols+c)
	case *kernels.BF16Matrix:
		return BF16Element(m, r*m.Cols+c)
	case *kernels.Q8Matrix:
		return Q8Element(m, r*m.Cols+c)
	}
	panic(fmt.Sprintf("ref: unsupported matrix type %T (weights must pass kernels.CheckMatrix at load)", w))
}

// Dequantize returns m as a dense float32 matrix.
func Dequantize(m *kernels.NF4Matrix) *kernels.F32Matrix {
	d := &kernels.F32Matrix{Rows: m.Rows, Cols: m.Cols, Data: make([]float32, m.Rows*m.Cols)}
	for i := range d.Data {
		d.Data[i] = NF4Element(m, i)
	}
	return d
}

// MatMul: y[t,r] = Σ_c W[r,c]·x[t,c]. x [T, Cols], y [T, Rows].
func (Backend) MatMul(yb, xb kernels.Buf, w kernels.Matrix, T int) {
	y, x := f("MatMul", yb), f("MatMul", xb)
	rows, cols := w.Shape()
	for t := 0; t < T; t++ {
		for r := 0; r < rows; r++ {
			var s float64
			for c := 0; c < cols; c++ {
				s += float64(Element(w, r, c)) * float64(x[t*cols+c])
			}
			y[t*rows+r] = float32(s)
		}
	}
}

// Embed: out[t,:] = table[ids[t],:]. out [ids.Len(), Cols].
func (Backend) Embed(outb kernels.Buf, table kernels.Matrix, idsb kernels.IntBuf) {
	out, ids := f("Embed", outb), ints("Embed", idsb)
	rows, cols := table.Shape()
	for t, id := range ids {
		if id < 0 || int(id) >= rows {
			panic(fmt.Sprintf("ref: Embed: token id %d out of range [0,%d)", id, rows))
		}
		for c := 0; c < cols; c++ {
			out[t*cols+c] = Element(table, int(id), c)
		}
	}
}

// RMSNorm: out[t,i] = weight[i] * (x[t,i] / sqrt(mean_i(x[t,i]²) + eps)).
func (Backend) RMSNorm(outb, xb, wb kernels.Buf, eps float32) {
	out, x, weight := f("RMSNorm", outb), f("RMSNorm", xb), f("RMSNorm", wb)
	n := len(weight)
	for t := 0; t < len(x)/n; t++ {
		row := x[t*n : (t+1)*n]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		scale := float32(1 / math.Sqrt(ss/float64(n)+float64(eps)))
		for i, v := range row {
			out[t*n+i] = weight[i] * (v * scale)
		}
	}
}

// RoPE rotates the pairs (x[i], x[i+headDim/2]) of every head of token t by
// the angle pos[t]*invFreq[i], computed in float32 as transformers does.
func (Backend) RoPE(xb kernels.Buf, posb kernels.IntBuf, nHeads, headDim int, invFreqb kernels.Buf) {
	x, pos, invFreq := f("RoPE", xb), ints("RoPE", posb), f("RoPE", invFreqb)
	half := headDim / 2
	for t, p := range pos {
		for i := 0; i < half; i++ {
			angle := float32(p) * invFreq[i]
			cos := float32(math.Cos(float64(angle)))
			sin := float32(math.Sin(float64(angle)))
			for h := 0; h < nHeads; h++ {
				base := (t*nHeads + h) * headDim
				x0, x1 := x[base+i], x[base+i+half]
				x[base+i] = x0*cos - x1*sin
				x[base+i+half] = x1*cos + x0*sin
			}
		}
	}
}

// WriteKV: kv.K[slots[t],:] = k[t,:] and kv.V[slots[t],:] = v[t,:],
// rounded to nearest bfloat16 (ties to even) in a bfloat16 layer.
func (Backend) WriteKV(kv kernels.KVLayer, kb, vb kernels.Buf, slotsb kernels.IntBuf, kvDim int) {
	k, v, slots := f("WriteKV", kb), f("WriteKV", vb), ints("WriteKV", slotsb)
	rows := kvRows(kv, kvDim)
	for t, slot := range slots {
		if slot < 0 || int(slot) >= rows {
			panic(fmt.Sprintf("ref: WriteKV: slot %d outside the cache of %d rows", slot, rows))
		}
		dst, src := int(slot)*kvDim, t*kvDim
		if !kv.BF16() {
			copy(f("WriteKV", kv.K)[dst:dst+kvDim], k[src:src+kvDim])
			copy(f("WriteKV", kv.V)[dst:dst+kvDim], v[src:src+kvDim])
			continue
		}
		for i := range kvDim {
			kv.K16[dst+i], kv.V16[dst+i] = kernels.F32ToBF16(k[src+i]), kernels.F32ToBF16(v[src+i])
		}
	}
}

// kvRows is the number of whole rows of kvDim values both K and V hold.
func kvRows(kv kernels.KVLayer, kvDim int) int {
	if kv.BF16() {
		return min(len(kv.K16), len(kv.V16)) / kvDim
	}
	return min(kv.K.Len(), kv.V.Len()) / kvDim
}

// kvValues returns a layer's K and V as float32 (bfloat16 ones widened).
func kvValues(kv kernels.KVLayer) (K, V []float32) {
	if !kv.BF16() {
		return f("PagedAttention", kv.K), f("PagedAttention", kv.V)
	}
	K, V = make([]float32, len(kv.K16)), make([]float32, len(kv.V16))
	for i, h := range kv.K16 {
		K[i] = kernels.BF16ToF32(h)
	}
	for i, h := range kv.V16 {
		V[i] = kernels.BF16ToF32(h)
	}
	return K, V
}

// KVRow is the row of kv.K/kv.V that holds position p of sequence seq
// (vLLM's block table addressing).
func KVRow(m kernels.AttnMeta, blockTables []int32, seq, p int) int {
	return int(blockTables[seq*m.MaxBlocks+p/m.BlockSize])*m.BlockSize + p%m.BlockSize
}

// PagedAttention: softmax(q·Kᵀ/sqrt(headDim))·V per token and head over
// positions 0..Pos[t] of the token's sequence, each position's row found
// through the block table (KVRow), with the max subtracted before
// exponentiating. A token with Pos -1 attends nothing and gets zeros. A
// bfloat16 layer's values are exactly their float32 widening.
func (Backend) PagedAttention(outb, qb kernels.Buf, kv kernels.KVLayer, m kernels.AttnMeta, nHeads, nKVHeads, headDim int) {
	out, q := f("PagedAttention", outb), f("PagedAttention", qb)
	K, V := kvValues(kv)
	seqs, pos, tables := ints("PagedAttention", m.Seq), ints("PagedAttention", m.Pos), ints("PagedAttention", m.BlockTables)
	group := nHeads / nKVHeads
	kvDim := nKVHeads * headDim
	scale := 1 / math.Sqrt(float64(headDim))
	for t, last := range pos {
		if last < -1 {
			panic(fmt.Sprintf("ref: PagedAttention: token %d at position %d", t, last))
		}
		n := int(last) + 1
		rows := make([]int, n)
		for j := range rows {
			rows[j] = KVRow(m, tables, int(seqs[t]), j)
		}
		for h := 0; h < nHeads; h++ {
			g := h / group
			qh := q[(t*nHeads+h)*headDim : (t*nHeads+h+1)*headDim]
			oh := out[(t*nHeads+h)*headDim : (t*nHeads+h+1)*headDim]
			scores := make([]float64, n)
			maxScore := math.Inf(-1)
			for j := range scores {
				k := K[rows[j]*kvDim+g*headDim : rows[j]*kvDim+(g+1)*headDim]
				var s float64
				for i := range qh {
					s += float64(qh[i]) * float64(k[i])
				}
				scores[j] = s * scale
				maxScore = math.Max(maxScore, scores[j])
			}
			var sum float64
			for j := range scores {
				scores[j] = math.Exp(scores[j] - maxScore)
				sum += scores[j]
			}
			for i := range oh {
				var o float64
				for j, p := range scores {
					o += p * float64(V[rows[j]*kvDim+g*headDim+i])
				}
				if n > 0 {
					o /= sum
				}
				oh[i] = float32(o)
			}
		}
	}
}

// GatherRows: dst[i,:] = src[rows[i],:].
func (Backend) GatherRows(dstb, srcb kernels.Buf, rowsb kernels.IntBuf, width int) {
	dst, src, rows := f("GatherRows", dstb), f("GatherRows", srcb), ints("GatherRows", rowsb)
	for i, r := range rows {
		if r < 0 || (int(r)+1)*width > len(src) {
			panic(fmt.Sprintf("ref: GatherRows: row %d outside the source of %d rows", r, len(src)/max(width, 1)))
		}
		copy(dst[i*width:(i+1)*width], src[int(r)*width:(int(r)+1)*width])
	}
}

// SiLUMul: out[i] = gate[i]·sigmoid(gate[i])·up[i].
func (Backend) SiLUMul(outb, gateb, upb kernels.Buf) {
	out, gate, up := f("SiLUMul", outb), f("SiLUMul", gateb), f("SiLUMul", upb)
	for i, g := range gate {
		silu := float64(g) / (1 + math.Exp(-float64(g)))
		out[i] = float32(silu) * up[i]
	}
}

// Add: dst[i] += src[i].
func (Backend) Add(dstb, srcb kernels.Buf) {
	dst, src := f("Add", dstb), f("Add", srcb)
	for i := range dst {
		dst[i] += src[i]
	}
}
