package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parrot-llm/parrot/runtime/llama"

	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/kvpool"
	"github.com/parrot-llm/parrot/runtime/sampler"
	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

// Request is one generation job.
type Request struct {
	Messages     []chat.Message // chat request (rendered with the model's template), or
	Prompt       string         // raw text prompt (BOS added as the tokenizer configures), or
	PromptTokens []int32        // pre-tokenized prompt
	Sampling     sampler.Params
	MaxTokens    int      // 0 = up to the context length
	Stop         []string // stop strings (not included in the output)
	IgnoreEOS    bool
	// Adapter is the LoRA adapter to apply (nil = base model): a claim on
	// one version, whose slot the scheduler acquires when it admits the
	// request and gives back when the request ends or is preempted. The
	// engine owns it from Submit on and releases it when the request ends,
	// also when Submit fails.
	Adapter AdapterClaim
	// Constraint, if set, restricts the tokens this sequence may sample
	// (structured outputs: a JSON schema, a regular expression...). It is
	// the sequence's own: give each of n choices a copy.
	Constraint Constraint
	// Group ties the sequences of one API request together (its n choices
	// and prompts), so that at most Options.MaxRunningPerGroup of them
	// run at once; "" = a group of its own.
	Group string
}

// Constraint is a grammar matcher over the model's vocabulary
// (runtime/grammar's Matcher implements it).
type Constraint interface {
	// FillMask sets bit i of mask (len ≥ ceil(vocab/64)) when token i may
	// come next, and clears the others; EOS only where the text so far is
	// complete.
	FillMask(mask []uint64) error
	// Consume advances past a sampled token; an error when it was not allowed.
	Consume(token int32) error
}

// ErrNoAllowedToken ends a constrained sequence whose grammar allows no
// token at all (a dead end the matcher should have ruled out).
var ErrNoAllowedToken = errors.New("the output constraint allows no next token")

// AdapterClaim is a request's claim on one version of a LoRA adapter
// (adapters.Claim implements it).
type AdapterClaim interface {
	Name() string
	Version() string // the adapter version claimed
	// Acquire holds a slot of the model's LoRASlots with the adapter in it,
	// installing it if needed, without waiting: ok is false while every
	// slot is held by other running requests (the request stays queued).
	Acquire() (slot int32, ok bool, err error)
	// Drop gives the slot back and keeps the claim (preemption).
	Drop()
	// Release gives up the slot and the claim.
	Release()
}

// Finish reasons, as OpenAI names them.
const (
	FinishStop   = "stop"
	FinishLength = "length"
)

// Event is a piece of a generation's output. The last event of a stream has
// Done set (and FinishReason, or Err).
type Event struct {
	Text         string          // newly decoded text (may be empty while a UTF-8 char or stop string is pending)
	Token        int32           // the sampled token (-1 on the final event)
	Sample       *sampler.Result // logprobs, when requested
	Done         bool
	FinishReason string
	Usage        Usage
	Err          error
	// AdapterVersion is the version of the adapter that produced the event
	// ("" for the base model), so clients can tell which one served them.
	AdapterVersion string
}

// Usage counts tokens, as OpenAI reports them.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	// CachedTokens are prompt tokens whose KV came from the prefix cache
	// (OpenAI's usage.prompt_tokens_details.cached_tokens).
	CachedTokens int
}

// Timing of a finished request, for metrics.
type Timing struct {
	Queued, Scheduled, FirstToken, Finished time.Time
}

// Errors the engine returns from Submit.
var (
	ErrOverloaded    = errors.New("server is overloaded: too many waiting requests")
	ErrClosed        = errors.New("engine is shut down")
	ErrPromptTooLong = errors.New("prompt is longer than the context")
	ErrEmptyPrompt   = errors.New("prompt is empty")
)

