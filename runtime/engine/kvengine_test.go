package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/runtime/llama"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

// countingObserver counts the scheduler's KV events.
type countingObserver struct {
	mu           sync.Mutex
	preempted    int
	queried, hit int
	maxUsage     float64
}

func (o *countingObserver) Queue(running, waiting int, usage float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.maxUsage = max(o.maxUsage, usage)
}
func (o *countingObserver) Preempted() { o.mu.Lock(); o.preempted++; o.mu.Unlock() }
func (o *countingObserver) PrefixCache(q, h int) {
	o.mu.Lock()
	o.queried += q
	o.hit += h
	o.mu.Unlock()
}
func (o *countingObserver) Finished(int, int, Timing, string) {}
func (o *countingObserver) Token(bool, time.Duration)         {}

// blockBytes is the KV budget of n blocks of the default size.
func blockBytes(m *llama.Model, n int) int64 {
	return int64(n*16) * m.KVShape().BytesPerPosition()
}

// run submits every request at once and returns each one's text and final event.
func run(t *testing.T, e *Engine, reqs []Request) ([]string, []Event) {
	t.Helper()
	chans := make([]<-chan Event, len(reqs))
	for i, r := range reqs {
		ch, err := e.Submit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		chans[i] = ch
	}
	texts, finals := make([]string, len(reqs)), make([]Event, len(reqs))
	for i, ch := range chans {
		var sb strings.Builder
		for ev := range ch {
			sb.WriteString(ev.Text)
			finals[i] = ev
		}
		texts[i] = sb.String()
	}
	return texts, finals
}

func storyRequests(n, maxTokens int) []Request {
	starts := []string{"Once upon a time", "Lily and Ben", "The cat", "One day, a little", "Tom had a big", "The sun was"}
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Prompt: starts[i%len(starts)], MaxTokens: maxTokens, IgnoreEOS: true, Sampling: greedy}
	}
	return reqs
}

// Six sequences of ~60 positions each in a pool of 8 blocks (128
// positions): the pool cannot hold them together, so the scheduler
// preempts and later recomputes; every request still produces exactly the
// text it produces alone.
func TestPreemptedSequencesFinishWithTheirSoloText(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	reqs := storyRequests(6, 56)
	solo := mustEngine(t, l, Options{MaxRunning: 1})
	want := make([]string, len(reqs))
	for i, r := range reqs {
		want[i], _ = generate(t, solo, r)
	}
	solo.Close(context.Background())

	obs := &countingObserver{}
	e := mustEngine(t, l, Options{MaxRunning: 6, KVCacheBytes: blockBytes(l.Model, 8), Observer: obs})
	defer e.Close(context.Background())
	if e.MaxModelLen() != 128 {
		t.Fatalf("max model len %d, want 128 (what the pool holds)", e.MaxModelLen())
	}
	got, finals := run(t, e, reqs)
	for i := range reqs {
		if finals[i].Err != nil {
			t.Fatalf("request %d failed: %v", i, finals[i].Err)
		}
		if got[i] != want[i] {
			t.Errorf("request %d: %q, alone %q", i, got[i], want[i])
		}
	}
	if obs.preempted == 0 {
		t.Fatal("no sequence was preempted: the test did not exercise preemption")
	}
	if obs.maxUsage > 1 || obs.maxUsage < 0.9 {
		t.Errorf("KV usage peaked at %v, want (0.9, 1]", obs.maxUsage)
	}
	if e.pool.NumFree() != e.pool.NumBlocks() {
		t.Errorf("%d of %d blocks free after every request finished", e.pool.NumFree(), e.pool.NumBlocks())
	}
	t.Logf("%d preemptions", obs.preempted)
}

// A prompt longer than the pool is refused at Submit, not run out of memory.
func TestPromptLongerThanThePoolIsRefused(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{KVCacheBytes: blockBytes(l.Model, 2)})
	defer e.Close(context.Background())
	_, err := e.Submit(context.Background(), Request{PromptTokens: make([]int32, 40), Sampling: greedy})
	if !errors.Is(err, ErrPromptTooLong) {
		t.Fatalf("a 40-token prompt with 32 positions of KV: %v, want ErrPromptTooLong", err)
	}
	if _, err := NewEngine(l, Options{KVCacheBytes: 100}); err == nil {
		t.Fatal("a budget smaller than one block was accepted")
	}
}

