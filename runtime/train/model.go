package train

// The Llama block's forward and backward passes for training, llm.c style:
// explicit per-part calls with the shapes in the comments. N = B·T tokens of
// a right-padded micro-batch, H = Hidden, Q = Heads·HeadDim, K = KVHeads·HeadDim,
// I = Intermediate.

// batch is one micro-batch, right-padded to its longest example.
type batch struct {
	B, T    int
	tokens  []int32 // [N] inputs (padding: 0)
	pos     []int32 // [N] position within the sequence
	targets []int32 // [N] label of token n+1 of the same sequence (the shift), IgnoreIndex if none
	rows    []int32 // token indices with a target, ascending
}

// layerActs are one layer's saved activations.
type layerActs struct {
	xn1      []float32 // [N, H] input_layernorm(x)
	q        []float32 // [N, Q] after RoPE
	k, v     []float32 // [N, K] (k after RoPE)
	att      []float32 // [N, Q] attention output
	lse      []float32 // [N, Heads] log-sum-exp of each attention row
	x2       []float32 // [N, H] x + o_proj(att)
	xn2      []float32 // [N, H] post_attention_layernorm(x2)
	gate, up []float32 // [N, I] pre-activation
	h        []float32 // [N, I] silu(gate)·up
	lora     [numProj]loraActs
}

func (a *layerActs) alloc(N, H, Q, K, heads, I int) {
	a.xn1, a.x2, a.xn2 = grow(a.xn1, N*H), grow(a.x2, N*H), grow(a.xn2, N*H)
	a.q, a.att = grow(a.q, N*Q), grow(a.att, N*Q)
	a.k, a.v = grow(a.k, N*K), grow(a.v, N*K)
	a.lse = grow(a.lse, N*heads)
	a.gate, a.up, a.h = grow(a.gate, N*I), grow(a.up, N*I), grow(a.h, N*I)
}

func (a *layerActs) bytes() int64 {
	n := cap(a.xn1) + cap(a.q) + cap(a.k) + cap(a.v) + cap(a.att) + cap(a.lse) + cap(a.x2) +
		cap(a.xn2) + cap(a.gate) + cap(a.up) + cap(a.h)
	for _, l := range a.lora {
		n += cap(l.z) + cap(l.xd)
	}
	return 4 * int64(n)
}

// buffers are the trainer's reusable scratch.
type buffers struct {
	inputs [][]float32 // [Layers+1][N, H]: each layer's input; the last is the final hidden state
	acts   []layerActs // one per layer, or a single one with gradient checkpointing
	proj   []float32   // [N, H] o_proj / down_proj output
	// backward
	dx, dxNext []float32 // [N, H] gradient of the current layer's output / input
	dxn        []float32 // [N, H] gradient of a norm's output
	dq, datt   []float32 // [N, Q]
	dk, dv     []float32 // [N, K]
	dh, dg, du []float32 // [N, I]
	tmpIn      []float32 // [N, max(H, I)] a product's share of an input gradient
	mask       []float32 // [N, max(H, I)] a regenerated dropout mask
	// loss head
	hn, dhn []float32 // [N, H] final norm output and its gradient
	chunk   []float32 // [C, H] gathered rows, then their gradient
	logits  []float32 // [C, Vocab] logits, then their gradient (in place)
	loss    []float32 // [C]
	labels  []int32   // [C]
}