// Options size the scheduler.
type Options struct {
	MaxRunning int // sequences decoded together (default 16)
	// MaxRunningPerGroup caps the running sequences of one request group
	// (default MaxRunning/4, at least 1): a request with n: 128 runs a few
	// choices at a time and leaves room for the requests queued behind it.
	MaxRunningPerGroup int
	MaxWaiting         int // queued requests before ErrOverloaded (default 256)
	MaxBatchToken      int // tokens per forward pass, prefill chunks included (default 512)
	// MaxPrefillPerSeq caps the prompt tokens one sequence runs per step,
	// so that one long prompt does not take the whole budget (default
	// MaxBatchToken/2).
	MaxPrefillPerSeq int
	MaxModelLen      int // context length (default: the model's max_position_embeddings)
	// KVCacheBytes is the KV pool's budget, allocated at start (default:
	// MaxRunning sequences of MaxModelLen positions, at most 2 GiB).
	// MaxModelLen is lowered to what the pool holds.
	KVCacheBytes int64
	KVBlockSize  int // positions per KV block (default 16)
	// Observer, if set, is told about each step; it must not block.
	Observer Observer
}

// Observer receives scheduler events for metrics.
type Observer interface {
	// Queue reports the queue after each scheduling step, with the KV
	// pool's usage (0 to 1).
	Queue(running, waiting int, kvUsage float64)
	// Preempted counts a running sequence preempted for lack of KV blocks.
	Preempted()
	// PrefixCache counts a prefix-cache lookup: queried prompt tokens, of
	// which hit were cached.
	PrefixCache(queried, hit int)
	Finished(promptTokens, completionTokens int, t Timing, reason string)
	Token(first bool, sinceLast time.Duration)
}

// Engine owns a model and schedules requests onto it: one goroutine batches
// the tokens of all running sequences into each forward pass (continuous
// batching), so it is the model's only caller.
type Engine struct {
	loaded *llama.Loaded
	model  *llama.Model
	logits []float32 // the last forward pass's logits, reused by the next (the scheduler samples them first)
	tok    tokenizer.Tokenizer
	opts   Options
	eos    []int32
	pool   *kvpool.Pool

	mu      sync.Mutex
	waiting []*sequence
	closed  bool
	order   uint64 // admissions so far, for preemption order
	wake    chan struct{}
	done    chan struct{}
}

// sequence is the scheduler's state for one request.
type sequence struct {
	ctx    context.Context
	req    Request
	events *eventQueue
	prompt []int32 // all[:len(prompt)]
	all    []int32 // prompt and generated tokens; the KV holds all[:cache.Len()]
	tokens []int32 // all[len(prompt):], the generated tokens
	cache  *llama.KVCache
	seed   kvpool.Hash   // prefix-cache chain root: the adapter and its version
	hashes []kvpool.Hash // chain hashes of all's full blocks, as far as computed
	// promptKey identifies the prompt (with seed) to tell n > 1 choices of
	// one prompt apart from other requests.
	promptKey   kvpool.Hash
	cached      int   // prompt tokens served from the prefix cache at first admission
	admitted    bool  // admitted once (cached is set)
	slot        int32 // the adapter's LoRA slot while admitted, -1 = none
	preemptions int
	sampler     *sampler.Sampler
	decoder     *tokenizer.StreamDecoder
	stops       *sampler.StopMatcher
	mask        []uint64 // [ceil(vocab/64)] allowed next tokens, when constrained
	maskErr     error    // the constraint failed to compute the mask
	stopHit     bool     // a stop string ended the text
	finished    bool     // the final event was sent
	maxNew      int
	timing      Timing
	lastTime    time.Time
}

