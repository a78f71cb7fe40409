package quant

import "testing"

// BenchmarkQuantizeNF4 quantizes a 2048x2048 weight (a Llama-3.2-1B q_proj).
func BenchmarkQuantizeNF4(b *testing.B) {
	w := inputs(2048*2048, 1, 0.02)
	b.SetBytes(int64(4 * len(w)))
	for i := 0; i < b.N; i++ {
		if _, err := QuantizeNF4(w, 2048, 2048); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDoubleQuantize(b *testing.B) {
	absmax := inputs(262144, 2, 0.05)
	for i := 0; i < b.N; i++ {
		DoubleQuantize(absmax)
	}
}
