package cpu

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

var _ kernels.LoRABackend = (*Backend)(nil)

// loraShrinkJob computes z[t,r] = A[slot_t][r,:]·x[t,:]; items are (token, rank) pairs.
type loraShrinkJob struct {
	z, x  []float32
	a     []float32 // s.A
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
		a := j.a[(int(slot)*s.MaxRank+r)*s.In:][:s.In]
		j.z[t*s.MaxRank+r] = dot(a, j.x[t*s.In:][:s.In], j.simd)
	}
}

// loraExpandJob adds B[slot_t]·z[t,:] to y[t,:]; items are output rows, so
// each B row is read once for all tokens of its slot.
type loraExpandJob struct {
	y, z  []float32
	b     []float32 // s.B
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
			y[o] += dot(j.b[(int(slot)*s.Out+o)*s.MaxRank:][:s.MaxRank], z, j.simd)
		}
	}
}

// LoRAShrink: z[t,:] = A[slots[t]] · x[t,:] for tokens with slots[t] >= 0.
func (b *Backend) LoRAShrink(zb, xb kernels.Buf, s *kernels.LoRAStack, slotsb kernels.IntBuf) {
	const op = "LoRAShrink"
	z, x, a, slots := host(op, zb), host(op, xb), host(op, s.A), hostInts(op, slotsb)
	T := len(slots)
	need(op, "x", len(x), T*s.In)
	need(op, "z", len(z), T*s.MaxRank)
	checkSlots(op, slots, s)
	need(op, "A", len(a), s.Slots*s.MaxRank*s.In)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pool.parallel(&loraShrinkJob{z: z, x: x, a: a, s: s, slots: slots, simd: b.simd}, T*s.MaxRank, max(1, 16384/max(1, s.In)))
}

// LoRAExpand: y[t,:] += B[slots[t]] · z[t,:] for tokens with slots[t] >= 0.
func (b *Backend) LoRAExpand(yb, zb kernels.Buf, s *kernels.LoRAStack, slotsb kernels.IntBuf) {
	const op = "LoRAExpand"
	y, z, bm, slots := host(op, yb), host(op, zb), host(op, s.B), hostInts(op, slotsb)
	T := len(slots)
	need(op, "y", len(y), T*s.Out)
	need(op, "z", len(z), T*s.MaxRank)
	checkSlots(op, slots, s)
	need(op, "B", len(bm), s.Slots*s.Out*s.MaxRank)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pool.parallel(&loraExpandJob{y: y, z: z, b: bm, s: s, slots: slots, simd: b.simd}, s.Out, max(1, 16384/max(1, T*s.MaxRank)))
}

// checkSlots panics on a slot the stack does not have (a negative slot is
// the base model).
func checkSlots(op string, slots []int32, s *kernels.LoRAStack) {
	for _, slot := range slots {
		if int(slot) >= s.Slots {
			panic(fmt.Sprintf("kernels/cpu: %s: slot %d of a stack of %d", op, slot, s.Slots))
		}
	}
}
