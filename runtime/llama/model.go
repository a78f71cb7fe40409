package llama

import (
	"errors"
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// Model is a Llama decoder bound to a backend: its weights live in the
// backend's memory, and every step's activations and metadata too. Forward
// is not safe for concurrent use: one goroutine (the scheduler) drives it.
type Model struct {
	Config  *Config
	Weights *Weights
	Backend kernels.Backend

	invFreq kernels.Buf // [HeadDim/2]
	lora    *LoRASlots
	scratch scratch
}

// NewModel binds weights to a backend, uploading them (a device backend
// keeps its own copy; the weights then belong to that backend).
func NewModel(cfg *Config, w *Weights, be kernels.Backend) (*Model, error) {
	if err := w.upload(be); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Weights: w, Backend: be}
	inv := cfg.InvFreq()
	var err error
	if m.invFreq, err = be.Alloc(len(inv)); err != nil {
		return nil, err
	}
	be.Write(m.invFreq, inv)
	return m, nil
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

// scratch holds the backend buffers reused across Forward calls, and the
// host staging of each step's metadata.
type scratch struct {
	x, xn    kernels.Buf // [T, Hidden]
	q, att   kernels.Buf // [T, Heads*HeadDim]
	k, v     kernels.Buf // [T, KVHeads*HeadDim]
	gate, up kernels.Buf // [T, Intermediate]
	proj     kernels.Buf // [T, Hidden]
	out      kernels.Buf // [nOut, Hidden]
	logits   kernels.Buf // [nOut, Vocab]
	loraZ    kernels.Buf // [T, MaxRank]

	// The step's metadata in backend memory (punica's update_metadata,
	// vLLM's attention metadata): written once, read by every layer.
	tokens, pos, slots kernels.IntBuf // [T]
	seq, kvSlots       kernels.IntBuf // [T]
	tables             kernels.IntBuf // [nSeqs, maxBlocks]
	outRows            kernels.IntBuf // [nOut]
	hSeq, hKVSlots     []int32
	hTables, hOutRows  []int32
	seqOf              map[*KVCache]int // row of each sequence in tables
	seqs               []*KVCache
	next               map[*KVCache]int // per sequence in the batch: the position after its tokens
}

// reserveActivations makes the per-token activation buffers hold T tokens.
func (m *Model) reserveActivations(T int) error {
	c, s := m.Config, &m.scratch
	qDim, kvDim := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	for _, a := range []struct {
		buf *kernels.Buf
		n   int
	}{
		{&s.x, T * c.Hidden}, {&s.xn, T * c.Hidden}, {&s.q, T * qDim}, {&s.att, T * qDim},
		{&s.k, T * kvDim}, {&s.v, T * kvDim}, {&s.gate, T * c.Intermediate},
		{&s.up, T * c.Intermediate}, {&s.proj, T * c.Hidden},
	} {
		if _, err := m.buf(a.buf, a.n); err != nil {
			return err
		}
	}
	return nil
}

// Reserve allocates the forward pass's buffers for batches of up to tokens
// tokens with up to outRows logit rows (vLLM sizes them with a profiling run
// at start): a server then measures them with the weights, and they are not
// regrown, leaving the smaller ones as garbage, as batches get larger.
func (m *Model) Reserve(tokens, outRows int) error {
	c := m.Config
	if err := m.reserveActivations(tokens); err != nil {
		return err
	}
	if _, err := m.buf(&m.scratch.out, outRows*c.Hidden); err != nil {
		return err
	}
	if _, err := m.buf(&m.scratch.logits, outRows*c.Vocab); err != nil {
		return err
	}
	if m.lora != nil {
		if _, err := m.buf(&m.scratch.loraZ, tokens*m.lora.MaxRank); err != nil {
			return err
		}
	}
	return nil
}

// buf returns a view of n floats of *b, reallocating it when too small.
func (m *Model) buf(b *kernels.Buf, n int) (kernels.Buf, error) {
	if b.Len() < n {
		if b.Len() > 0 {
			m.Backend.Free(*b)
		}
		nb, err := m.Backend.Alloc(n)
		if err != nil {
			*b = kernels.Buf{}
			return kernels.Buf{}, err
		}
		*b = nb
	}
	return b.Slice(0, n), nil
}

// ints writes host values into *b (reallocated when too small) and returns
// the view holding them.
func (m *Model) ints(b *kernels.IntBuf, v []int32) (kernels.IntBuf, error) {
	if b.Len() < len(v) {
		if b.Len() > 0 {
			m.Backend.FreeInt(*b)
		}
		nb, err := m.Backend.AllocInt(max(len(v), 2*b.Len()))
		if err != nil {
			*b = kernels.IntBuf{}
			return kernels.IntBuf{}, err
		}
		*b = nb
	}
	view := b.Slice(0, len(v))
	m.Backend.WriteInt(view, v)
	return view, nil
}

// Forward runs the batch through the model, appending each token's key and
// value to its cache, and returns logits [nOut, Vocab] for the tokens whose
// Logits flag is set, in batch order. The returned slice is owned by the
// caller. Every cache of a batch must belong to the same KV pool.
func (m *Model) Forward(b *Batch) ([]float32, error) { return m.ForwardInto(b, nil) }

// ForwardInto is Forward returning the logits in dst's storage when it has
// the capacity (else in a new slice): a server that samples each step's
// logits before the next step reuses one buffer rather than leaving 0.5 MB
// of garbage per sampled token of a 128K vocabulary.
func (m *Model) ForwardInto(b *Batch, dst []float32) ([]float32, error) {
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
		if b.Caches[t].pool != b.Caches[0].pool || b.Caches[t].pool == nil {
			return nil, errors.New("forward: caches of one batch must share a KV pool")
		}
	}
	pool := b.Caches[0].pool
	if pool.Shape() != m.KVShape() {
		return nil, fmt.Errorf("forward: KV pool shaped %+v for a model of %+v", pool.Shape(), m.KVShape())
	}
	if err := m.checkPositions(b); err != nil {
		return nil, err
	}
	slots, err := m.batchSlots(b)
	if err != nil {
		return nil, err
	}
	meta, err := m.writeMetadata(b, pool.BlockSize())
	if err != nil {
		return nil, err
	}
	var slotBuf kernels.IntBuf
	if slots != nil {
		if slotBuf, err = m.ints(&m.scratch.slots, slots); err != nil {
			return nil, err
		}
	}

	qDim, kvDim := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	s := &m.scratch
	if err := m.reserveActivations(T); err != nil {
		return nil, err
	}
	x, xn, proj := s.x.Slice(0, T*c.Hidden), s.xn.Slice(0, T*c.Hidden), s.proj.Slice(0, T*c.Hidden)
	q, att := s.q.Slice(0, T*qDim), s.att.Slice(0, T*qDim)
	k, v := s.k.Slice(0, T*kvDim), s.v.Slice(0, T*kvDim)
	gate, up := s.gate.Slice(0, T*c.Intermediate), s.up.Slice(0, T*c.Intermediate)

	be.Embed(x, w.Embed, meta.tokens)
	for li := range w.Layers {
		l := &w.Layers[li]
		kv := pool.Layer(li)
		// Attention block.
		be.RMSNorm(xn, x, l.AttnNorm, c.NormEps)
		if err := m.linear(l.Q, q, xn, T, slotBuf); err != nil {
			return nil, err
		}
		if err := m.linear(l.K, k, xn, T, slotBuf); err != nil {
			return nil, err
		}
		if err := m.linear(l.V, v, xn, T, slotBuf); err != nil {
			return nil, err
		}
		be.RoPE(q, meta.attn.Pos, c.Heads, c.HeadDim, m.invFreq)
		be.RoPE(k, meta.attn.Pos, c.KVHeads, c.HeadDim, m.invFreq)
		be.WriteKV(kv, k, v, meta.kvSlots, kvDim)
		be.PagedAttention(att, q, kv, meta.attn, c.Heads, c.KVHeads, c.HeadDim)
		if err := m.linear(l.O, proj, att, T, slotBuf); err != nil {
			return nil, err
		}
		be.Add(x, proj)
		// MLP block (SwiGLU).
		be.RMSNorm(xn, x, l.MLPNorm, c.NormEps)
		if err := m.linear(l.Gate, gate, xn, T, slotBuf); err != nil {
			return nil, err
		}
		if err := m.linear(l.Up, up, xn, T, slotBuf); err != nil {
			return nil, err
		}
		be.SiLUMul(gate, gate, up)
		if err := m.linear(l.Down, proj, gate, T, slotBuf); err != nil {
			return nil, err
		}
		be.Add(x, proj)
	}
	for t, cache := range b.Caches {
		cache.len = max(cache.len, int(b.Pos[t])+1)
	}

	// Final norm and lm_head only for the rows that need logits.
	nOut := meta.outRows.Len()
	if nOut == 0 {
		return nil, nil
	}
	out, err := m.buf(&s.out, nOut*c.Hidden)
	if err != nil {
		return nil, err
	}
	logitsBuf, err := m.buf(&s.logits, nOut*c.Vocab)
	if err != nil {
		return nil, err
	}
	be.GatherRows(out, x, meta.outRows, c.Hidden)
	be.RMSNorm(out, out, w.Norm, c.NormEps)
	be.MatMul(logitsBuf, out, w.LMHead, nOut)
	logits := dst[:0]
	if cap(logits) < nOut*c.Vocab {
		logits = make([]float32, nOut*c.Vocab)
	}
	logits = logits[:nOut*c.Vocab]
	be.Read(logits, logitsBuf)
	return logits, nil
}

