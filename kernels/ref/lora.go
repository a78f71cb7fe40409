package ref

import "github.com/parrot-llm/parrot/kernels"

// LoRAShrink: z[t,:] = A[slot] · x[t,:] for tokens with a slot.
func (Backend) LoRAShrink(z, x []float32, s *kernels.LoRAStack, slots []int32) {
	for t, slot := range slots {
		if slot < 0 {
			continue
		}
		for r := range s.MaxRank {
			a := s.A[(int(slot)*s.MaxRank+r)*s.In:][:s.In]
			var sum float32
			for i, v := range a {
				sum += v * x[t*s.In+i]
			}
			z[t*s.MaxRank+r] = sum
		}
	}
}

// LoRAExpand: y[t,:] += B[slot] · z[t,:] for tokens with a slot.
func (Backend) LoRAExpand(y, z []float32, s *kernels.LoRAStack, slots []int32) {
	for t, slot := range slots {
		if slot < 0 {
			continue
		}
		for o := range s.Out {
			b := s.B[(int(slot)*s.Out+o)*s.MaxRank:][:s.MaxRank]
			var sum float32
			for r, v := range b {
				sum += v * z[t*s.MaxRank+r]
			}
			y[t*s.Out+o] += sum
		}
	}
}