func TestPrefixCacheSharesBlocksAndReportsCachedTokens(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	obs := &countingObserver{}
	e := mustEngine(t, l, Options{Observer: obs})
	defer e.Close(context.Background())
	prompt := make([]int32, 40)
	for i := range prompt {
		prompt[i] = int32(1 + i*7%400)
	}
	req := Request{PromptTokens: prompt, MaxTokens: 10, Sampling: greedy}
	first, evs := generate(t, e, req)
	if c := evs[len(evs)-1].Usage.CachedTokens; c != 0 {
		t.Fatalf("first request: %d cached tokens", c)
	}
	second, evs := generate(t, e, req)
	// (40-1)/16 = 2 whole blocks: the last token always runs for its logits.
	if c := evs[len(evs)-1].Usage.CachedTokens; c != 32 {
		t.Fatalf("second request: %d cached tokens, want 32", c)
	}
	if first != second {
		t.Fatalf("cached prefix changed the output: %q, then %q", first, second)
	}
	// A longer prompt sharing the first 40 tokens and the 10 generated:
	// multi-turn history reuses the blocks its first turn filled.
	turn2 := append(slices.Clone(prompt), evs[0].Token)
	for _, ev := range evs[1 : len(evs)-1] {
		turn2 = append(turn2, ev.Token)
	}
	turn2 = append(turn2, 5, 6, 7)
	_, evs = generate(t, e, Request{PromptTokens: turn2, MaxTokens: 2, Sampling: greedy})
	if c := evs[len(evs)-1].Usage.CachedTokens; c != 48 {
		t.Errorf("second turn of %d tokens: %d cached, want 48 (the first turn's three full blocks)", len(turn2), c)
	}
	// Without a cache, the same output: compare with a fresh engine.
	fresh := mustEngine(t, l, Options{})
	defer fresh.Close(context.Background())
	alone, _ := generate(t, fresh, req)
	if alone != second {
		t.Errorf("fresh engine %q, cached %q", alone, second)
	}
	if obs.hit != 32+48 || obs.queried != 40+40+len(turn2) {
		t.Errorf("observer: %d queried, %d hit", obs.queried, obs.hit)
	}
}

// n choices of one prompt prefill it once: the first computes it, the
// others are admitted once its blocks are committed and share them.
func TestChoicesOfOnePromptPrefillOnce(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	obs := &countingObserver{}
	e := mustEngine(t, l, Options{Observer: obs, MaxRunningPerGroup: 4})
	defer e.Close(context.Background())
	prompt := make([]int32, 50)
	for i := range prompt {
		prompt[i] = int32(3 + i*11%300)
	}
	seed := uint64(3)
	reqs := make([]Request, 4)
	for i := range reqs {
		reqs[i] = Request{PromptTokens: prompt, MaxTokens: 8, Group: "n4", Sampling: greedy}
	}
	reqs[3].Sampling = greedyOr(seed)
	_, finals := run(t, e, reqs)
	var cached []int
	for _, f := range finals {
		cached = append(cached, f.Usage.CachedTokens)
	}
	slices.Sort(cached)
	if !slices.Equal(cached, []int{0, 48, 48, 48}) {
		t.Errorf("cached tokens per choice %v, want [0 48 48 48]", cached)
	}
}

func greedyOr(seed uint64) sampler.Params {
	p := greedy
	p.Seed = &seed
	return p
}

// fakeLease claims an adapter already installed in a slot.
type fakeLease struct {
	name, version string
	slot          int32
}

func (f *fakeLease) Name() string                  { return f.name }
func (f *fakeLease) Version() string               { return f.version }
func (f *fakeLease) Acquire() (int32, bool, error) { return f.slot, true, nil }
func (f *fakeLease) Drop()                         {}
func (f *fakeLease) Release()                      {}

// After an adapter is reloaded into its slot (a new version), requests
// never reuse KV its old version computed, nor the base model's.
func TestReloadedAdapterNeverReusesOldVersionKV(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	m := l.Model
	ls, err := m.EnableLoRA(1, 8)
	if err != nil {
		t.Fatal(err)
	}
	installRandom(t, m, ls, 0, 11) // v1
	e := mustEngine(t, l, Options{})
	defer e.Close(context.Background())
	prompt := make([]int32, 40)
	for i := range prompt {
		prompt[i] = int32(2 + i*5%350)
	}
	req := func(lease AdapterClaim) Request {
		return Request{PromptTokens: prompt, MaxTokens: 12, Sampling: greedy, Adapter: lease}
	}
	base, _ := generate(t, e, req(nil))
	a1, evs := generate(t, e, req(&fakeLease{"pirate", "v1", 0}))
	if c := evs[len(evs)-1].Usage.CachedTokens; c != 0 {
		t.Fatalf("adapter request reused %d tokens of the base model's KV", c)
	}
	if a1 == base {
		t.Fatal("the adapter does not change the output: the test cannot tell KV apart")
	}
	if again, evs := generate(t, e, req(&fakeLease{"pirate", "v1", 0})); again != a1 || evs[len(evs)-1].Usage.CachedTokens != 32 {
		t.Fatalf("same version: %q with %d cached, want %q with 32", again, evs[len(evs)-1].Usage.CachedTokens, a1)
	}

	installRandom(t, m, ls, 0, 12) // the reload: v2, same name and slot, new weights
	a2, evs := generate(t, e, req(&fakeLease{"pirate", "v2", 0}))
	if c := evs[len(evs)-1].Usage.CachedTokens; c != 0 {
		t.Fatalf("v2 reused %d tokens of KV computed by v1", c)
	}
	// What v2 produces from scratch, in an engine that never saw v1.
	fresh := mustEngine(t, l, Options{})
	defer fresh.Close(context.Background())
	want, _ := generate(t, fresh, req(&fakeLease{"pirate", "v2", 0}))
	if a2 != want {
		t.Errorf("v2 after v1: %q, v2 alone: %q", a2, want)
	}
}

