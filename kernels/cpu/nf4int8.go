package cpu

import (
	"encoding/binary"

	"github.com/parrot-llm/parrot/kernels"
)

// NF4 × int8 activations (Backend.SetInt8Activations): decode-sized batches
// of NF4 products with whole-block rows quantize each token's activations
// once per call (kernels.QuantizeBlocksInt8) and take integer dot products
// against the int8 code book. kernels/ref.MatMulNF4Int8 is the specification;
// the AVX2 kernel is nf4int8_amd64.s, the pure Go one dotNF4Int8Go.

// int8Code is a code book as the int8 kernels use it.
type int8Code struct {
	q     [16]int8
	tbl   [32]int8  // q twice: VPSHUFB looks up within each 128-bit lane
	utbl  [32]uint8 // q+128 twice, unsigned: the VNNI kernels' table
	scale float32   // q·scale ≈ code
}

func newInt8Code(code *[16]float32) int8Code {
	var c int8Code
	c.q, c.scale = kernels.Int8Code(code)
	copy(c.tbl[:16], c.q[:])
	copy(c.tbl[16:], c.q[:])
	for i, q := range c.tbl {
		c.utbl[i] = uint8(int(q) + 128)
	}
	return c
}

// int8Activations returns the backend's buffers for n quantized
// activations and their n/64 block scales, grown on demand (one op at a
// time uses them: ops run under Backend.mu).
func (b *Backend) int8Activations(n int) ([]int8, []float32) {
	if len(b.xq) < n {
		b.xq, b.xd = make([]int8, n), make([]float32, n/blockElems)
	}
	return b.xq[:n], b.xd[:n/blockElems]
}

// vnniActivations returns the backend's buffer for nb activation blocks in
// quantizeInt8VNNI's layout, grown on demand (under Backend.mu, like
// int8Activations).
func (b *Backend) vnniActivations(nb int) []byte {
	if len(b.xv) < nb*vnniBlock {
		b.xv = make([]byte, nb*vnniBlock)
	}
	return b.xv[:nb*vnniBlock]
}

// quantizeInt8Planes quantizes x [T, cols] block by block into q [T, cols]
// and d [T, cols/64], each block's 64 bytes reordered as the kernels read
// them: the 32 even elements (the high nibbles of the block's packed bytes),
// then the 32 odd ones. d already includes the code book's scale. The AVX2
// twin (simd) gives the same bytes and scales for finite x.
func quantizeInt8Planes(q []int8, d []float32, x []float32, codeScale float32, simd bool) {
	if simd && len(x) >= blockElems {
		quantizePlanesAVX2(q, d, x, codeScale)
		return
	}
	var nat [blockElems]int8
	for b := range len(x) / blockElems {
		kernels.QuantizeBlocksInt8(nat[:], d[b:b+1], x[b*blockElems:(b+1)*blockElems])
		d[b] *= codeScale
		qb := (*[blockElems]int8)(q[b*blockElems:])
		for i := range blockBytes {
			qb[i] = nat[2*i]
			qb[blockBytes+i] = nat[2*i+1]
		}
	}
}

// vnniBlock is the size of an activation block in quantizeInt8VNNI's
// layout: 64 quantized values, then 8 int32 lane starts.
const vnniBlock = blockElems + 8*4

// quantizeInt8VNNI is quantizeInt8Planes for the VNNI kernels: each block's
// 64 bytes (evens, then odds) are followed by the starts of the kernel's 8
// int32 lanes, -128 times the sum of the 8 activations each lane sees
// (bytes 4j..4j+3 of either half), which cancels the +128 of its codes.
// q [T, cols/64, 96] bytes; d as in quantizeInt8Planes, and so is simd.
func quantizeInt8VNNI(q []byte, d []float32, x []float32, codeScale float32, simd bool) {
	if simd && len(x) >= blockElems {
		quantizeVNNIAVX2(q, d, x, codeScale)
		return
	}
	var planes [blockElems]int8
	for b := range len(x) / blockElems {
		quantizeInt8Planes(planes[:], d[b:b+1], x[b*blockElems:(b+1)*blockElems], codeScale, false)
		qb := q[b*vnniBlock : (b+1)*vnniBlock]
		for i, v := range planes {
			qb[i] = byte(v)
		}
		for lane := range 8 {
			var sum int32
			for k := range 4 {
				sum += int32(planes[4*lane+k]) + int32(planes[blockBytes+4*lane+k])
			}
			binary.LittleEndian.PutUint32(qb[blockElems+4*lane:], uint32(-128*sum))
		}
	}
}

// transpose8Scales writes the block scales d [T, nb] of each whole group
// of 8 tokens 8 to a block: dst[(g·nb + b)·8 + i] = d[(8g+i)·nb + b].
func transpose8Scales(dst, d []float32, T, nb int) {
	for g := range T / 8 {
		for b := range nb {
			for i := range 8 {
				dst[(g*nb+b)*8+i] = d[(8*g+i)*nb+b]
			}
		}
	}
}