// NewEngine allocates the KV pool and starts the scheduler for a loaded
// model.
func NewEngine(l *llama.Loaded, opts Options) (*Engine, error) {
	if opts.MaxRunning <= 0 {
		opts.MaxRunning = 16
	}
	if opts.MaxRunningPerGroup <= 0 {
		opts.MaxRunningPerGroup = max(1, opts.MaxRunning/4)
	}
	if opts.MaxWaiting <= 0 {
		opts.MaxWaiting = 256
	}
	if opts.MaxBatchToken <= 0 {
		opts.MaxBatchToken = 512
	}
	if opts.MaxPrefillPerSeq <= 0 {
		opts.MaxPrefillPerSeq = max(1, opts.MaxBatchToken/2)
	}
	if opts.MaxModelLen <= 0 || opts.MaxModelLen > l.Model.Config.MaxPos {
		opts.MaxModelLen = l.Model.Config.MaxPos
	}
	if opts.KVBlockSize <= 0 {
		opts.KVBlockSize = kvpool.DefaultBlockSize
	}
	shape := l.Model.KVShape()
	if opts.KVCacheBytes <= 0 {
		opts.KVCacheBytes = min(2<<30, int64(opts.MaxRunning)*int64(opts.MaxModelLen)*shape.BytesPerPosition())
	}
	blocks := kvpool.BlocksFor(opts.KVCacheBytes, shape, opts.KVBlockSize)
	if blocks < 1 {
		return nil, fmt.Errorf("KV cache budget of %d bytes holds no block of %d positions (%d bytes each)",
			opts.KVCacheBytes, opts.KVBlockSize, shape.BytesPerPosition()*int64(opts.KVBlockSize))
	}
	pool, err := kvpool.New(l.Model.Backend, shape, opts.KVBlockSize, blocks)
	if err != nil {
		return nil, err
	}
	// A sequence must fit the pool alone (then preempting the others always
	// lets the oldest finish).
	opts.MaxModelLen = min(opts.MaxModelLen, blocks*opts.KVBlockSize)
	// Every buffer a step needs, at its largest (a step samples at most one
	// row per running sequence), allocated now: what the server measures
	// after start-up is then what it keeps.
	if err := l.Model.Reserve(opts.MaxBatchToken, opts.MaxRunning); err != nil {
		pool.Close()
		return nil, fmt.Errorf("activation buffers for %d tokens: %w", opts.MaxBatchToken, err)
	}
	e := &Engine{loaded: l, model: l.Model, tok: l.Tokenizer, opts: opts, eos: l.Model.Config.EOS, pool: pool,
		logits: make([]float32, 0, opts.MaxRunning*l.Model.Config.Vocab),
		wake:   make(chan struct{}, 1), done: make(chan struct{})}
	go e.loop()
	return e, nil
}

// KVCacheInfo describes the KV pool.
type KVCacheInfo struct {
	Blocks, BlockSize int
	Bytes             int64 // the pool's storage
	Positions         int   // Blocks × BlockSize
}

// KVCache describes the engine's KV pool.
func (e *Engine) KVCache() KVCacheInfo {
	bs := e.pool.BlockSize()
	return KVCacheInfo{Blocks: e.pool.NumBlocks(), BlockSize: bs, Positions: e.pool.NumBlocks() * bs,
		Bytes: int64(e.pool.NumBlocks()*bs) * e.pool.Shape().BytesPerPosition()}
}

// MaxModelLen is the context length requests are held to.
func (e *Engine) MaxModelLen() int { return e.opts.MaxModelLen }

// Loaded returns the model the engine serves.
func (e *Engine) Loaded() *llama.Loaded { return e.loaded }

// Tokenize turns a request's prompt into token ids.
func (e *Engine) Tokenize(req *Request) ([]int32, error) {
	switch {
	case len(req.PromptTokens) > 0:
		for _, id := range req.PromptTokens {
			if id < 0 || int(id) >= e.model.Config.Vocab {
				return nil, fmt.Errorf("token id %d outside vocabulary of %d", id, e.model.Config.Vocab)
			}
		}
		return req.PromptTokens, nil
	case req.Messages != nil:
		if e.loaded.Template == nil {
			return nil, errors.New("this model has no chat template; use the completions endpoint")
		}
		text, err := e.loaded.Template.Render(req.Messages, true)
		if err != nil {
			return nil, err
		}
		// The template already wrote BOS: add no special tokens.
		return e.tok.Encode(text, false)
	default:
		return e.tok.Encode(req.Prompt, true)
	}
}