// panicky panics in Embed when it sees a poisoned token, as a kernel with
// a bug might.
type panicky struct {
	*cpu.Backend
	poison int32
}

func (p *panicky) Embed(out kernels.Buf, table kernels.Matrix, ids kernels.IntBuf) {
	if slices.Contains(ids.Host(), p.poison) {
		panic(fmt.Sprintf("kernel fault on token %d", p.poison))
	}
	p.Backend.Embed(out, table, ids)
}

// A panic inside a kernel fails the requests it concerns; the others in
// the same batch finish as they would alone, and the engine keeps serving.
func TestKernelPanicFailsOnlyItsRequests(t *testing.T) {
	be := &panicky{Backend: cpu.New(2), poison: 99}
	t.Cleanup(be.Close)
	l, err := llama.Load(storiesDir, llama.LoadOptions{Quantize: llama.QuantNF4, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	e := mustEngine(t, l, Options{})
	defer e.Close(context.Background())
	good := Request{PromptTokens: []int32{1, 20, 30}, MaxTokens: 15, IgnoreEOS: true, Sampling: greedy}
	want, _ := generate(t, e, good)
	bad := Request{PromptTokens: []int32{1, 99, 30}, MaxTokens: 15, Sampling: greedy}
	texts, finals := run(t, e, []Request{good, bad, good})
	if !errors.Is(finals[1].Err, ErrKernel) {
		t.Errorf("poisoned request ended with %v, want ErrKernel", finals[1].Err)
	}
	for _, i := range []int{0, 2} {
		if finals[i].Err != nil || texts[i] != want {
			t.Errorf("request %d beside the poisoned one: %q (%v), want %q", i, texts[i], finals[i].Err, want)
		}
	}
	if after, _ := generate(t, e, good); after != want {
		t.Errorf("after the panic: %q, want %q", after, want)
	}
}

// recordingClaim is a claim on slot 0 that records when it holds it.
type recordingClaim struct {
	mu                      sync.Mutex
	held                    bool
	acquires, drops, starts int
}

func (c *recordingClaim) Name() string    { return "rec" }
func (c *recordingClaim) Version() string { return "1" }
func (c *recordingClaim) Acquire() (int32, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = true
	c.acquires++
	return 0, true, nil
}
func (c *recordingClaim) Drop()    { c.mu.Lock(); c.held = false; c.drops++; c.mu.Unlock() }
func (c *recordingClaim) Release() { c.mu.Lock(); c.held = false; c.mu.Unlock() }
func (c *recordingClaim) holds() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// Adapter slots are taken by the scheduler when it admits a request: a
// queued request holds none, and a preempted one gives its slot back until
// it resumes.
func TestQueuedAndPreemptedRequestsHoldNoAdapterSlot(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	ls, err := l.Model.EnableLoRA(1, 8)
	if err != nil {
		t.Fatal(err)
	}
	installRandom(t, l.Model, ls, 0, 5)

	e := mustEngine(t, l, Options{MaxRunning: 1})
	ctx, cancel := context.WithCancel(context.Background())
	first := &recordingClaim{}
	ch1, err := e.Submit(ctx, Request{PromptTokens: []int32{1, 2}, MaxTokens: 400, IgnoreEOS: true, Sampling: greedy, Adapter: first})
	if err != nil {
		t.Fatal(err)
	}
	<-ch1 // running
	second := &recordingClaim{}
	ch2, err := e.Submit(context.Background(), Request{PromptTokens: []int32{1, 3}, MaxTokens: 3, Sampling: greedy, Adapter: second})
	if err != nil {
		t.Fatal(err)
	}
	if !first.holds() || second.holds() {
		t.Fatalf("first holds a slot: %v, queued second holds one: %v", first.holds(), second.holds())
	}
	cancel()
	for range ch1 {
	}
	for range ch2 {
	}
	if first.holds() || second.holds() || second.acquires != 1 {
		t.Fatalf("after both ended: held %v %v, second acquired %d times", first.holds(), second.holds(), second.acquires)
	}
	e.Close(context.Background())

	// Preemption: six adapter requests in a pool too small for them.
	e = mustEngine(t, l, Options{MaxRunning: 6, KVCacheBytes: blockBytes(l.Model, 8)})
	defer e.Close(context.Background())
	reqs := storyRequests(6, 56)
	claims := make([]*recordingClaim, len(reqs))
	for i := range reqs {
		claims[i] = &recordingClaim{}
		reqs[i].Adapter = claims[i]
	}
	_, finals := run(t, e, reqs)
	drops := 0
	for i, c := range claims {
		if finals[i].Err != nil {
			t.Fatal(finals[i].Err)
		}
		if c.acquires != c.drops+1 {
			t.Errorf("request %d: %d acquires for %d preemptions", i, c.acquires, c.drops)
		}
		drops += c.drops
	}
	if drops == 0 {
		t.Error("no request was preempted: the test did not exercise preemption")
	}
}
