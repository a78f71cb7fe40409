package cpu

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// LoRA shrink and expand (punica's bgmv, grouped like vLLM's sgmv): the
// batch's tokens are grouped by slot first, so each slot's A row and B
// columns are read from memory once for all the tokens that use it, and a
// batch of one adapter costs little more than one token. Slots are bfloat16
// by default (kernels.LoRAStack.BF16; SetLoRAFloat32 keeps float32): with
// 8 different adapters in a decode batch, their slots are a third of the
// bytes the step reads in float32 (361 MB against ~700 MB of NF4 weights on
// the 1B shape), a sixth in bfloat16.

var (
	_ kernels.LoRABackend = (*Backend)(nil)
	_ kernels.LoRAStorage = (*Backend)(nil)
)

// loraChunk is the number of outputs an expand work item covers: 16 rank
// rows × 2 KiB of bfloat16, long enough runs for the prefetchers. Fixed, so
// that which outputs share a chunk never depends on the batch.
const loraChunk = 1024

// loraGroup is the tokens of a batch that use one slot, in batch order.
type loraGroup struct {
	slot   int32
	tokens []int32
}

// SetLoRAFloat32 chooses the storage of LoRA stacks allocated from now on:
// float32 (exactly the adapter's values) or, by default, bfloat16 (rounded
// to nearest, as vLLM holds adapters in a bf16 model's dtype).
func (b *Backend) SetLoRAFloat32(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.loraF32 = on
}

// LoRAInBF16 implements kernels.LoRAStorage.
func (b *Backend) LoRAInBF16() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.loraF32
}

// groupBySlot groups the tokens with a slot (>= 0) by slot, in order of
// first appearance, reusing the backend's group space.
func (b *Backend) groupBySlot(slots []int32) []loraGroup {
	gs := b.loraGroups[:0]
	for t, slot := range slots {
		if slot < 0 {
			continue
		}
		i := 0
		for i < len(gs) && gs[i].slot != slot {
			i++
		}
		if i == len(gs) {
			if i < cap(gs) {
				gs = gs[:i+1]
				gs[i] = loraGroup{slot: slot, tokens: gs[i].tokens[:0]}
			} else {
				gs = append(gs, loraGroup{slot: slot})
			}
		}
		gs[i].tokens = append(gs[i].tokens, int32(t))
	}
	b.loraGroups = gs
	return gs
}

// loraShrinkJob computes z[t,r] = A[slot][r,:]·x[t,:]; items are
// (group, rank) pairs, so each A row is read once for its group's tokens.
type loraShrinkJob struct {
	z, x   []float32 // z [T, MaxRank], x [T, In]
	s      *kernels.LoRAStack
	groups []loraGroup
	simd   bool
}

func (j *loraShrinkJob) run(_, lo, hi int) {
	s, a := j.s, j.s.A.Host() // a: float32 storage
	for item := lo; item < hi; item++ {
		g, r := &j.groups[item/s.MaxRank], item%s.MaxRank
		row := (int(g.slot)*s.MaxRank + r) * s.In
		for _, t := range g.tokens {
			x := j.x[int(t)*s.In:][:s.In]
			var v float32
			if s.BF16 {
				v = dotBF16(s.A16[row:][:s.In], x, j.simd)
			} else {
				v = dot(a[row:][:s.In], x, j.simd)
			}
			j.z[int(t)*s.MaxRank+r] = v
		}
	}
}

// loraExpandJob adds B[slot]·z[t,:] to y[t,:]; items are (group, chunk
// of loraChunk outputs) pairs, which write disjoint parts of y. In bfloat16 each token adds the rows of the
// transposed BT16 in, one rank after another (axpyRowsBF16): y[t,o] +=
// z[t,r]·B[o,r] for r = 0, 1, ... in turn.
type loraExpandJob struct {
	y, z   []float32 // y [T, Out], z [T, MaxRank]
	s      *kernels.LoRAStack
	groups []loraGroup
	simd   bool
}

