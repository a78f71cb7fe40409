package cpu

import "github.com/parrot-llm/parrot/kernels"

var _ kernels.LoRABackend = (*Backend)(nil)

// loraShrinkJob computes z[t,r] = A[slot_t][r,:]·x[t,:]; items are (token, rank) pairs.
type loraShrinkJob struct {
	z, x  []float32
	s     *kernels.LoRAStack
	slots []int32
	simd  bool
}

func (j *loraShrinkJob) run(_, lo, hi int) {
	s := j.s
	for item := lo; item < hi; item++ {
		t, r := item/s.MaxRank, item%s.MaxRank
		slot := j.slots[t]
		if slot < 0 {
			continue
		}
		a := s.A[(int(slot)*s.MaxRank+r)*s.In:][:s.In]
		j.z[t*s.MaxRank+r] = dot(a, j.x[t*s.In:][:s.In], j.simd)
	}
}

// loraExpandJob adds B[slot_t]·z[t,:] to y[t,:]; items are output rows, so
// each B row is read once for all tokens of its slot.
type loraExpandJob struct {
	y, z  []float32
	s     *kernels.LoRAStack
	slots []int32
	simd  bool
}

func (j *loraExpandJob) run(_, lo, hi int) {
	s := j.s
	for t, slot := range j.slots {
		if slot < 0 {
			continue
		}
		z := j.z[t*s.MaxRank:][:s.MaxRank]
		y := j.y[t*s.Out:]
		for o := lo; o < hi; o++ {
			y[o] += dot(s.B[(int(slot)*s.Out+o)*s.MaxRank:][:s.MaxRank], z, j.simd)
		}
	}
}

// LoRAShrink: z[t,:] = A[slots[t]] · x[t,:] for tokens with slots[t] >= 0.
func (b *Backend) LoRAShrink(z, x []float32, s *kernels.LoRAStack, slots []int32) {
	T := len(slots)
	need("LoRAShrink", "x", len(x), T*s.In)
	need("LoRAShrink", "z", len(z), T*s.MaxRank)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pool.parallel(&loraShrinkJob{z: z, x: x, s: s, slots: slots, simd: b.simd}, T*s.MaxRank, max(1, 16384/max(1, s.In)))
}

// LoRAExpand: y[t,:] += B[slots[t]] · z[t,:] for tokens with slots[t] >= 0.
func (b *Backend) LoRAExpand(y, z []float32, s *kernels.LoRAStack, slots []int32) {
	T := len(slots)
	need("LoRAExpand", "y", len(y), T*s.Out)
	need("LoRAExpand", "z", len(z), T*s.MaxRank)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pool.parallel(&loraExpandJob{y: y, z: z, s: s, slots: slots, simd: b.simd}, s.Out, max(1, 16384/max(1, T*s.MaxRank)))
}
