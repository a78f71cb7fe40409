package train

import (
	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// Projection indices within a layer, in PEFT target-module order
// (llama.Layer.Projections).
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
//
// The ops work on the backend's copies (da, db, dga, dgb). The optimizer
// runs on the host, on a and b, with the gradients read back into ga and gb
// once per step; writeParams copies a and b to the backend after every
// change. A device backend would add an optimizer op there instead, and keep
// the parameters, gradients and states on the device.
type module struct {
	name          string // e.g. "model.layers.0.self_attn.q_proj"
	id            uint64 // layer*numProj + projection, keys the dropout masks
	lin           *llama.Linear
	in, out, rank int
	a, b          []float32   // [rank, in], [out, rank]: the optimizer's (host) copy
	ga, gb        []float32   // gradients, same shapes, as read back from the backend
	da, db        kernels.Buf // the parameters in backend memory
	dga, dgb      kernels.Buf // the gradients in backend memory, accumulated by LoRABackward
	sa, sb        paramState
}

// loraActs are what one module's backward needs from its forward.
type loraActs struct {
	z  slab // [N, rank] A·x
	xd slab // [N, in] the dropped-out input (only with dropout)
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
//
// The dropout masks are drawn on the host (their stream is the trainer's),
// so the masked input is computed there: the input is read back, masked and
// written to la.xd. A device backend would add a dropout op here.
func (t *Trainer) linearForward(m *module, lin *llama.Linear, y, x kernels.Buf, N, micro int, la *loraActs, train bool) {
	be := t.be
	be.MatMul(y.Slice(0, N*lin.Out), x.Slice(0, N*lin.In), lin.W, N)
	if m == nil {
		return
	}
	xin := x.Slice(0, N*m.in)
	if train && t.opts.Dropout > 0 {
		s := &t.buf
		s.hostIn = growHost(s.hostIn, N*m.in)
		s.hostMask = growHost(s.hostMask, N*m.in)
		be.Read(s.hostIn, xin)
		t.dropoutMask(s.hostMask, micro, m)
		for i, v := range s.hostIn {
			s.hostMask[i] *= v
		}
		xin = t.grow(&la.xd, N*m.in)
		be.Write(xin, s.hostMask)
	}
	be.LoRAForward(y, t.grow(&la.z, N*m.rank), xin, m.da, m.db, N, m.in, m.out, m.rank, t.scale)
}

// linearBackward writes (or, with accumulate, adds) the input gradient of a
// projection, dx = Wᵀ·dy (+ the LoRA path's), and accumulates the LoRA
// gradients. x is the forward's input; dy [N, out], dx [N, in].
func (t *Trainer) linearBackward(m *module, lin *llama.Linear, dx, dy, x kernels.Buf, N, micro int, la *loraActs, accumulate bool) {
	be, s := t.be, &t.buf
	dx, dy = dx.Slice(0, N*lin.In), dy.Slice(0, N*lin.Out)
	if accumulate {
		tmp := t.grow(&s.tmpIn, N*lin.In)
		be.MatMulT(tmp, dy, lin.W, N)
		be.Add(dx, tmp)
	} else {
		be.MatMulT(dx, dy, lin.W, N)
	}
	if m == nil {
		return
	}
	z := la.z.cur
	if t.opts.Dropout == 0 {
		be.LoRABackward(m.dga, m.dgb, dx, x.Slice(0, N*m.in), z, dy, m.da, m.db, N, m.in, m.out, m.rank, t.scale)
		return
	}
	// Through the dropout: the LoRA path's input gradient times the mask
	// (regenerated on the host, as in linearForward), added to dx.
	tmp := t.grow(&s.tmpIn, N*m.in)
	t.zero(tmp)
	be.LoRABackward(m.dga, m.dgb, tmp, la.xd.cur, z, dy, m.da, m.db, N, m.in, m.out, m.rank, t.scale)
	s.hostIn = growHost(s.hostIn, N*m.in)
	s.hostMask = growHost(s.hostMask, N*m.in)
	be.Read(s.hostIn, tmp)
	t.dropoutMask(s.hostMask, micro, m)
	for i, g := range s.hostIn {
		s.hostIn[i] = g * s.hostMask[i]
	}
	be.Write(tmp, s.hostIn)
	be.Add(dx, tmp)
}

// matrixBytes is the memory of a frozen weight (as float32 for a kind
// kernels.MatrixBytes cannot size).
func matrixBytes(w kernels.Matrix) int64 {
	if n, ok := kernels.MatrixBytes(w); ok {
		return n
	}
	rows, cols := w.Shape()
	return 4 * int64(rows) * int64(cols)
}