func (j *loraExpandJob) run(_, lo, hi int) {
	s, b := j.s, j.s.B.Host() // b: float32 storage
	chunks := (s.Out + loraChunk - 1) / loraChunk
	for item := lo; item < hi; item++ {
		g, c := &j.groups[item/chunks], item%chunks
		o0, o1 := c*loraChunk, min((c+1)*loraChunk, s.Out)
		if !s.BF16 {
			for _, t := range g.tokens {
				z := j.z[int(t)*s.MaxRank:][:s.MaxRank]
				y := j.y[int(t)*s.Out:]
				for o := o0; o < o1; o++ {
					y[o] += dot(b[(int(g.slot)*s.Out+o)*s.MaxRank:][:s.MaxRank], z, j.simd)
				}
			}
			continue
		}
		bt := s.BT16[int(g.slot)*s.MaxRank*s.Out:]
		for _, t := range g.tokens {
			axpyRowsBF16(j.y[int(t)*s.Out+o0:][:o1-o0], j.z[int(t)*s.MaxRank:][:s.MaxRank], bt[o0:], s.Out, j.simd)
		}
	}
}

// LoRAShrink: z[t,:] = A[slots[t]] · x[t,:] for tokens with slots[t] >= 0.
func (b *Backend) LoRAShrink(zb, xb kernels.Buf, s *kernels.LoRAStack, slotsb kernels.IntBuf) {
	const op = "LoRAShrink"
	z, x, slots := host(op, zb), host(op, xb), hostInts(op, slotsb)
	T := len(slots)
	need(op, "x", len(x), T*s.In)
	need(op, "z", len(z), T*s.MaxRank)
	checkStack(op, s)
	checkSlots(op, slots, s)
	b.mu.Lock()
	defer b.mu.Unlock()
	groups := b.groupBySlot(slots)
	b.loraShrink = loraShrinkJob{z: z, x: x, s: s, groups: groups, simd: b.simd}
	// Items of ~256 KiB of A (long runs for the prefetchers), but at least
	// two per worker.
	rows := len(groups) * s.MaxRank
	grain := max(1, min((256<<10)/(2*s.In), (rows+2*b.threads-1)/(2*b.threads)))
	b.pool.parallel(&b.loraShrink, rows, grain)
	b.loraShrink = loraShrinkJob{}
}

// LoRAExpand: y[t,:] += B[slots[t]] · z[t,:] for tokens with slots[t] >= 0.
func (b *Backend) LoRAExpand(yb, zb kernels.Buf, s *kernels.LoRAStack, slotsb kernels.IntBuf) {
	const op = "LoRAExpand"
	y, z, slots := host(op, yb), host(op, zb), hostInts(op, slotsb)
	T := len(slots)
	need(op, "y", len(y), T*s.Out)
	need(op, "z", len(z), T*s.MaxRank)
	checkStack(op, s)
	checkSlots(op, slots, s)
	b.mu.Lock()
	defer b.mu.Unlock()
	groups := b.groupBySlot(slots)
	b.loraExpand = loraExpandJob{y: y, z: z, s: s, groups: groups, simd: b.simd}
	b.pool.parallel(&b.loraExpand, len(groups)*((s.Out+loraChunk-1)/loraChunk), 1)
	b.loraExpand = loraExpandJob{}
}

// checkStack panics on a stack whose storage does not hold its shape.
func checkStack(op string, s *kernels.LoRAStack) {
	if s.BF16 {
		need(op, "A16", len(s.A16), s.Slots*s.MaxRank*s.In)
		need(op, "BT16", len(s.BT16), s.Slots*s.MaxRank*s.Out)
		return
	}
	need(op, "A", len(host(op, s.A)), s.Slots*s.MaxRank*s.In)
	need(op, "B", len(host(op, s.B)), s.Slots*s.Out*s.MaxRank)
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