func (s *buffers) bytes() int64 {
	var n int64
	for _, x := range s.inputs {
		n += int64(cap(x))
	}
	for i := range s.acts {
		n += s.acts[i].bytes() / 4
	}
	for _, x := range [][]float32{s.proj, s.dx, s.dxNext, s.dxn, s.dq, s.datt, s.dk, s.dv, s.dh, s.dg, s.du,
		s.tmpIn, s.mask, s.hn, s.dhn, s.chunk, s.logits, s.loss} {
		n += int64(cap(x))
	}
	return 4*n + 4*int64(cap(s.labels))
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
func (t *Trainer) layerForward(l int, a *layerActs, x, xOut []float32, bt *batch, micro int, train bool) {
	c, be := t.cfg, t.be
	w := &t.m.Weights.Layers[l]
	mods := &t.layers[l]
	N := bt.B * bt.T
	a.alloc(N, c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.Heads, c.Intermediate)

	// Attention block: x2 = x + o_proj(attention(rope(q), rope(k), v)).
	be.RMSNorm(a.xn1, x, w.AttnNorm, c.NormEps)
	t.linearForward(mods[projQ], w.Q, a.q, a.xn1, N, micro, &a.lora[projQ], train)
	t.linearForward(mods[projK], w.K, a.k, a.xn1, N, micro, &a.lora[projK], train)
	t.linearForward(mods[projV], w.V, a.v, a.xn1, N, micro, &a.lora[projV], train)
	be.RoPE(a.q, bt.pos, c.Heads, c.HeadDim, t.invFreq)
	be.RoPE(a.k, bt.pos, c.KVHeads, c.HeadDim, t.invFreq)
	be.AttentionForwardTrain(a.att, a.lse, a.q, a.k, a.v, bt.B, bt.T, c.Heads, c.KVHeads, c.HeadDim)
	proj := t.buf.proj[:N*c.Hidden]
	t.linearForward(mods[projO], w.O, proj, a.att, N, micro, &a.lora[projO], train)
	copy(a.x2, x[:N*c.Hidden])
	be.Add(a.x2, proj)

	// MLP block: out = x2 + down_proj(silu(gate_proj(xn2))·up_proj(xn2)).
	be.RMSNorm(a.xn2, a.x2, w.MLPNorm, c.NormEps)
	t.linearForward(mods[projGate], w.Gate, a.gate, a.xn2, N, micro, &a.lora[projGate], train)
	t.linearForward(mods[projUp], w.Up, a.up, a.xn2, N, micro, &a.lora[projUp], train)
	be.SiLUMul(a.h, a.gate, a.up)
	t.linearForward(mods[projDown], w.Down, proj, a.h, N, micro, &a.lora[projDown], train)
	if xOut != nil {
		copy(xOut[:N*c.Hidden], a.x2)
		be.Add(xOut[:N*c.Hidden], proj)
	}
}

// layerBackward takes dOut [N, H], the gradient of layer l's output, and
// writes dx [N, H], the gradient of its input x, accumulating the LoRA
// gradients on the way.
func (t *Trainer) layerBackward(l int, a *layerActs, x, dOut, dx []float32, bt *batch, micro int) {
	c, be, s := t.cfg, t.be, &t.buf
	w := &t.m.Weights.Layers[l]
	mods := &t.layers[l]
	N := bt.B * bt.T
	H, Q, K, I := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim, c.Intermediate
	s.dq, s.datt = grow(s.dq, N*Q), grow(s.datt, N*Q)
	s.dk, s.dv = grow(s.dk, N*K), grow(s.dv, N*K)
	s.dh, s.dg, s.du = grow(s.dh, N*I), grow(s.dg, N*I), grow(s.du, N*I)
	s.dxn = grow(s.dxn, N*H)
	dOut, dx = dOut[:N*H], dx[:N*H]

	// MLP block. dx2 starts as the residual's share, dOut itself.
	t.linearBackward(mods[projDown], w.Down, s.dh, dOut, a.h, N, micro, &a.lora[projDown], false)
	be.SiLUMulBackward(s.dg, s.du, s.dh, a.gate, a.up)
	t.linearBackward(mods[projGate], w.Gate, s.dxn, s.dg, a.xn2, N, micro, &a.lora[projGate], false)
	t.linearBackward(mods[projUp], w.Up, s.dxn, s.du, a.xn2, N, micro, &a.lora[projUp], true)
	dx2 := dx // dx holds dx2 until the attention block adds its share
	be.RMSNormBackward(dx2, s.dxn, a.x2, w.MLPNorm, c.NormEps)
	be.Add(dx2, dOut)

	// Attention block.
	t.linearBackward(mods[projO], w.O, s.datt, dx2, a.att, N, micro, &a.lora[projO], false)
	be.AttentionBackward(s.dq, s.dk, s.dv, s.datt, a.att, a.lse, a.q, a.k, a.v, bt.B, bt.T, c.Heads, c.KVHeads, c.HeadDim)
	be.RoPEBackward(s.dq, bt.pos, c.Heads, c.HeadDim, t.invFreq)
	be.RoPEBackward(s.dk, bt.pos, c.KVHeads, c.HeadDim, t.invFreq)
	t.linearBackward(mods[projQ], w.Q, s.dxn, s.dq, a.xn1, N, micro, &a.lora[projQ], false)
	t.linearBackward(mods[projK], w.K, s.dxn, s.dk, a.xn1, N, micro, &a.lora[projK], true)
	t.linearBackward(mods[projV], w.V, s.dxn, s.dv, a.xn1, N, micro, &a.lora[projV], true)
	s.tmpIn = grow(s.tmpIn, N*H)
	be.RMSNormBackward(s.tmpIn, s.dxn, x, w.AttnNorm, c.NormEps)
	be.Add(dx, s.tmpIn)
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
func (t *Trainer) lossForward(x, dx []float32, bt *batch, scale float32) float64 {
	c, be, s, w := t.cfg, t.be, &t.buf, t.m.Weights
	N, H, V := bt.B*bt.T, c.Hidden, c.Vocab
	s.hn = grow(s.hn, N*H)
	be.RMSNorm(s.hn, x[:N*H], w.Norm, c.NormEps)
	if dx != nil {
		s.dhn = grow(s.dhn, N*H)
		clear(s.dhn)
	}
	C := min(headChunk(V), max(1, len(bt.rows)))
	s.chunk, s.logits, s.loss = grow(s.chunk, C*H), grow(s.logits, C*V), grow(s.loss, C)
	if cap(s.labels) < C {
		s.labels = make([]int32, C)
	}
	var total float64
	for r0 := 0; r0 < len(bt.rows); r0 += C {
		rows := bt.rows[r0:min(r0+C, len(bt.rows))]
		n := len(rows)
		hc, logits, labels := s.chunk[:n*H], s.logits[:n*V], s.labels[:n]
		for i, r := range rows {
			copy(hc[i*H:(i+1)*H], s.hn[int(r)*H:int(r+1)*H])
			labels[i] = bt.targets[r]
		}
		be.MatMul(logits, hc, w.LMHead, n)                         // [n, V]
		be.CrossEntropy(s.loss[:n], logits, logits, labels, scale) // logits now hold dlogits
		for _, l := range s.loss[:n] {
			total += float64(l)
		}
		if dx == nil {
			continue
		}
		be.MatMulT(hc, logits, w.LMHead, n) // [n, H]
		for i, r := range rows {
			copy(s.dhn[int(r)*H:int(r+1)*H], hc[i*H:(i+1)*H])
		}
	}
	if dx != nil {
		be.RMSNormBackward(dx[:N*H], s.dhn, x[:N*H], w.Norm, c.NormEps)
	}
	return total
}

// forwardBackward runs one micro-batch forward and, with train, backward,
// accumulating the LoRA gradients of the summed loss times scale. It
// returns the summed cross-entropy of the micro-batch's label tokens.
func (t *Trainer) forwardBackward(bt *batch, micro int, scale float32, train bool) float64 {
	c, be, s := t.cfg, t.be, &t.buf
	L, N, H := c.Layers, bt.B*bt.T, c.Hidden
	for i := range s.inputs {
		s.inputs[i] = grow(s.inputs[i], N*H)
	}
	s.proj = grow(s.proj, N*H)
	be.Embed(s.inputs[0], t.m.Weights.Embed, bt.tokens)
	for l := 0; l < L; l++ {
		t.layerForward(l, t.actsFor(l), s.inputs[l], s.inputs[l+1], bt, micro, train)
	}
	if !train {
		return t.lossForward(s.inputs[L], nil, bt, scale)
	}
	s.dx, s.dxNext = grow(s.dx, N*H), grow(s.dxNext, N*H)
	loss := t.lossForward(s.inputs[L], s.dx, bt, scale)
	for l := L - 1; l >= 0; l-- {
		a := t.actsFor(l)
		if t.opts.GradientCheckpointing {
			// Recompute the layer from its saved input; its output is not needed.
			t.layerForward(l, a, s.inputs[l], nil, bt, micro, true)
		}
		t.layerBackward(l, a, s.inputs[l], s.dx, s.dxNext, bt, micro)
		s.dx, s.dxNext = s.dxNext, s.dx
	}
	return loss
}
