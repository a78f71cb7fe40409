package kernels

import (
	"fmt"
	"math"
)

// BF16Matrix is a weight kept in a bfloat16 checkpoint's own precision
// (bitsandbytes leaves embeddings and lm_head unquantized): element [r, c]
// is BF16ToF32(Data[r*Cols+c]). Half the bytes of an F32Matrix, and exact.
type BF16Matrix struct {
	Rows, Cols int
	Data       []uint16 // [Rows*Cols] bfloat16 bit patterns, row-major
}

func (m *BF16Matrix) Shape() (int, int) { return m.Rows, m.Cols }

// Validate checks that the buffer matches the shape.
func (m *BF16Matrix) Validate() error {
	if m.Rows <= 0 || m.Cols <= 0 {
		return fmt.Errorf("bf16: bad shape [%d,%d]", m.Rows, m.Cols)
	}
	if len(m.Data) != m.Rows*m.Cols {
		return fmt.Errorf("bf16: data has %d elements, want %d for [%d,%d]", len(m.Data), m.Rows*m.Cols, m.Rows, m.Cols)
	}
	return nil
}

// BF16ToF32 widens a bfloat16 bit pattern to the float32 it stands for
// (exactly: bfloat16 is the top half of a float32).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds f to the nearest bfloat16, ties to even, as PyTorch's
// .to(torch.bfloat16) does; NaN stays a (quiet) NaN of the same sign.
func F32ToBF16(f float32) uint16 {
	bits := math.Float32bits(f)
	if f != f {
		return uint16(bits>>16) | 0x40
	}
	bits += 0x7FFF + (bits>>16)&1
	return uint16(bits >> 16)
}

// Q8BlockSize is the number of consecutive elements of a row that share one
// Q8 scale. A Q8Matrix's Cols must be a multiple of it, so no block
// straddles two rows.
const Q8BlockSize = 32

// Q8Matrix is a symmetric 8-bit weight: element i of the row-major
// flattening of W is float32(Q[i]) * Scale[i/32], the product rounded to
// float32. Per block, Scale = absmax/127 and Q = round(x/Scale), so Q is in
// [-127, 127]. 1.125 bytes per element: a bit over half of BF16.
type Q8Matrix struct {
	Rows, Cols int       // Cols % Q8BlockSize == 0
	Q          []int8    // [Rows*Cols]
	Scale      []float32 // [Rows*Cols/32]
}

func (m *Q8Matrix) Shape() (int, int) { return m.Rows, m.Cols }

// Validate checks that the buffers match the shape.
func (m *Q8Matrix) Validate() error {
	if m.Rows <= 0 || m.Cols <= 0 {
		return fmt.Errorf("q8: bad shape [%d,%d]", m.Rows, m.Cols)
	}
	if m.Cols%Q8BlockSize != 0 {
		return fmt.Errorf("q8: %d columns is not a multiple of the block size %d", m.Cols, Q8BlockSize)
	}
	n := m.Rows * m.Cols
	if len(m.Q) != n {
		return fmt.Errorf("q8: q has %d elements, want %d for [%d,%d]", len(m.Q), n, m.Rows, m.Cols)
	}
	if len(m.Scale) != n/Q8BlockSize {
		return fmt.Errorf("q8: scale has %d blocks, want %d for [%d,%d]", len(m.Scale), n/Q8BlockSize, m.Rows, m.Cols)
	}
	return nil
}

// QuantizeQ8 quantizes a row-major float32 weight w [rows, cols] to Q8.
// cols must be a multiple of Q8BlockSize and every weight finite. Each
// element's dequantized value is within Scale/2 of it (up to float32
// rounding).
func QuantizeQ8(w []float32, rows, cols int) (*Q8Matrix, error) {
	m, err := newQ8(len(w), rows, cols)
	if err != nil {
		return nil, err
	}
	for b := range m.Scale {
		if err := m.quantizeBlock(b, (*[Q8BlockSize]float32)(w[b*Q8BlockSize:])); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// QuantizeQ8BF16 is QuantizeQ8 for a bfloat16 weight (bit patterns, as
// stored in a checkpoint).
func QuantizeQ8BF16(w []uint16, rows, cols int) (*Q8Matrix, error) {
	m, err := newQ8(len(w), rows, cols)
	if err != nil {
		return nil, err
	}
	var block [Q8BlockSize]float32
	for b := range m.Scale {
		for i, h := range w[b*Q8BlockSize : (b+1)*Q8BlockSize] {
			block[i] = BF16ToF32(h)
		}
		if err := m.quantizeBlock(b, &block); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func newQ8(have, rows, cols int) (*Q8Matrix, error) {
	if rows <= 0 || cols <= 0 {
		return nil, fmt.Errorf("q8: bad shape [%d,%d]", rows, cols)
	}
	if cols%Q8BlockSize != 0 {
		return nil, fmt.Errorf("q8: %d columns is not a multiple of the block size %d", cols, Q8BlockSize)
	}
	if have != rows*cols {
		return nil, fmt.Errorf("q8: weight has %d elements, want %d for [%d,%d]", have, rows*cols, rows, cols)
	}
	n := rows * cols
	return &Q8Matrix{Rows: rows, Cols: cols, Q: make([]int8, n), Scale: make([]float32, n/Q8BlockSize)}, nil
}

// quantizeBlock fills block b of m from x: scale = absmax/127,
// q = round(x/scale) (half away from zero). An all-zero block gets scale 0.
func (m *Q8Matrix) quantizeBlock(b int, x *[Q8BlockSize]float32) error {
	var absmax float32
	finite := true
	for _, v := range x {
		bits := math.Float32bits(v)
		finite = finite && bits&0x7F800000 != 0x7F800000 // exponent all ones: Inf or NaN
		if a := math.Float32frombits(bits &^ (1 << 31)); a > absmax {
			absmax = a
		}
	}
	if !finite {
		for i, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				e := b*Q8BlockSize + i
				return fmt.Errorf("q8: weight [%d,%d] is %v", e/m.Cols, e%m.Cols, v)
			}
		}
	}
	scale := absmax / 127
	m.Scale[b] = scale
	q := (*[Q8BlockSize]int8)(m.Q[b*Q8BlockSize:])
	if scale == 0 {
		*q = [Q8BlockSize]int8{}
		return nil
	}
	for i, v := range x {
		// Half away from zero: |v/scale| < 2²⁸, so adding ±0.5 in float64
		// is exact and the conversion truncates.
		r := float64(v / scale)
		if r < 0 {
			r -= 0.5
		} else {
			r += 0.5
		}
		// |v/scale| <= 127 up to rounding; the clamp guards blocks whose
		// scale is subnormal and so rounded further.
		q[i] = int8(max(-127, min(127, int32(r))))
	}
	return nil
}