// Submit queues a request. The returned channel yields events until one with
// Done set; cancelling ctx stops the generation and frees its cache at the
// next step.
func (e *Engine) Submit(ctx context.Context, req Request) (_ <-chan Event, err error) {
	defer func() {
		if err != nil && req.Adapter != nil {
			req.Adapter.Release()
		}
	}()
	prompt, err := e.Tokenize(&req)
	if err != nil {
		return nil, err
	}
	if len(prompt) == 0 {
		return nil, ErrEmptyPrompt
	}
	if len(prompt) >= e.opts.MaxModelLen {
		return nil, fmt.Errorf("%w: %d prompt tokens, context is %d", ErrPromptTooLong, len(prompt), e.opts.MaxModelLen)
	}
	if err := req.Sampling.Validate(e.model.Config.Vocab); err != nil {
		return nil, err
	}
	maxNew := e.opts.MaxModelLen - len(prompt)
	if req.MaxTokens > 0 && req.MaxTokens < maxNew {
		maxNew = req.MaxTokens
	}
	all := make([]int32, len(prompt), len(prompt)+min(maxNew, 4096))
	copy(all, prompt)
	seed := kvpool.Seed("", "")
	if req.Adapter != nil {
		seed = kvpool.Seed(req.Adapter.Name(), req.Adapter.Version())
	}
	s := &sequence{
		ctx: ctx, req: req, slot: -1, prompt: all[:len(prompt)], all: all, maxNew: maxNew,
		seed: seed, promptKey: kvpool.ChainHashes(seed, prompt, len(prompt), nil)[0],
		sampler: sampler.New(req.Sampling, e.model.Config.Vocab, prompt),
		decoder: tokenizer.NewStreamDecoder(e.tok, true),
		stops:   sampler.NewStopMatcher(req.Stop),
		timing:  Timing{Queued: time.Now()},
	}
	if err := s.decoder.Prime(prompt); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if len(e.waiting) >= e.opts.MaxWaiting {
		return nil, ErrOverloaded
	}
	s.events = newEventQueue()
	e.waiting = append(e.waiting, s)
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return s.events.ch, nil
}

// Close stops accepting requests, lets running ones finish, and returns when
// the scheduler has exited or ctx ends.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
	e.mu.Unlock()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop is the scheduler: plan, batch, forward, sample, repeat.
func (e *Engine) loop() {
	defer close(e.done)
	var running []*sequence // in admission order
	var batch llama.Batch
	var rows []*sequence // sequences whose logits come back, in batch order
	readerWait := time.NewTimer(readerPoll)
	readerWait.Stop()
	var masks sync.WaitGroup // the constrained rows' masks of a step
	lim := schedLimits{maxRunning: e.opts.MaxRunning, perGroup: e.opts.MaxRunningPerGroup,
		tokens: e.opts.MaxBatchToken, prefillCap: e.opts.MaxPrefillPerSeq, blockSize: e.pool.BlockSize()}
	pool := enginePool{e.pool}
	for {
		// Drop cancelled sequences first: before spending compute on them,
		// and before admission, so that their blocks and places go to
		// waiting requests now.
		running = slices.DeleteFunc(running, func(s *sequence) bool {
			if s.ctx.Err() != nil {
				e.finish(s, "", s.ctx.Err())
				return true
			}
			return false
		})
		e.mu.Lock()
		// A request cancelled while waiting leaves the queue at once.
		e.waiting = slices.DeleteFunc(e.waiting, func(s *sequence) bool {
			if s.ctx.Err() != nil {
				e.finish(s, "", s.ctx.Err())
				return true
			}
			return false
		})
		p := schedule(running, e.waiting, pool, lim)
		e.waiting = e.apply(&p, &running, e.waiting)
		nWaiting, closed := len(e.waiting), e.closed
		e.mu.Unlock()

		if e.opts.Observer != nil {
			e.opts.Observer.Queue(len(running), nWaiting, e.pool.Usage())
		}
		if len(running) == 0 {
			if closed && nWaiting == 0 {
				return
			}
			<-e.wake
			continue
		}
		batch.Reset()
		rows = rows[:0]
		for _, w := range p.work {
			if addWork(&batch, w) {
				rows = append(rows, w.s)
			}
		}
		if len(batch.Tokens) == 0 {
			// Every running sequence waits for its reader: nothing tells the
			// scheduler when a reader takes an event, so look again shortly.
			readerWait.Reset(readerPoll)
			select {
			case <-e.wake:
				readerWait.Stop()
			case <-readerWait.C:
			}
			continue
		}
		// Masks depend only on the tokens consumed so far, so they are
		// computed while the forward pass runs.
		e.startMasks(&masks, rows)
		logits, failed := e.forward(&batch, p.work)
		masks.Wait()
		for s, err := range failed {
			e.finish(s, "", err)
		}
		if logits != nil {
			for _, w := range p.work {
				if !w.s.finished {
					e.commit(w.s)
				}
			}
			// The logits are those of the rows that did not fail, in order.
			rows = slices.DeleteFunc(rows, func(s *sequence) bool { return failed[s] != nil })
			vocab := e.model.Config.Vocab
			for i, s := range rows {
				e.step(s, logits[i*vocab:(i+1)*vocab])
			}
		}
		running = slices.DeleteFunc(running, func(s *sequence) bool { return s.finished })
	}
}