// stepMeta is a step's metadata, in backend memory.
type stepMeta struct {
	tokens  kernels.IntBuf // [T]
	kvSlots kernels.IntBuf // [T] row of the KV storage each token's key and value go to
	outRows kernels.IntBuf // [nOut] tokens whose logits are returned
	attn    kernels.AttnMeta
}

// writeMetadata lays out the batch's block tables and slot mapping (vLLM's
// slot_mapping: block*blockSize + offset) and writes them to the backend.
func (m *Model) writeMetadata(b *Batch, blockSize int) (stepMeta, error) {
	s := &m.scratch
	if s.seqOf == nil {
		s.seqOf = map[*KVCache]int{}
	}
	defer clear(s.seqOf) // holds no cache alive between steps
	s.seqs = s.seqs[:0]
	maxBlocks, maxLen := 0, 0
	s.hSeq, s.hKVSlots = s.hSeq[:0], s.hKVSlots[:0]
	for t, cache := range b.Caches {
		i, ok := s.seqOf[cache]
		if !ok {
			i = len(s.seqs)
			s.seqOf[cache] = i
			s.seqs = append(s.seqs, cache)
			maxBlocks = max(maxBlocks, len(cache.table.Blocks))
		}
		p := int(b.Pos[t])
		maxLen = max(maxLen, p+1)
		s.hSeq = append(s.hSeq, int32(i))
		s.hKVSlots = append(s.hKVSlots, cache.table.Blocks[p/blockSize]*int32(blockSize)+int32(p%blockSize))
	}
	s.hTables = s.hTables[:0]
	for _, cache := range s.seqs {
		s.hTables = append(s.hTables, cache.table.Blocks...)
		for range maxBlocks - len(cache.table.Blocks) {
			s.hTables = append(s.hTables, -1)
		}
	}
	s.seqs = s.seqs[:0]
	s.hOutRows = s.hOutRows[:0]
	for t := range b.Tokens {
		if b.Logits == nil && t == len(b.Tokens)-1 || b.Logits != nil && b.Logits[t] {
			s.hOutRows = append(s.hOutRows, int32(t))
		}
	}
	var meta stepMeta
	var err error
	write := func(dst *kernels.IntBuf, buf *kernels.IntBuf, v []int32) {
		if err == nil {
			*dst, err = m.ints(buf, v)
		}
	}
	write(&meta.tokens, &s.tokens, b.Tokens)
	write(&meta.attn.Pos, &s.pos, b.Pos)
	write(&meta.attn.Seq, &s.seq, s.hSeq)
	write(&meta.kvSlots, &s.kvSlots, s.hKVSlots)
	write(&meta.attn.BlockTables, &s.tables, s.hTables)
	write(&meta.outRows, &s.outRows, s.hOutRows)
	meta.attn.MaxBlocks, meta.attn.BlockSize, meta.attn.MaxLen = maxBlocks, blockSize, maxLen
	return meta, err
}

// linear computes y = W·x (+ scale·B·A·x for tokens with an adapter) for T
// tokens: x [T, In], y [T, Out]. slots has no values when no token has an
// adapter.
func (m *Model) linear(l *Linear, y, x kernels.Buf, T int, slots kernels.IntBuf) error {
	y, x = y.Slice(0, T*l.Out), x.Slice(0, T*l.In)
	m.Backend.MatMul(y, x, l.W, T)
	if slots.Len() == 0 || l.LoRA == nil {
		return nil
	}
	lb := m.Backend.(kernels.LoRABackend) // checked by EnableLoRA
	z, err := m.buf(&m.scratch.loraZ, T*l.LoRA.MaxRank)
	if err != nil {
		return err
	}
	lb.LoRAShrink(z, x, l.LoRA, slots)
	lb.LoRAExpand(y, z, l.LoRA, slots)
	return nil
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
		if err := cache.Reserve(n); err != nil {
			return err
		}
	}
	return nil
}
