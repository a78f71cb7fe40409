package train

import (
	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime"
)

// Projection indices within a layer, in PEFT target-module order
// (runtime.Layer.Projections).
const (
	projQ = iota
	projK
	projV
	projO
	projGate
	projUp
	projDown
	numProj
)

// module is the trainable LoRA pair of one projection, float32, in PEFT
// layout, with its gradients and optimizer states.
type module struct {
	name          string // e.g. "model.layers.0.self_attn.q_proj"
	id            uint64 // layer*numProj + projection, keys the dropout masks
	lin           *runtime.Linear
	in, out, rank int
	a, b          []float32 // [rank, in], [out, rank]
	ga, gb        []float32 // gradients, same shapes
	sa, sb        paramState
}

// loraActs are what one module's backward needs from its forward.
type loraActs struct {
	z  []float32 // [N, rank] A·x
	xd []float32 // [N, in] the dropped-out input (only with dropout)
}

// keepProb is the probability that dropout keeps an element.
func (t *Trainer) keepProb() float64 { return 1 - t.opts.Dropout }

// dropoutMask writes the mask·1/(1−p) of one module's input in one
// micro-batch of one step: mask[i] = 1/(1−p) with probability 1−p, else 0
// (torch's inverted dropout). The stream is keyed by (Seed, step,
// micro-batch, module), so a recomputation draws the same mask.
func (t *Trainer) dropoutMask(mask []float32, micro int, m *module) {
	s := splitmix{state: streamSeed(t.opts.Seed, 1, uint64(t.step), uint64(micro), m.id)}
	p := t.opts.Dropout
	keep := float32(1 / (1 - p))
	for i := range mask {
		if s.float64() < p {
			mask[i] = 0
		} else {
			mask[i] = keep
		}
	}
}

// linearForward computes y = W·x (+ scale·B·A·dropout(x) for a trained
// projection), saving the LoRA activations in la. x [N, in], y [N, out].
func (t *Trainer) linearForward(m *module, lin *runtime.Linear, y, x []float32, N, micro int, la *loraActs, train bool) {
	be := t.be
	be.MatMul(y[:N*lin.Out], x[:N*lin.In], lin.W, N)
	if m == nil {
		return
	}
	xin := x[:N*m.in]
	if train && t.opts.Dropout > 0 {
		la.xd = grow(la.xd, N*m.in)
		t.dropoutMask(la.xd, micro, m)
		for i, v := range xin {
			la.xd[i] *= v
		}
		xin = la.xd
	}
	la.z = grow(la.z, N*m.rank)
	be.LoRAForward(y, la.z, xin, m.a, m.b, N, m.in, m.out, m.rank, t.scale)
}

// linearBackward writes (or, with accumulate, adds) the input gradient of a
// projection, dx = Wᵀ·dy (+ the LoRA path's), and accumulates the LoRA
// gradients. x is the forward's input; dy [N, out], dx [N, in].
func (t *Trainer) linearBackward(m *module, lin *runtime.Linear, dx, dy, x []float32, N, micro int, la *loraActs, accumulate bool) {
	be, s := t.be, &t.buf
	dx, dy = dx[:N*lin.In], dy[:N*lin.Out]
	if accumulate {
		s.tmpIn = grow(s.tmpIn, N*lin.In)
		be.MatMulT(s.tmpIn, dy, lin.W, N)
		be.Add(dx, s.tmpIn)
	} else {
		be.MatMulT(dx, dy, lin.W, N)
	}
	if m == nil {
		return
	}
	if t.opts.Dropout == 0 {
		be.LoRABackward(m.ga, m.gb, dx, x[:N*m.in], la.z, dy, m.a, m.b, N, m.in, m.out, m.rank, t.scale)
		return
	}
	// Through the dropout: the LoRA path's input gradient times the mask.
	s.tmpIn = grow(s.tmpIn, N*m.in)
	clear(s.tmpIn)
	be.LoRABackward(m.ga, m.gb, s.tmpIn, la.xd, la.z, dy, m.a, m.b, N, m.in, m.out, m.rank, t.scale)
	s.mask = grow(s.mask, N*m.in)
	t.dropoutMask(s.mask, micro, m)
	for i, g := range s.tmpIn {
		dx[i] += g * s.mask[i]
	}
}

func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// matrixBytes is the memory of a frozen weight.
func matrixBytes(w kernels.Matrix) int64 {
	switch m := w.(type) {
	case *kernels.F32Matrix:
		return 4 * int64(len(m.Data))
	case *kernels.NF4Matrix:
		return int64(len(m.Packed)) + 4*int64(len(m.Absmax))
	case *kernels.BF16Matrix:
		return 2 * int64(len(m.Data))
	case *kernels.Q8Matrix:
		return int64(len(m.Q)) + 4*int64(len(m.Scale))
	}
	rows, cols := w.Shape()
	return 4 * int64(rows) * int64(cols)
}