// apply carries out a plan: preempted sequences free their blocks and go
// back to the front of the queue, admitted ones get a cache (on the blocks
// of their cached prefix), and every planned sequence gets the blocks its
// tokens need. It returns the queue left.
func (e *Engine) apply(p *plan, running *[]*sequence, waiting []*sequence) []*sequence {
	if len(p.preempt) > 0 {
		*running = slices.DeleteFunc(*running, func(s *sequence) bool { return slices.Contains(p.preempt, s) })
		requeue := make([]*sequence, 0, len(p.preempt)+len(waiting))
		for _, s := range slices.Backward(p.preempt) { // oldest first
			s.cache.Release()
			if s.req.Adapter != nil {
				s.req.Adapter.Drop() // a queued request holds no adapter slot
				s.slot = -1
			}
			s.preemptions++
			if e.opts.Observer != nil {
				e.opts.Observer.Preempted()
			}
			requeue = append(requeue, s)
		}
		waiting = append(requeue, waiting...)
	}
	if len(p.admit) > 0 {
		var noSlot []*sequence // admitted by the plan, but their adapter found no slot
		for _, s := range p.admit {
			if err := e.acquireSlot(s); err != nil {
				e.finish(s, "", err)
				continue
			}
			if s.slot < 0 && s.req.Adapter != nil {
				noSlot = append(noSlot, s)
			}
		}
		waiting = slices.DeleteFunc(waiting, func(s *sequence) bool {
			return slices.Contains(p.admit, s) && !slices.Contains(noSlot, s)
		})
		for _, s := range p.admit {
			if s.finished || slices.Contains(noSlot, s) {
				continue
			}
			if s.cache == nil {
				s.cache = llama.NewSeqCache(e.pool, e.opts.MaxModelLen)
			}
			hit := e.sharePrefix(s)
			if !s.admitted {
				s.admitted, s.cached = true, hit
				s.timing.Scheduled = time.Now()
			}
			e.order++
			*running = append(*running, s)
		}
	}
	p.work = slices.DeleteFunc(p.work, func(w work) bool { return w.s.finished || w.s.cache == nil || !slices.Contains(*running, w.s) })
	for _, w := range p.work {
		// The plan counted these blocks: Grow cannot fail here, but a
		// sequence it failed for would only be failed itself.
		if err := w.s.cache.Reserve(w.s.cache.Len() + w.n); err != nil {
			e.finish(w.s, "", fmt.Errorf("KV cache: %w", err))
		}
	}
	return waiting
}

// acquireSlot gives an admitted sequence its adapter's slot; s.slot stays
// -1 when every slot is held (it waits in the queue).
func (e *Engine) acquireSlot(s *sequence) error {
	if s.req.Adapter == nil || s.slot >= 0 {
		return nil
	}
	slot, ok, err := s.req.Adapter.Acquire()
	if err != nil {
		return fmt.Errorf("adapter %s: %w", s.req.Adapter.Name(), err)
	}
	if ok {
		s.slot = slot
	}
	return nil
}

// sharePrefix maps the cached blocks of s's longest cached prefix into its
// empty cache and returns the positions they hold.
func (e *Engine) sharePrefix(s *sequence) int {
	blocks, _ := e.pool.Match(s.hitChain(e.pool.BlockSize()))
	hit := len(blocks) * e.pool.BlockSize()
	if e.opts.Observer != nil {
		e.opts.Observer.PrefixCache(len(s.all), hit)
	}
	s.cache.Share(blocks, hit)
	return hit
}

// commit registers the full blocks s has computed in the prefix cache.
func (e *Engine) commit(s *sequence) {
	s.cache.Commit(s.chain(s.cache.Len(), e.pool.BlockSize()))
}

