package train

import (
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// The Llama block's forward and backward passes for training, llm.c style:
// explicit per-part calls with the shapes in the comments. N = B·T tokens of
// a right-padded micro-batch, H = Hidden, Q = Heads·HeadDim, K = KVHeads·HeadDim,
// I = Intermediate. Every activation and gradient lives in the backend's
// memory; the host writes each micro-batch's token ids, positions and labels
// and reads back only the losses.

// batch is one micro-batch, right-padded to its longest example.
type batch struct {
	B, T    int
	tokens  []int32 // [N] inputs (padding: 0)
	pos     []int32 // [N] position within the sequence
	targets []int32 // [N] label of token n+1 of the same sequence (the shift), IgnoreIndex if none
	rows    []int32 // token indices with a target, ascending
}

// slab is a backend allocation reused from micro-batch to micro-batch and
// grown (reallocated) when one needs more; cur is the view of the current
// micro-batch's size.
type slab struct {
	mem, cur kernels.Buf
}

// intSlab is a slab of int32 values.
type intSlab struct {
	mem, cur kernels.IntBuf
}

// allocError carries a failed backend allocation out of the passes (ops
// cannot return errors) to forwardBackward, which returns it.
type allocError struct{ err error }

// grow returns the first n floats of s, reallocating it when it holds fewer.
func (t *Trainer) grow(s *slab, n int) kernels.Buf {
	if s.mem.Len() < n {
		if s.mem.Len() > 0 {
			t.be.Free(s.mem)
		}
		mem, err := t.be.Alloc(n)
		if err != nil {
			panic(allocError{fmt.Errorf("train: allocating %d floats: %w", n, err)})
		}
		s.mem = mem
	}
	s.cur = s.mem.Slice(0, n)
	return s.cur
}

// writeInts copies v into s (grown as needed) and returns the view.
func (t *Trainer) writeInts(s *intSlab, v []int32) kernels.IntBuf {
	if s.mem.Len() < len(v) {
		if s.mem.Len() > 0 {
			t.be.FreeInt(s.mem)
		}
		mem, err := t.be.AllocInt(len(v))
		if err != nil {
			panic(allocError{fmt.Errorf("train: allocating %d ints: %w", len(v), err)})
		}
		s.mem = mem
	}
	s.cur = s.mem.Slice(0, len(v))
	t.be.WriteInt(s.cur, v)
	return s.cur
}

// zero clears b (a Write of zeros: the backend has no fill op).
func (t *Trainer) zero(b kernels.Buf) {
	t.buf.zeros = growHost(t.buf.zeros, b.Len())
	t.be.Write(b, t.buf.zeros)
}

// growHost returns a host slice of n floats, reusing buf's storage; only
// zeros, which is never written, relies on new storage being zeroed.
func growHost(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// layerActs are one layer's saved activations.
type layerActs struct {
	xn1      slab // [N, H] input_layernorm(x)
	q        slab // [N, Q] after RoPE
	k, v     slab // [N, K] (k after RoPE)
	att      slab // [N, Q] attention output
	lse      slab // [N, Heads] log-sum-exp of each attention row
	x2       slab // [N, H] x + o_proj(att)
	xn2      slab // [N, H] post_attention_layernorm(x2)
	gate, up slab // [N, I] pre-activation
	h        slab // [N, I] silu(gate)·up
	lora     [numProj]loraActs
}

func (t *Trainer) allocActs(a *layerActs, N, H, Q, K, heads, I int) {
	t.grow(&a.xn1, N*H)
	t.grow(&a.x2, N*H)
	t.grow(&a.xn2, N*H)
	t.grow(&a.q, N*Q)
	t.grow(&a.att, N*Q)
	t.grow(&a.k, N*K)
	t.grow(&a.v, N*K)
	t.grow(&a.lse, N*heads)
	t.grow(&a.gate, N*I)
	t.grow(&a.up, N*I)
	t.grow(&a.h, N*I)
}

func (a *layerActs) floats() int64 {
	n := 0
	for _, s := range []*slab{&a.xn1, &a.q, &a.k, &a.v, &a.att, &a.lse, &a.x2, &a.xn2, &a.gate, &a.up, &a.h} {
		n += s.mem.Len()
	}
	for i := range a.lora {
		n += a.lora[i].z.mem.Len() + a.lora[i].xd.mem.Len()
	}
	return int64(n)
}

// buffers are the trainer's reusable scratch, in backend memory but for the
// host-side ones at the end.
type buffers struct {
	inputs []slab      // [Layers+1][N, H]: each layer's input; the last is the final hidden state
	acts   []layerActs // one per layer, or a single one with gradient checkpointing
	proj   slab        // [N, H] down_proj output of a recomputed layer
	// backward
	dx, dxNext slab // [N, H] gradient of the current layer's output / input
	dxn        slab // [N, H] gradient of a norm's output
	dq, datt   slab // [N, Q]
	dk, dv     slab // [N, K]
	dh, dg, du slab // [N, I]
	tmpIn      slab // [N, max(H, I)] a product's share of an input gradient
	// loss head
	hn, dhn slab // [N, H] final norm output and its gradient
	sel     slab // [R+1, H] the R label rows of hn, then their gradient; the last row zero
	logits  slab // [C, Vocab] logits, then their gradient (in place)
	loss    slab // [R]
	// the micro-batch's metadata
	tokens, pos    intSlab // [N]
	rows, labels   intSlab // [R] the label rows and their targets
	scatter        intSlab // [N] row of sel holding token n's gradient (R: none)
	hostLoss       []float32
	hostIn         []float32 // [N, max(H, I)] an input or gradient, read back for the dropout
	hostMask       []float32 // [N, max(H, I)] a dropout mask
	zeros          []float32 // never written
	scatterIndices []int32
}

func (s *buffers) bytes() int64 {
	var n int64
	for i := range s.inputs {
		n += int64(s.inputs[i].mem.Len())
	}
	for i := range s.acts {
		n += s.acts[i].floats()
	}
	for _, x := range []*slab{&s.proj, &s.dx, &s.dxNext, &s.dxn, &s.dq, &s.datt, &s.dk, &s.dv, &s.dh, &s.dg, &s.du,
		&s.tmpIn, &s.hn, &s.dhn, &s.sel, &s.logits, &s.loss} {
		n += int64(x.mem.Len())
	}
	for _, x := range []*intSlab{&s.tokens, &s.pos, &s.rows, &s.labels, &s.scatter} {
		n += int64(x.mem.Len())
	}
	n += int64(cap(s.hostLoss) + cap(s.hostIn) + cap(s.hostMask) + cap(s.zeros) + cap(s.scatterIndices))
	return 4 * n
}

// actsFor returns the activation set of layer l.
func (t *Trainer) actsFor(l int) *layerActs {
	if len(t.buf.acts) == 1 {
		return &t.buf.acts[0]
	}
	return &t.buf.acts[l]
}

// layerForward runs decoder layer l on x [N, H], writing its output to
// xOut [N, H] (nil: a recomputation, which needs only the activations) and
// saving activations in a.
func (t *Trainer) layerForward(l int, a *layerActs, x kernels.Buf, xOut *kernels.Buf, pos kernels.IntBuf, bt *batch, micro int, train bool) {
	c, be := t.cfg, t.be
	w := &t.m.Weights.Layers[l]
	mods := &t.layers[l]
	N := bt.B * bt.T
	t.allocActs(a, N, c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.Heads, c.Intermediate)
	x = x.Slice(0, N*c.Hidden)

	// Attention block: x2 = x + o_proj(attention(rope(q), rope(k), v)).
	be.RMSNorm(a.xn1.cur, x, w.AttnNorm, c.NormEps)
	t.linearForward(mods[projQ], w.Q, a.q.cur, a.xn1.cur, N, micro, &a.lora[projQ], train)
	t.linearForward(mods[projK], w.K, a.k.cur, a.xn1.cur, N, micro, &a.lora[projK], train)
	t.linearForward(mods[projV], w.V, a.v.cur, a.xn1.cur, N, micro, &a.lora[projV], train)
	be.RoPE(a.q.cur, pos, c.Heads, c.HeadDim, t.invFreqBuf)
	be.RoPE(a.k.cur, pos, c.KVHeads, c.HeadDim, t.invFreqBuf)
	be.AttentionForwardTrain(a.att.cur, a.lse.cur, a.q.cur, a.k.cur, a.v.cur, bt.B, bt.T, c.Heads, c.KVHeads, c.HeadDim)
	// o_proj writes into x2, and the residual is added to it: IEEE addition
	// commutes, so this is x + o_proj(att) bit for bit, without a copy.
	t.linearForward(mods[projO], w.O, a.x2.cur, a.att.cur, N, micro, &a.lora[projO], train)
	be.Add(a.x2.cur, x)

	// MLP block: out = x2 + down_proj(silu(gate_proj(xn2))·up_proj(xn2)).
	be.RMSNorm(a.xn2.cur, a.x2.cur, w.MLPNorm, c.NormEps)
	t.linearForward(mods[projGate], w.Gate, a.gate.cur, a.xn2.cur, N, micro, &a.lora[projGate], train)
	t.linearForward(mods[projUp], w.Up, a.up.cur, a.xn2.cur, N, micro, &a.lora[projUp], train)
	be.SiLUMul(a.h.cur, a.gate.cur, a.up.cur)
	if xOut == nil {
		t.linearForward(mods[projDown], w.Down, t.grow(&t.buf.proj, N*c.Hidden), a.h.cur, N, micro, &a.lora[projDown], train)
		return
	}
	out := xOut.Slice(0, N*c.Hidden)
	t.linearForward(mods[projDown], w.Down, out, a.h.cur, N, micro, &a.lora[projDown], train)
	be.Add(out, a.x2.cur)
}

// layerBackward takes dOut [N, H], the gradient of layer l's output, and
// writes dx [N, H], the gradient of its input x, accumulating the LoRA
// gradients on the way.
func (t *Trainer) layerBackward(l int, a *layerActs, x, dOut, dx kernels.Buf, pos kernels.IntBuf, bt *batch, micro int) {
	c, be, s := t.cfg, t.be, &t.buf
	w := &t.m.Weights.Layers[l]
	mods := &t.layers[l]
	N := bt.B * bt.T
	H, Q, K, I := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.Intermediate
	dq, datt := t.grow(&s.dq, N*Q), t.grow(&s.datt, N*Q)
	dk, dv := t.grow(&s.dk, N*K), t.grow(&s.dv, N*K)
	dh, dg, du := t.grow(&s.dh, N*I), t.grow(&s.dg, N*I), t.grow(&s.du, N*I)
	dxn := t.grow(&s.dxn, N*H)
	x, dOut, dx = x.Slice(0, N*H), dOut.Slice(0, N*H), dx.Slice(0, N*H)

	// MLP block. dx2 starts as the residual's share, dOut itself.
	t.linearBackward(mods[projDown], w.Down, dh, dOut, a.h.cur, N, micro, &a.lora[projDown], false)
	be.SiLUMulBackward(dg, du, dh, a.gate.cur, a.up.cur)
	t.linearBackward(mods[projGate], w.Gate, dxn, dg, a.xn2.cur, N, micro, &a.lora[projGate], false)
	t.linearBackward(mods[projUp], w.Up, dxn, du, a.xn2.cur, N, micro, &a.lora[projUp], true)
	dx2 := dx // dx holds dx2 until the attention block adds its share
	be.RMSNormBackward(dx2, dxn, a.x2.cur, w.MLPNorm, c.NormEps)
	be.Add(dx2, dOut)

	// Attention block.
	t.linearBackward(mods[projO], w.O, datt, dx2, a.att.cur, N, micro, &a.lora[projO], false)
	be.AttentionBackward(dq, dk, dv, datt, a.att.cur, a.lse.cur, a.q.cur, a.k.cur, a.v.cur, bt.B, bt.T, c.Heads, c.KVHeads, c.HeadDim)
	be.RoPEBackward(dq, pos, c.Heads, c.HeadDim, t.invFreqBuf)
	be.RoPEBackward(dk, pos, c.KVHeads, c.HeadDim, t.invFreqBuf)
	t.linearBackward(mods[projQ], w.Q, dxn, dq, a.xn1.cur, N, micro, &a.lora[projQ], false)
	t.linearBackward(mods[projK], w.K, dxn, dk, a.xn1.cur, N, micro, &a.lora[projK], true)
	t.linearBackward(mods[projV], w.V, dxn, dv, a.xn1.cur, N, micro, &a.lora[projV], true)
	tmp := t.grow(&s.tmpIn, N*H)
	be.RMSNormBackward(tmp, dxn, x, w.AttnNorm, c.NormEps)
	be.Add(dx, tmp)
}

// headChunk is the number of label rows whose logits are held at once (64
// MiB of them), so that a large vocabulary never needs [N, Vocab] floats.
// The chunk is also the batch over which MatMulT amortises its pass over
// lm_head (128 rows for a 128256-token vocabulary).
func headChunk(vocab int) int { return max(1, (16<<20)/vocab) }

// lossForward runs the final norm, lm_head and cross-entropy on the rows of
// x [N, H] that have a target, and returns the sum of their losses. With
// dx non-nil it also writes dx [N, H], the gradient of the summed loss times
// scale with respect to x (rows without a target get zero).
//
// The R label rows are gathered into sel (GatherRows); each chunk's logits
// are computed and turned into their gradient in place, whose lm_head
// product overwrites the chunk's rows of sel. A final GatherRows spreads
// them back to the N rows of dhn, through a zero row R for the rows without
// a target.
func (t *Trainer) lossForward(x kernels.Buf, dx *kernels.Buf, bt *batch, scale float32) float64 {
	c, be, s, w := t.cfg, t.be, &t.buf, t.m.Weights
	N, H, V, R := bt.B*bt.T, c.Hidden, c.Vocab, len(bt.rows)
	x = x.Slice(0, N*H)
	hn := t.grow(&s.hn, N*H)
	be.RMSNorm(hn, x, w.Norm, c.NormEps)
	C := min(headChunk(V), max(1, R))
	sel, logits, loss := t.grow(&s.sel, (R+1)*H), t.grow(&s.logits, C*V), t.grow(&s.loss, R)
	labels := make([]int32, R)
	for i, r := range bt.rows {
		labels[i] = bt.targets[r]
	}
	rows, labelsB := t.writeInts(&s.rows, bt.rows), t.writeInts(&s.labels, labels)
	for r0 := 0; r0 < R; r0 += C {
		n := min(C, R-r0)
		hc, lg := sel.Slice(r0*H, (r0+n)*H), logits.Slice(0, n*V)
		be.GatherRows(hc, hn, rows.Slice(r0, r0+n), H)
		be.MatMul(lg, hc, w.LMHead, n)                                                // [n, V]
		be.CrossEntropy(loss.Slice(r0, r0+n), lg, lg, labelsB.Slice(r0, r0+n), scale) // lg now holds dlogits
		if dx != nil {
			be.MatMulT(hc, lg, w.LMHead, n) // [n, H]
		}
	}
	s.hostLoss = growHost(s.hostLoss, R)
	be.Read(s.hostLoss, loss)
	var total float64
	for _, l := range s.hostLoss {
		total += float64(l)
	}
	if dx == nil {
		return total
	}
	t.zero(sel.Slice(R*H, (R+1)*H))
	if cap(s.scatterIndices) < N {
		s.scatterIndices = make([]int32, N)
	}
	idx := s.scatterIndices[:N]
	for n := range idx {
		idx[n] = int32(R)
	}
	for i, r := range bt.rows {
		idx[r] = int32(i)
	}
	dhn := t.grow(&s.dhn, N*H)
	be.GatherRows(dhn, sel, t.writeInts(&s.scatter, idx), H)
	be.RMSNormBackward(dx.Slice(0, N*H), dhn, x, w.Norm, c.NormEps)
	return total
}

// forwardBackward runs one micro-batch forward and, with train, backward,
// accumulating the LoRA gradients of the summed loss times scale in the
// backend's gradient buffers. It returns the summed cross-entropy of the
// micro-batch's label tokens, or the error of an allocation that failed.
func (t *Trainer) forwardBackward(bt *batch, micro int, scale float32, train bool) (loss float64, err error) {
	defer func() {
		if r := recover(); r != nil {
			ae, ok := r.(allocError)
			if !ok {
				panic(r)
			}
			err = ae.err
		}
	}()
	c, be, s := t.cfg, t.be, &t.buf
	L, N, H := c.Layers, bt.B*bt.T, c.Hidden
	for i := range s.inputs {
		t.grow(&s.inputs[i], N*H)
	}
	pos := t.writeInts(&s.pos, bt.pos)
	be.Embed(s.inputs[0].cur, t.m.Weights.Embed, t.writeInts(&s.tokens, bt.tokens))
	for l := 0; l < L; l++ {
		t.layerForward(l, t.actsFor(l), s.inputs[l].cur, &s.inputs[l+1].cur, pos, bt, micro, train)
	}
	if !train {
		return t.lossForward(s.inputs[L].cur, nil, bt, scale), nil
	}
	dx, dxNext := t.grow(&s.dx, N*H), t.grow(&s.dxNext, N*H)
	loss = t.lossForward(s.inputs[L].cur, &dx, bt, scale)
	for l := L - 1; l >= 0; l-- {
		a := t.actsFor(l)
		if t.opts.GradientCheckpointing {
			// Recompute the layer from its saved input; its output is not needed.
			t.layerForward(l, a, s.inputs[l].cur, nil, pos, bt, micro, true)
		}
		t.layerBackward(l, a, s.inputs[l].cur, dx, dxNext, pos, bt, micro)
		dx, dxNext = dxNext, dx
	}
	return loss, nil
}
