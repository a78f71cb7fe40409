package ref

import "github.com/parrot-llm/parrot/kernels"

// BF16Element returns element i of the row-major flattening of m: the
// bfloat16 Data[i] widened to float32 (exact).
func BF16Element(m *kernels.BF16Matrix, i int) float32 {
	return kernels.BF16ToF32(m.Data[i])
}

// Q8Element returns element i of the row-major flattening of m:
// float32(Q[i]) * Scale[i/32], the product rounded to float32.
func Q8Element(m *kernels.Q8Matrix, i int) float32 {
	return float32(m.Q[i]) * m.Scale[i/kernels.Q8BlockSize]
}
