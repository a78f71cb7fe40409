package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/ref"
)

func randSlice(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	return v
}

// Shrink and expand against the reference, for batches that mix the base
// model (slot -1) with several adapters, odd sizes included.
func TestLoRAMatchesRef(t *testing.T) {
	be := New(2)
	defer be.Close()
	rb := ref.New().(kernels.LoRABackend)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ slots, rank, in, out, T int }{
		{1, 1, 1, 1, 1}, {2, 4, 7, 5, 3}, {4, 16, 64, 172, 7}, {3, 8, 130, 33, 16},
	} {
		t.Run(fmt.Sprintf("%+v", tc), func(t *testing.T) {
			s := kernels.NewLoRAStack(tc.slots, tc.rank, tc.in, tc.out)
			s.A, s.B = randSlice(rng, len(s.A)), randSlice(rng, len(s.B))
			slots := make([]int32, tc.T)
			for i := range slots {
				slots[i] = int32(rng.IntN(tc.slots+1)) - 1
			}
			x := randSlice(rng, tc.T*tc.in)
			zWant, zGot := make([]float32, tc.T*tc.rank), make([]float32, tc.T*tc.rank)
			rb.LoRAShrink(zWant, x, s, slots)
			be.LoRAShrink(zGot, x, s, slots)
			y0 := randSlice(rng, tc.T*tc.out)
			yWant, yGot := append([]float32(nil), y0...), append([]float32(nil), y0...)
			rb.LoRAExpand(yWant, zWant, s, slots)
			be.LoRAExpand(yGot, zWant, s, slots)
			for i := range zWant {
				if math.Abs(float64(zWant[i]-zGot[i])) > 1e-4 {
					t.Fatalf("shrink z[%d] = %g, want %g", i, zGot[i], zWant[i])
				}
			}
			for i := range yWant {
				if math.Abs(float64(yWant[i]-yGot[i])) > 1e-4 {
					t.Fatalf("expand y[%d] = %g, want %g", i, yGot[i], yWant[i])
				}
				if slots[i/tc.out] < 0 && yGot[i] != y0[i] {
					t.Fatalf("base token row %d changed", i/tc.out)
				}
			}
		})
	}
}
