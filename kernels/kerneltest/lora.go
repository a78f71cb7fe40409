package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

// RunLoRA checks LoRAShrink and LoRAExpand against ref, for batches that
// mix the base model (slot -1) with several adapters, odd sizes included,
// the stack allocated with kernels.NewLoRAStack in b's memory (in the
// storage b chooses: ref computes with the values the stack holds, bfloat16
// ones exactly rounded from the float32 written). It skips a backend that
// does not implement kernels.LoRABackend.
func RunLoRA(t *testing.T, b kernels.Backend) {
	lb, ok := b.(kernels.LoRABackend)
	if !ok {
		t.Skipf("backend %s does not implement kernels.LoRABackend", b.Name())
	}
	rng := rand.New(rand.NewPCG(3, 4))
	m := newMem(t, b)
	for _, tc := range []struct {
		slots, rank, in, out, T int
		mix                     string // "random", "base" (every token -1), "one" (every token slot 0)
	}{
		{1, 1, 1, 1, 1, "random"}, {2, 4, 7, 5, 3, "random"}, {4, 16, 64, 172, 7, "random"}, {3, 8, 130, 33, 16, "random"},
		{3, 8, 40, 24, 5, "base"}, {2, 4, 33, 17, 6, "one"},
		{3, 16, 300, 600, 24, "random"}, {1, 16, 520, 1030, 9, "one"}, // slot groups; several output chunks, a short last one
	} {
		what := fmt.Sprintf("%+v", tc)
		s, err := kernels.NewLoRAStack(b, tc.slots, tc.rank, tc.in, tc.out)
		if err != nil {
			t.Fatalf("%s: NewLoRAStack: %v", what, err)
		}
		A, B := uniform(rng, tc.slots*tc.rank*tc.in), uniform(rng, tc.slots*tc.out*tc.rank)
		for i := range tc.slots {
			s.WriteSlot(b, i, A[i*tc.rank*tc.in:(i+1)*tc.rank*tc.in], B[i*tc.out*tc.rank:(i+1)*tc.out*tc.rank])
		}
		if s.BF16 {
			roundBF16(A)
			roundBF16(B)
		}
		for i := range tc.slots { // the stack holds what was written (rounded)
			a, bv := s.ReadSlot(b, i)
			if !slices.Equal(a, A[i*tc.rank*tc.in:(i+1)*tc.rank*tc.in]) || !slices.Equal(bv, B[i*tc.out*tc.rank:(i+1)*tc.out*tc.rank]) {
				t.Fatalf("%s: slot %d reads back other values than were written", what, i)
			}
		}
		hs := &kernels.LoRAStack{Slots: s.Slots, MaxRank: s.MaxRank, In: s.In, Out: s.Out, A: hb(A), B: hb(B)}
		slots := make([]int32, tc.T)
		for i := range slots {
			switch tc.mix {
			case "random":
				slots[i] = int32(rng.IntN(tc.slots+1)) - 1
			case "base":
				slots[i] = -1
			}
		}
		if tc.mix == "random" && tc.T > 1 {
			slots[0], slots[1] = -1, int32(tc.slots-1) // both kinds, whatever the draw
		}
		x := uniform(rng, tc.T*tc.in)
		z0 := Vec(rng, tc.T*tc.rank) // stale values, kept in the rows of base tokens
		zWant := clone(z0)
		rb.LoRAShrink(hb(zWant), hb(x), hs, hi(slots))
		dslots := m.inInts(slots)
		zGot := m.outWith(z0, len(z0))
		lb.LoRAShrink(zGot.buf(), m.in(x), s, dslots)
		z := m.read(what+" shrink z", zGot)
		y0 := uniform(rng, tc.T*tc.out)
		yWant := clone(y0)
		rb.LoRAExpand(hb(yWant), hb(zWant), hs, hi(slots))
		yGot := m.outWith(y0, len(y0))
		lb.LoRAExpand(yGot.buf(), m.in(zWant), s, dslots)
		y := m.read(what+" expand y", yGot)
		for i := range zWant {
			if math.Abs(float64(zWant[i]-z[i])) > 1e-4 {
				t.Fatalf("%s: shrink z[%d] = %g, want %g", what, i, z[i], zWant[i])
			}
			if slots[i/tc.rank] < 0 && math.Float32bits(z[i]) != math.Float32bits(z0[i]) {
				t.Fatalf("%s: shrink changed row %d of a base token", what, i/tc.rank)
			}
		}
		for i := range yWant {
			if math.Abs(float64(yWant[i]-y[i])) > 1e-4 {
				t.Fatalf("%s: expand y[%d] = %g, want %g", what, i, y[i], yWant[i])
			}
			if slots[i/tc.out] < 0 && y[i] != y0[i] {
				t.Fatalf("%s: expand changed row %d of a base token", what, i/tc.out)
			}
		}
		s.Free(b)
		m.reset()
	}
}

// roundBF16 rounds v in place to bfloat16 (nearest, ties to even).
func roundBF16(v []float32) {
	for i, x := range v {
		v[i] = kernels.BF16ToF32(kernels.F32ToBF16(x))
	}
}

// uniform returns n floats uniform in [-1, 1).
func uniform(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	return v
}