// dotNF4Int8Go returns Σ_b absmax[b]·d[b]·Σ_e code(e)·xq over whole
// blocks, xq in quantizeInt8Planes order.
func dotNF4Int8Go(c *int8Code, packed []byte, absmax []float32, xq []int8, d []float32) float32 {
	var s float32
	for b, a := range absmax {
		p := (*[blockBytes]byte)(packed[b*blockBytes:])
		x := (*[blockElems]int8)(xq[b*blockElems:])
		var even, odd int32
		for i, v := range p {
			even += int32(c.q[v>>4]) * int32(x[i])
			odd += int32(c.q[v&0x0F]) * int32(x[blockBytes+i])
		}
		// The conversions keep the product rounded on its own (no FMA), as
		// the panel kernels compute it.
		s += float32(float32(even+odd) * float32(a*d[b]))
	}
	return s
}

// runInt8 computes rows [lo, hi) of y for every token, row after row: the
// weights stream from memory in order (the hardware prefetcher follows one
// stream best) and each row is read from cache for the batch's other tokens,
// decoded once per 8 or 4 of them (the 8-token kernel gives each token
// exactly what the 4-token one does).
func (j *nf4Job) runInt8(lo, hi int) {
	m := j.m
	nb := m.Cols / blockElems
	pstride := m.Cols / 2
	if j.vnni {
		j.runVNNI(lo, hi)
		return
	}
	for r := lo; r < hi; r++ {
		packed, absmax := m.Packed[r*pstride:(r+1)*pstride], m.Absmax[r*nb:(r+1)*nb]
		t := 0
		for ; j.simd && t+8 <= j.T; t += 8 {
			var out [8]float32
			dotNF4Int8x8TokAVX2(&out, &j.int8.tbl, packed, absmax, j.xq[t*m.Cols:], j.xd[t*nb:], m.Cols)
			for i, v := range out {
				j.y[(t+i)*m.Rows+r] = v
			}
		}
		for ; j.simd && t+4 <= j.T; t += 4 {
			var out [4]float32
			dotNF4Int8x4TokAVX2(&out, &j.int8.tbl, packed, absmax, j.xq[t*m.Cols:], j.xd[t*nb:], m.Cols)
			for i, v := range out {
				j.y[(t+i)*m.Rows+r] = v
			}
		}
		for ; t < j.T; t++ {
			xq, xd := j.xq[t*m.Cols:(t+1)*m.Cols], j.xd[t*nb:(t+1)*nb]
			if j.simd {
				j.y[t*m.Rows+r] = dotNF4Int8AVX2(&j.int8.tbl, packed, absmax, xq, xd)
			} else {
				j.y[t*m.Rows+r] = dotNF4Int8Go(&j.int8, packed, absmax, xq, xd)
			}
		}
	}
}

// runVNNI is runInt8 with the AVX-512 VNNI kernels: 8 tokens at a time,
// then one at a time (each gives what its AVX2 twin gives).
func (j *nf4Job) runVNNI(lo, hi int) {
	m := j.m
	nb := m.Cols / blockElems
	pstride := m.Cols / 2
	utbl := &j.int8.utbl
	for r := lo; r < hi; r++ {
		packed, absmax := m.Packed[r*pstride:(r+1)*pstride], m.Absmax[r*nb:(r+1)*nb]
		t := 0
		for ; t+8 <= j.T; t += 8 {
			var out [8]float32
			dotNF4Int8x8VNNI(&out, utbl, packed, absmax, j.xv[t*nb*vnniBlock:], j.xd8[t*nb:], m.Cols)
			for i, v := range out {
				j.y[(t+i)*m.Rows+r] = v
			}
		}
		for ; t < j.T; t++ {
			j.y[t*m.Rows+r] = dotNF4Int8VNNI(utbl, packed, absmax, j.xv[t*nb*vnniBlock:(t+1)*nb*vnniBlock], j.xd[t*nb:(t+1)*nb])
		}
	}
}

// dotQ8Int8Go returns Σ_b d[b]·Σ_{half} scale·Σ_e q·xq: a row of Q8
// weights (blocks of 32) against int8 activations in natural order (blocks
// of 64), len(d) blocks.
func dotQ8Int8Go(q []int8, scale []float32, xq []int8, d []float32) float32 {
	var s float32
	for b, db := range d {
		var half [2]int32
		for e := range blockElems {
			half[e/q8Block] += int32(q[b*blockElems+e]) * int32(xq[b*blockElems+e])
		}
		s += (float32(half[0])*scale[2*b] + float32(half[1])*scale[2*b+1]) * db
	}
	return s
}
