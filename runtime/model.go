package runtime

import (
	"errors"
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// Model is a Llama decoder bound to a backend. Forward is not safe for
// concurrent use: one goroutine (the scheduler) drives it.
type Model struct {
	Config  *Config
	Weights *Weights
	Backend kernels.Backend

	invFreq []float32 // [HeadDim/2]
	lora    *LoRASlots
	scratch scratch
}

// NewModel binds weights to a backend.
func NewModel(cfg *Config, w *Weights, be kernels.Backend) *Model {
	return &Model{Config: cfg, Weights: w, Backend: be, invFreq: cfg.InvFreq()}
}

// Batch is a set of tokens from one or more sequences, each at its own
// position. Tokens of the same sequence must be consecutive positions in
// order, continuing that sequence's cache (prefill chunks or single decode
// tokens may be mixed freely).
type Batch struct {
	Tokens []int32    // [T]
	Pos    []int32    // [T] position of each token in its sequence
	Caches []*KVCache // [T] the cache of each token's sequence
	Logits []bool     // [T] whether to return logits for this token (nil = last token only)
	Slots  []int32    // [T] LoRA slot of each token's adapter, -1 = base model (nil = all base)
}

// Add appends one token of the base model to the batch.
func (b *Batch) Add(token, pos int32, cache *KVCache, wantLogits bool) {
	b.AddWithAdapter(token, pos, cache, wantLogits, -1)
}

// AddWithAdapter appends one token whose sequence uses the LoRA adapter in
// slot (-1 = none).
func (b *Batch) AddWithAdapter(token, pos int32, cache *KVCache, wantLogits bool, slot int32) {
	b.Tokens = append(b.Tokens, token)
	b.Pos = append(b.Pos, pos)
	b.Caches = append(b.Caches, cache)
	b.Logits = append(b.Logits, wantLogits)
	b.Slots = append(b.Slots, slot)
}

// Reset empties the batch, keeping its storage.
func (b *Batch) Reset() {
	b.Tokens, b.Pos, b.Caches, b.Logits, b.Slots = b.Tokens[:0], b.Pos[:0], b.Caches[:0], b.Logits[:0], b.Slots[:0]
}

// scratch holds activation buffers reused across Forward calls.
type scratch struct {
	x, xn      []float32 // [T, Hidden]
	q, att     []float32 // [T, Heads*HeadDim]
	k, v       []float32 // [T, KVHeads*HeadDim]
	gate, up   []float32 // [T, Intermediate]
	proj       []float32 // [T, Hidden]
	out        []float32 // [nOut, Hidden]
	kv         []kernels.KVRef
	outputRows []int
	loraZ      []float32        // [T, MaxRank]
	next       map[*KVCache]int // per sequence in the batch: the position after its tokens
}

func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// Forward runs the batch through the model, appending each token's key and
// value to its cache, and returns logits [nOut, Vocab] for the tokens whose
// Logits flag is set, in batch order. The returned slice is owned by the
// caller.
func (m *Model) Forward(b *Batch) ([]float32, error) {
	c, be, w := m.Config, m.Backend, m.Weights
	T := len(b.Tokens)
	if T == 0 {
		return nil, errors.New("forward: empty batch")
	}
	if len(b.Pos) != T || len(b.Caches) != T || (b.Logits != nil && len(b.Logits) != T) || (b.Slots != nil && len(b.Slots) != T) {
		return nil, errors.New("forward: batch fields have different lengths")
	}
	for t, id := range b.Tokens {
		if id < 0 || int(id) >= c.Vocab {
			return nil, fmt.Errorf("forward: token id %d outside vocabulary of %d", id, c.Vocab)
		}
		if b.Caches[t] == nil {
			return nil, errors.New("forward: token without a KV cache")
		}
	}
	if err := m.checkPositions(b); err != nil {
		return nil, err
	}
	slots, err := m.batchSlots(b)
	if err != nil {
		return nil, err
	}

	qDim, kvDim := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	s := &m.scratch
	s.x = grow(s.x, T*c.Hidden)
	s.xn = grow(s.xn, T*c.Hidden)
	s.q = grow(s.q, T*qDim)
	s.att = grow(s.att, T*qDim)
	s.k = grow(s.k, T*kvDim)
	s.v = grow(s.v, T*kvDim)
	s.gate = grow(s.gate, T*c.Intermediate)
	s.up = grow(s.up, T*c.Intermediate)
	s.proj = grow(s.proj, T*c.Hidden)
	if cap(s.kv) < T {
		s.kv = make([]kernels.KVRef, T)
	}
	s.kv = s.kv[:T]

	be.Embed(s.x, w.Embed, b.Tokens)
	for li := range w.Layers {
		l := &w.Layers[li]
		// Attention block.
		be.RMSNorm(s.xn, s.x, l.AttnNorm, c.NormEps)
		m.linear(l.Q, s.q, s.xn, T, slots)
		m.linear(l.K, s.k, s.xn, T, slots)
		m.linear(l.V, s.v, s.xn, T, slots)
		be.RoPE(s.q, b.Pos, c.Heads, c.HeadDim, m.invFreq)
		be.RoPE(s.k, b.Pos, c.KVHeads, c.HeadDim, m.invFreq)
		for t, cache := range b.Caches {
			p := int(b.Pos[t])
			copy(cache.k[li][p*kvDim:(p+1)*kvDim], s.k[t*kvDim:(t+1)*kvDim])
			copy(cache.v[li][p*kvDim:(p+1)*kvDim], s.v[t*kvDim:(t+1)*kvDim])
			s.kv[t] = kernels.KVRef{K: cache.k[li], V: cache.v[li], Len: p + 1}
		}
		be.Attention(s.att, s.q, s.kv, c.Heads, c.KVHeads, c.HeadDim)
		m.linear(l.O, s.proj, s.att, T, slots)
		be.Add(s.x, s.proj)
		// MLP block (SwiGLU).
		be.RMSNorm(s.xn, s.x, l.MLPNorm, c.NormEps)
		m.linear(l.Gate, s.gate, s.xn, T, slots)
		m.linear(l.Up, s.up, s.xn, T, slots)
		be.SiLUMul(s.gate, s.gate, s.up)
		m.linear(l.Down, s.proj, s.gate, T, slots)
		be.Add(s.x, s.proj)
	}
	for t, cache := range b.Caches {
		cache.len = max(cache.len, int(b.Pos[t])+1)
	}

	// Final norm and lm_head only for the rows that need logits.
	s.outputRows = s.outputRows[:0]
	for t := range T {
		if b.Logits == nil && t == T-1 || b.Logits != nil && b.Logits[t] {
			s.outputRows = append(s.outputRows, t)
		}
	}
	nOut := len(s.outputRows)
	if nOut == 0 {
		return nil, nil
	}
	s.out = grow(s.out, nOut*c.Hidden)
	for i, t := range s.outputRows {
		copy(s.out[i*c.Hidden:(i+1)*c.Hidden], s.x[t*c.Hidden:(t+1)*c.Hidden])
	}
	be.RMSNorm(s.out, s.out, w.Norm, c.NormEps)
	logits := make([]float32, nOut*c.Vocab)
	be.MatMul(logits, s.out, w.LMHead, nOut)
	return logits, nil
}

// linear computes y = W·x (+ scale·B·A·x for tokens with an adapter) for T
// tokens: x [T, In], y [T, Out]. slots is nil when no token has an adapter.
func (m *Model) linear(l *Linear, y, x []float32, T int, slots []int32) {
	y, x = y[:T*l.Out], x[:T*l.In]
	m.Backend.MatMul(y, x, l.W, T)
	if slots == nil || l.LoRA == nil {
		return
	}
	lb := m.Backend.(kernels.LoRABackend) // checked by EnableLoRA
	z := grow(m.scratch.loraZ, T*l.LoRA.MaxRank)
	m.scratch.loraZ = z
	lb.LoRAShrink(z, x, l.LoRA, slots)
	lb.LoRAExpand(y, z, l.LoRA, slots)
}

// batchSlots returns the batch's adapter slots, or nil if no token uses one.
func (m *Model) batchSlots(b *Batch) ([]int32, error) {
	var any bool
	for _, s := range b.Slots {
		if s < 0 {
			continue
		}
		if m.lora == nil || int(s) >= m.lora.Slots {
			return nil, fmt.Errorf("forward: adapter slot %d is not allocated", s)
		}
		any = true
	}
	if !any {
		return nil, nil
	}
	return b.Slots, nil
}

// checkPositions verifies each sequence's tokens continue its cache
// contiguously, and reserves cache room for them.
func (m *Model) checkPositions(b *Batch) error {
	if m.scratch.next == nil {
		m.scratch.next = map[*KVCache]int{}
	}
	next := m.scratch.next // reused: no allocation per step
	defer clear(next)      // and holds no cache alive between steps
	for t, cache := range b.Caches {
		want, seen := next[cache]
		if !seen {
			want = cache.len
		}
		if int(b.Pos[t]) != want {
			return fmt.Errorf("forward: token %d at position %d, but its sequence continues at %d", t, b.Pos[t], want)
		}
		next[cache] = want + 1
	}
	for cache, n := range next {
		if err := cache.reserve(n); err != nil {
			return err
		}
	}
	return nil
}