// chain is the hash chain of the full blocks of s.all[:n], memoized in
// s.hashes (s.all only grows, so the chain of a prefix never changes).
func (s *sequence) chain(n, blockSize int) []kvpool.Hash {
	s.hashes = kvpool.ChainHashes(s.seed, s.all[:n], blockSize, s.hashes)
	return s.hashes[:n/blockSize]
}

// hitChain is the chain of the blocks s may take from the prefix cache:
// whole blocks, leaving at least the last token to run for its logits
// (vLLM's get_computed_blocks does the same).
func (s *sequence) hitChain(blockSize int) []kvpool.Hash {
	return s.chain((len(s.all)-1)/blockSize*blockSize, blockSize)
}

// forward runs a batch. On an error (or a panic in a kernel, recovered)
// each sequence's tokens run again alone, so that only the sequences the
// error concerns fail: it returns the batch's logits when the batch ran,
// and the failed sequences with their errors.
func (e *Engine) forward(b *llama.Batch, work []work) ([]float32, map[*sequence]error) {
	logits, err := e.safeForward(b)
	if err == nil {
		return logits, nil
	}
	if len(work) == 1 {
		return nil, map[*sequence]error{work[0].s: fmt.Errorf("forward pass: %w", err)}
	}
	failed := map[*sequence]error{}
	var solo llama.Batch
	for _, w := range work {
		solo.Reset()
		s := w.s
		from := s.cache.Len()
		for i := range w.n {
			pos := from + i
			solo.AddWithAdapter(s.all[pos], int32(pos), s.cache, i == w.n-1, s.slot)
		}
		if _, err := e.safeForward(&solo); err != nil {
			failed[s] = fmt.Errorf("forward pass: %w", err)
		}
	}
	if len(failed) == 0 { // the batch failed as a whole: fail it as a whole
		for _, w := range work {
			failed[w.s] = fmt.Errorf("forward pass: %w", err)
		}
		return nil, failed
	}
	// Run the others once more together for their logits.
	b.Reset()
	var rows []*sequence
	for _, w := range work {
		if failed[w.s] != nil {
			continue
		}
		w.s.cache.Truncate(w.s.cache.Len() - w.n) // their tokens ran solo: run them again with logits in batch order
		if addWork(b, w) {
			rows = append(rows, w.s)
		}
	}
	if len(b.Tokens) == 0 {
		return nil, failed
	}
	logits, err = e.safeForward(b)
	if err != nil {
		for _, w := range work {
			if failed[w.s] == nil {
				failed[w.s] = fmt.Errorf("forward pass: %w", err)
			}
		}
		return nil, failed
	}
	return logits, failed
}

// ErrKernel wraps a panic raised inside the model or a backend op.
var ErrKernel = errors.New("internal error in the model's kernels")

// safeForward runs the model, turning a panic into an error.
func (e *Engine) safeForward(b *llama.Batch) (logits []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrKernel, r)
		}
	}()
	logits, err = e.model.ForwardInto(b, e.logits)
	if err == nil {
		e.logits = logits
	}
	return logits, err
}

// addWork appends w's tokens to b (the next ones of its sequence) and
// reports whether they end with the sequence's last token, whose logits
// are asked for: a row to sample.
func addWork(b *llama.Batch, w work) bool {
	s := w.s
	from := s.cache.Len()
	for i := range w.n {
		pos := from + i
		b.AddWithAdapter(s.all[pos], int32(pos), s.cache, pos == len(s.all)-1, s.slot)
	}
	return from+w.n == len(s.all)
}

// readerPoll is how often the scheduler looks for room again when every
// running sequence waits for its reader.
const readerPoll = 5 * time.Millisecond

// enginePool answers the scheduler's questions from the KV pool.
type enginePool struct{ p *kvpool.Pool }

func (ep enginePool) numFree() int { return ep.p.NumFree() }

func (ep enginePool) prefixHit(s *sequence) (int, int) {
	blocks, idle := ep.p.Match(s.hitChain(ep.p.BlockSize()))
	return len(blocks) * ep.p.BlockSize(), idle
}

func (ep enginePool) exclusive(s *sequence) int { return s.cache.Exclusive() }

