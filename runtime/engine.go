package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parrot-llm/parrot/runtime/chat"
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
	// Adapter pins the LoRA adapter to apply (nil = base model). The engine
	// owns it from Submit on and releases it when the request ends, also
	// when Submit fails.
	Adapter AdapterLease
	// Constraint, if set, restricts the tokens this sequence may sample
	// (structured outputs: a JSON schema, a regular expression...). It is
	// the sequence's own: give each of n choices a copy.
	Constraint Constraint
	// Group ties the sequences of one API request together (its n choices
	// and prompts), so that at most EngineOptions.MaxRunningPerGroup of them
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

// AdapterLease is a resident adapter held for one request.
type AdapterLease interface {
	Slot() int32     // the adapter's slot in the model's LoRASlots
	Version() string // the adapter version the slot holds
	Release()
}

func (r *Request) slot() int32 {
	if r.Adapter == nil {
		return -1
	}
	return r.Adapter.Slot()
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

// EngineOptions size the scheduler.
type EngineOptions struct {
	MaxRunning int // sequences decoded together (default 16)
	// MaxRunningPerGroup caps the running sequences of one request group
	// (default MaxRunning/4, at least 1): a request with n: 128 runs a few
	// choices at a time and leaves room for the requests queued behind it.
	MaxRunningPerGroup int
	MaxWaiting         int // queued requests before ErrOverloaded (default 256)
	MaxBatchToken      int // tokens per forward pass, prefill chunks included (default 512)
	MaxModelLen        int // context length (default: the model's max_position_embeddings)
	// Observer, if set, is told about each step; it must not block.
	Observer Observer
}

// Observer receives scheduler events for metrics.
type Observer interface {
	Queue(running, waiting int)
	Finished(promptTokens, completionTokens int, t Timing, reason string)
	Token(first bool, sinceLast time.Duration)
}

// Engine owns a model and schedules requests onto it: one goroutine batches
// the tokens of all running sequences into each forward pass (continuous
// batching), so it is the model's only caller.
type Engine struct {
	loaded *Loaded
	model  *Model
	tok    tokenizer.Tokenizer
	opts   EngineOptions
	eos    []int32

	mu      sync.Mutex
	waiting []*sequence
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

// sequence is the scheduler's state for one request.
type sequence struct {
	ctx      context.Context
	req      Request
	events   *eventQueue
	prompt   []int32
	cache    *KVCache
	fed      int     // prompt tokens already run through the model
	last     int32   // last sampled token, fed at the next step
	tokens   []int32 // generated tokens
	sampler  *sampler.Sampler
	decoder  *tokenizer.StreamDecoder
	stops    *sampler.StopMatcher
	mask     []uint64 // [ceil(vocab/64)] allowed next tokens, when constrained
	maskErr  error    // the constraint failed to compute the mask
	stopHit  bool     // a stop string ended the text
	finished bool     // the final event was sent
	maxNew   int
	timing   Timing
	lastTime time.Time
}

// NewEngine starts the scheduler for a loaded model.
func NewEngine(l *Loaded, opts EngineOptions) *Engine {
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
	if opts.MaxModelLen <= 0 || opts.MaxModelLen > l.Model.Config.MaxPos {
		opts.MaxModelLen = l.Model.Config.MaxPos
	}
	e := &Engine{loaded: l, model: l.Model, tok: l.Tokenizer, opts: opts, eos: l.Model.Config.EOS,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go e.loop()
	return e
}

// MaxModelLen is the context length requests are held to.
func (e *Engine) MaxModelLen() int { return e.opts.MaxModelLen }

// Loaded returns the model the engine serves.
func (e *Engine) Loaded() *Loaded { return e.loaded }

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
	s := &sequence{
		ctx: ctx, req: req, prompt: prompt, maxNew: maxNew,
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

// loop is the scheduler: admit, batch, forward, sample, repeat.
func (e *Engine) loop() {
	defer close(e.done)
	var running []*sequence
	var batch Batch
	var rows []*sequence // sequences whose logits come back, in batch order
	readerWait := time.NewTimer(readerPoll)
	readerWait.Stop()
	var masks sync.WaitGroup // the constrained rows' masks of a step
	for {
		// Drop cancelled sequences first: before spending compute on them,
		// and before admission, so that their places go to waiting requests
		// now (an idle engine would not look again until a new Submit).
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
		var admitted []*sequence
		admitted, e.waiting = admit(running, e.waiting, e.opts.MaxRunning, e.opts.MaxRunningPerGroup)
		for _, s := range admitted {
			s.cache = e.model.NewKVCache(e.opts.MaxModelLen)
			s.timing.Scheduled = time.Now()
			running = append(running, s)
		}
		nWaiting, closed := len(e.waiting), e.closed
		e.mu.Unlock()

		if e.opts.Observer != nil {
			e.opts.Observer.Queue(len(running), nWaiting)
		}
		if len(running) == 0 {
			if closed && nWaiting == 0 {
				return
			}
			<-e.wake
			continue
		}

		// Decode tokens first (one each), then prompt chunks in the budget
		// left. A sequence whose reader lags behind waits for it.
		batch.Reset()
		rows = rows[:0]
		budget := e.opts.MaxBatchToken
		for _, s := range running {
			if s.fed == len(s.prompt) && s.events.hasRoom() {
				batch.AddWithAdapter(s.last, int32(len(s.prompt)+len(s.tokens)-1), s.cache, true, s.req.slot())
				rows = append(rows, s)
				budget--
			}
		}
		for _, s := range running {
			if s.fed == len(s.prompt) || budget <= 0 || !s.events.hasRoom() {
				continue
			}
			n := min(budget, len(s.prompt)-s.fed)
			for i := range n {
				p := s.fed + i
				last := p == len(s.prompt)-1
				batch.AddWithAdapter(s.prompt[p], int32(p), s.cache, last, s.req.slot())
				if last {
					rows = append(rows, s)
				}
			}
			s.fed += n
			budget -= n
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
		logits, err := e.model.Forward(&batch)
		masks.Wait()
		if err != nil {
			for _, s := range running {
				e.finish(s, "", fmt.Errorf("forward pass: %w", err))
			}
			running = running[:0]
			continue
		}
		vocab := e.model.Config.Vocab
		for i, s := range rows {
			e.step(s, logits[i*vocab:(i+1)*vocab])
		}
		running = slices.DeleteFunc(running, func(s *sequence) bool { return s.finished })
	}
}

// readerPoll is how often the scheduler looks for room again when every
// running sequence waits for its reader.
const readerPoll = 5 * time.Millisecond

// admit picks the waiting sequences to start, first come first served,
// while fewer than maxRunning run and fewer than perGroup of their request
// group do; a sequence whose group is full keeps its place in the queue and
// later ones may pass it. It returns the admitted sequences and the queue
// left.
func admit(running, waiting []*sequence, maxRunning, perGroup int) (admitted, left []*sequence) {
	if len(running) >= maxRunning || len(waiting) == 0 {
		return nil, waiting
	}
	inGroup := map[string]int{}
	for _, s := range running {
		if s.req.Group != "" {
			inGroup[s.req.Group]++
		}
	}
	left = waiting[:0:0]
	for _, s := range waiting {
		g := s.req.Group
		if len(running)+len(admitted) >= maxRunning || (g != "" && inGroup[g] >= perGroup) {
			left = append(left, s)
			continue
		}
		if g != "" {
			inGroup[g]++
		}
		admitted = append(admitted, s)
	}
	return admitted, left
}

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
	s.tokens = append(s.tokens, res.Token)
	s.last = res.Token

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
	ev.Usage = Usage{PromptTokens: len(s.prompt), CompletionTokens: len(s.tokens)}
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
	e.emit(s, ev)
	s.cache = nil
	if s.req.Adapter != nil {
		s.req.Adapter.Release()
	}
	if e.opts.Observer != nil {
		e.opts.Observer.Finished(len(s.prompt), len(s.tokens), s.timing, reason)
	}
}
