package testmodel

import (
	"io"
	"testing"
)

// BenchmarkStreamBF16 generates and encodes a 16M-element tensor (a
// Llama-3.2-1B gate_proj) as bfloat16, discarding the bytes.
func BenchmarkStreamBF16(b *testing.B) {
	s := tensorSpec{name: "model.layers.0.mlp.gate_proj.weight", shape: []int{8192, 2048}}
	b.SetBytes(int64(2 * s.numel()))
	for i := 0; i < b.N; i++ {
		if err := streamFloats(io.Discard, 1, s, 2); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGenerateLlama32_1B writes the full Llama-3.2-1B-shaped model
// (2.5 GB in bfloat16, ~1 GB quantized) to a temporary directory.
func BenchmarkGenerateLlama32_1B(b *testing.B) {
	for _, q := range []bool{false, true} {
		name := map[bool]string{false: "bf16", true: "nf4"}[q]
		b.Run(name, func(b *testing.B) {
			o := Llama32_1B()
			o.Quantize = q
			for i := 0; i < b.N; i++ {
				if err := Generate(b.TempDir(), o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