// Sequence state, as the scheduler reads it.
func (s *sequence) computed() int {
	if s.cache == nil {
		return 0
	}
	return s.cache.Len()
}
func (s *sequence) heldBlocks() int {
	if s.cache == nil {
		return 0
	}
	return len(s.cache.Blocks())
}
func (s *sequence) pending() int { return len(s.all) - s.computed() }
func (s *sequence) ready() bool  { return s.events == nil || s.events.hasRoom() }

// startMasks computes, in the background, the masks of the rows whose
// sequences are constrained; wg.Wait waits for them.
func (e *Engine) startMasks(wg *sync.WaitGroup, rows []*sequence) {
	words := (e.model.Config.Vocab + 63) / 64
	for _, s := range rows {
		if c := s.req.Constraint; c != nil {
			if len(s.mask) != words {
				s.mask = make([]uint64, words)
			}
			wg.Go(func() { s.maskErr = c.FillMask(s.mask) })
		}
	}
}

// step samples one token for s and emits it; it finishes s when done.
func (e *Engine) step(s *sequence, logits []float32) {
	var mask []uint64 // nil: unconstrained
	if s.req.Constraint != nil {
		if s.maskErr != nil {
			e.finish(s, "", fmt.Errorf("output constraint: %w", s.maskErr))
			return
		}
		mask = s.mask
	}
	res := s.sampler.SampleMasked(logits, mask)
	if res.Token < 0 {
		e.finish(s, "", ErrNoAllowedToken)
		return
	}
	if c := s.req.Constraint; c != nil {
		if err := c.Consume(res.Token); err != nil {
			e.finish(s, "", fmt.Errorf("output constraint: %w", err))
			return
		}
	}
	now := time.Now()
	first := len(s.tokens) == 0
	if first {
		s.timing.FirstToken = now
	}
	if e.opts.Observer != nil {
		e.opts.Observer.Token(first, now.Sub(s.lastTime))
	}
	s.lastTime = now
	s.all = append(s.all, res.Token)
	s.prompt, s.tokens = s.all[:len(s.prompt)], s.all[len(s.prompt):]

	if !s.req.IgnoreEOS && slices.Contains(e.eos, res.Token) {
		e.emit(s, Event{Token: res.Token, Sample: sampleOf(s, res)})
		e.finish(s, FinishStop, nil)
		return
	}
	piece, err := s.decoder.Add(res.Token)
	if err != nil {
		e.finish(s, "", err)
		return
	}
	text, stopped := s.stops.Push(piece)
	s.stopHit = stopped
	e.emit(s, Event{Text: text, Token: res.Token, Sample: sampleOf(s, res)})
	switch {
	case stopped:
		e.finish(s, FinishStop, nil)
	case len(s.tokens) >= s.maxNew:
		e.finish(s, FinishLength, nil)
	}
}

func sampleOf(s *sequence, r sampler.Result) *sampler.Result {
	if !s.req.Sampling.Logprobs {
		return nil
	}
	r.Top = slices.Clone(r.Top) // the sampler reuses its buffer
	return &r
}

func (e *Engine) emit(s *sequence, ev Event) {
	ev.Usage = Usage{PromptTokens: len(s.prompt), CompletionTokens: len(s.tokens), CachedTokens: s.cached}
	if s.req.Adapter != nil {
		ev.AdapterVersion = s.req.Adapter.Version()
	}
	s.events.push(ev)
}

// finish sends the final event, closes the stream and frees the cache.
func (e *Engine) finish(s *sequence, reason string, err error) {
	if s.finished {
		return
	}
	s.finished = true
	// Emit what the decoder and stop matcher still hold back, unless a stop
	// string ended the text.
	tail := ""
	if err == nil && !s.stopHit {
		text, stopped := s.stops.Push(s.decoder.Flush())
		tail = text
		if !stopped {
			tail += s.stops.Flush()
		}
	}
	s.timing.Finished = time.Now()
	ev := Event{Token: -1, Text: tail, Done: true, FinishReason: reason, Err: err}
	// The blocks go back to the pool before the final event is sent, so a
	// reader that has seen Done finds them free.
	if s.cache != nil {
		s.cache.Release()
	}
	e.emit(s, ev)
	if s.req.Adapter != nil {
		s.req.Adapter.Release()
	}
	if e.opts.Observer != nil {
		e.opts.Observer.Finished(len(s.prompt), len(s.tokens), s.timing, reason)
	}
}
