package ref

import "github.com/parrot-llm/parrot/kernels"

var _ kernels.LoRABackend = Backend{}

// LoRAShrink: z[t,:] = A[slot] · x[t,:] for tokens with a slot.
func (Backend) LoRAShrink(zb, xb kernels.Buf, s *kernels.LoRAStack, slotsb kernels.IntBuf) {
	z, x, A, slots := f("LoRAShrink", zb), f("LoRAShrink", xb), f("LoRAShrink", s.A), ints("LoRAShrink", slotsb)
	for t, slot := range slots {
		if slot < 0 {
			continue
		}
		for r := range s.MaxRank {
			a := A[(int(slot)*s.MaxRank+r)*s.In:][:s.In]
			var sum float32
			for i, v := range a {
				sum += v * x[t*s.In+i]
			}
			z[t*s.MaxRank+r] = sum
		}
	}
}

// LoRAExpand: y[t,:] += B[slot] · z[t,:] for tokens with a slot.
func (Backend) LoRAExpand(yb, zb kernels.Buf, s *kernels.LoRAStack, slotsb kernels.IntBuf) {
	y, z, B, slots := f("LoRAExpand", yb), f("LoRAExpand", zb), f("LoRAExpand", s.B), ints("LoRAExpand", slotsb)
	for t, slot := range slots {
		if slot < 0 {
			continue
		}
		for o := range s.Out {
			b := B[(int(slot)*s.Out+o)*s.MaxRank:][:s.MaxRank]
			var sum float32
			for r, v := range b {
				sum += v * z[t*s.MaxRank+r]
			}
			y[t*s.Out+o] += sum
		}
	}
}
