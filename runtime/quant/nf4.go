package quant

import (
	"fmt"
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

// QuantizeNF4 quantizes W [rows, cols] (row-major, PyTorch out × in) to NF4
// as bitsandbytes' default backend does (backends/default/ops.py
// quantize_4bit): per block of 64 consecutive elements of the row-major
// flattening, absmax = max|x| and code = the nearest NF4 entry to
// clamp(x/absmax, -1, 1), found by torch.bucketize against the float32
// midpoints of the sorted table (a value exactly on a midpoint takes the
// lower code). Element 2j is the high nibble of Packed[j]; an odd last
// element is paired with the code of 0. An all-zero block gets absmax 0 and
// the code of 0 (the reference script stores 1e-38 for an all-zero partial
// last block; both dequantize to 0).
//
// Absmax holds the exact first-level float32 scales; see DoubleQuantize for
// the 8-bit form a checkpoint stores.
func QuantizeNF4(w []float32, rows, cols int) (*kernels.NF4Matrix, error) {
	if rows <= 0 || cols <= 0 || len(w) != rows*cols {
		return nil, fmt.Errorf("quant: %d values for a [%d,%d] weight", len(w), rows, cols)
	}
	const bs = kernels.NF4BlockSize
	n := len(w)
	m := &kernels.NF4Matrix{
		Rows: rows, Cols: cols,
		Packed: make([]byte, (n+1)/2),
		Absmax: make([]float32, (n+bs-1)/bs),
		Code:   kernels.NF4Code,
	}
	bounds := [16]float32{15: float32(math.Inf(1))} // the NF4 table is sorted
	copy(bounds[:], midpoints(m.Code[:]))
	parallelBlocks(len(m.Absmax), bs, func(lo, hi int) {
		var scaled [bs]float32
		var q [bs]uint8
		for b := lo; b < hi; b++ {
			start, end := b*bs, min((b+1)*bs, n)
			k := end - start
			m.Absmax[b] = scaleBlock(scaled[:k], w[start:end], k < bs)
			for i := 0; i < k; i++ {
				q[i] = nf4Bucket(scaled[i], &bounds)
			}
			if k%2 == 1 { // only the last block can be odd
				q[k] = nf4Bucket(0, &bounds)
				k++
			}
			for i := 0; i < k; i += 2 {
				m.Packed[(start+i)/2] = q[i]<<4 | q[i+1]
			}
		}
	})
	return m, nil
}

// DequantizeNF4 expands m to float32: W[i] = Code[nibble_i] * Absmax[i/64],
// one float32 multiply per element (bitsandbytes then casts the result to
// the checkpoint's dtype). Out [Rows*Cols].
func DequantizeNF4(m *kernels.NF4Matrix) ([]float32, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	out := make([]float32, m.Rows*m.Cols)
	for i := range out {
		b := m.Packed[i/2]
		nib := b >> 4
		if i%2 == 1 {
			nib = b & 0x0F
		}
		out[i] = m.Code[nib] * m.Absmax[i/kernels.NF4BlockSize]
	}
	return out, nil
}

// nf4Bucket is bucketize over the 15 NF4 midpoints (b[15] = +Inf pads the
// table to 16) as a 4-step binary search without branches: the number of
// midpoints strictly below x. Branches would be mispredicted on every other
// element of a random weight.
func nf4Bucket(x float32, b *[16]float32) uint8 {
	i := b2i(b[7] < x) << 3
	i += b2i(b[(i+3)&15] < x) << 2
	i += b2i(b[(i+1)&15] < x) << 1
	i += b2i(b[i&15] < x)
	return uint8(i)
}

func b2i(c bool) int {
	if c {
		return 1
	}
	return 0
}
