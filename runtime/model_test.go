package runtime

import (
	"context"
	"math"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/kernels/ref"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

const storiesDir = "../testdata/stories260K"

// The greedy story published with stories260K (llama2.c doc/stories260K.md,
// `./run stories260K.bin -z tok512.bin -t 0.0`).
const publishedStory = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
Lily didn't want to help her mom, so she said, "I'm sorry, mom. I didn't know what to do." Her mom said, "Don't worry, Lily. We can help you.`

var greedy = sampler.Params{Temperature: 0, TopP: 1}

func loadStories(t testing.TB, quantize string) *Loaded {
	t.Helper()
	be := cpu.New(2)
	t.Cleanup(be.Close)
	l, err := Load(storiesDir, LoadOptions{Quantize: quantize, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// generate runs one request through a fresh engine and returns its text.
func generate(t testing.TB, e *Engine, req Request) (string, []Event) {
	t.Helper()
	ch, err := e.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	var evs []Event
	for ev := range ch {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		sb.WriteString(ev.Text)
		evs = append(evs, ev)
	}
	return sb.String(), evs
}

func TestStoriesGreedyReproducesPublishedStory(t *testing.T) {
	l := loadStories(t, QuantNone)
	e := mustEngine(t, l, EngineOptions{})
	defer e.Close(context.Background())
	// run.c -n 256 samples 256 tokens after BOS; the published text is exactly that.
	text, evs := generate(t, e, Request{PromptTokens: []int32{l.Model.Config.BOS}, MaxTokens: 256, IgnoreEOS: true, Sampling: greedy})
	if text != publishedStory {
		n := 0
		for n < len(text) && n < len(publishedStory) && text[n] == publishedStory[n] {
			n++
		}
		t.Fatalf("greedy story diverges at byte %d:\n got: %q\nwant: %q", n, text[n:min(len(text), n+80)], publishedStory[n:min(len(publishedStory), n+80)])
	}
	last := evs[len(evs)-1]
	if last.FinishReason != FinishLength || last.Usage.CompletionTokens != 256 || last.Usage.PromptTokens != 1 {
		t.Fatalf("final event %+v", last)
	}
}

func TestStoriesNF4TellsAStory(t *testing.T) {
	l := loadStories(t, QuantNF4)
	e := mustEngine(t, l, EngineOptions{})
	defer e.Close(context.Background())
	text, _ := generate(t, e, Request{PromptTokens: []int32{l.Model.Config.BOS}, MaxTokens: 120, IgnoreEOS: true, Sampling: greedy})
	t.Logf("NF4 story: %s", text)
	// Coherent: starts like a story, is made of common words, has sentences.
	if !strings.HasPrefix(text, "Once upon a time") {
		t.Fatalf("NF4 story does not start like a story: %q", text)
	}
	words := strings.Fields(text)
	common := map[string]bool{"the": true, "a": true, "to": true, "and": true, "was": true, "she": true, "She": true, "he": true, "He": true, "her": true, "with": true, "play": true}
	hits := 0
	for _, w := range words {
		if common[strings.Trim(w, ".,!\"")] {
			hits++
		}
	}
	if len(words) < 40 || hits*8 < len(words) || strings.Count(text, ".") < 3 {
		t.Fatalf("NF4 story looks incoherent (%d words, %d common): %q", len(words), hits, text)
	}
}

// A batch mixing prefill chunks and decode tokens of several sequences must
// give each sequence the logits it gets alone, and the fast backend must
// match the reference backend.
func TestBatchedForwardEqualsSolo(t *testing.T) {
	for _, quantize := range []string{QuantNone, QuantNF4} {
		l := loadStories(t, quantize)
		m := l.Model
		prompts := [][]int32{{1, 100, 200, 300, 7}, {1, 45}, {1, 400, 401, 402, 403, 404, 405, 406}}
		solo := make([][]float32, len(prompts))
		for i, p := range prompts {
			cache := mustCache(t, m, 0)
			var b Batch
			for pos, tok := range p {
				b.Add(tok, int32(pos), cache, pos == len(p)-1)
			}
			logits, err := m.Forward(&b)
			if err != nil {
				t.Fatal(err)
			}
			solo[i] = logits
		}
		// Batched: sequence 0 prefilled in two chunks, others interleaved.
		caches := sharedCaches(t, m, 3, 0)
		var b Batch
		for pos := 0; pos < 3; pos++ {
			b.Add(prompts[0][pos], int32(pos), caches[0], false)
		}
		b.Add(prompts[1][0], 0, caches[1], false)
		if _, err := m.Forward(&b); err != nil {
			t.Fatal(err)
		}
		b.Reset()
		b.Add(prompts[1][1], 1, caches[1], true)
		for pos := 3; pos < 5; pos++ {
			b.Add(prompts[0][pos], int32(pos), caches[0], pos == 4)
		}
		for pos, tok := range prompts[2] {
			b.Add(tok, int32(pos), caches[2], pos == len(prompts[2])-1)
		}
		logits, err := m.Forward(&b)
		if err != nil {
			t.Fatal(err)
		}
		V := m.Config.Vocab
		for row, seq := range []int{1, 0, 2} {
			if d := maxAbsDiff(logits[row*V:(row+1)*V], solo[seq]); d > 1e-4 {
				t.Errorf("%s: sequence %d batched differs from solo by %g", quantize, seq, d)
			}
		}

		// Fast backend against the naive reference on the same batch.
		refModel := mustModel(t, m.Config, m.Weights, ref.New())
		cache := mustCache(t, refModel, 0)
		var rb Batch
		for pos, tok := range prompts[2] {
			rb.Add(tok, int32(pos), cache, pos == len(prompts[2])-1)
		}
		refLogits, err := refModel.Forward(&rb)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(refLogits, solo[2]); d > 1e-4 {
			t.Errorf("%s: cpu backend differs from ref by %g", quantize, d)
		}
	}
}

func TestForwardRejectsBadBatches(t *testing.T) {
	l := loadStories(t, QuantNF4)
	m := l.Model
	cache := mustCache(t, m, 0)
	cases := map[string]Batch{
		"token out of vocab": {Tokens: []int32{9999}, Pos: []int32{0}, Caches: []*KVCache{cache}},
		"gap in positions":   {Tokens: []int32{1}, Pos: []int32{3}, Caches: []*KVCache{cache}},
		"no cache":           {Tokens: []int32{1}, Pos: []int32{0}, Caches: []*KVCache{nil}},
		"length mismatch":    {Tokens: []int32{1, 2}, Pos: []int32{0}, Caches: []*KVCache{cache}},
	}
	for name, b := range cases {
		if _, err := m.Forward(&b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	small := mustCache(t, m, 4)
	var b Batch
	for pos := range 5 {
		b.Add(1, int32(pos), small, false)
	}
	if _, err := m.Forward(&b); err == nil || !strings.Contains(err.Error(), "context length") {
		t.Errorf("overflowing the cache: %v", err)
	}
}

func TestEngineConcurrentRequestsMatchSolo(t *testing.T) {
	l := loadStories(t, QuantNF4)
	seed := uint64(7)
	reqs := []Request{
		{Prompt: "Once upon a time", MaxTokens: 30, Sampling: sampler.Params{Temperature: 0, TopP: 1}},
		{Prompt: "Lily and Ben", MaxTokens: 25, Sampling: sampler.Params{Temperature: 0.8, MinP: 0.05, TopP: 1, Seed: &seed}},
		{Prompt: "The cat", MaxTokens: 20, Stop: []string{"."}, Sampling: sampler.Params{Temperature: 0, TopP: 1}},
	}
	solo := make([]string, len(reqs))
	e := mustEngine(t, l, EngineOptions{MaxRunning: 1})
	for i, r := range reqs {
		solo[i], _ = generate(t, e, r)
	}
	e.Close(context.Background())

	e = mustEngine(t, l, EngineOptions{MaxRunning: 8, MaxBatchToken: 3}) // small budget: chunked prefill
	defer e.Close(context.Background())
	chans := make([]<-chan Event, len(reqs))
	for i, r := range reqs {
		ch, err := e.Submit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		chans[i] = ch
	}
	for i, ch := range chans {
		var sb strings.Builder
		for ev := range ch {
			sb.WriteString(ev.Text)
		}
		if sb.String() != solo[i] {
			t.Errorf("request %d: concurrent %q, solo %q", i, sb.String(), solo[i])
		}
	}
	if strings.Contains(solo[2], ".") {
		t.Errorf("stop string leaked into the output: %q", solo[2])
	}
}

func TestEngineCancellationFreesSequence(t *testing.T) {
	l := loadStories(t, QuantNF4)
	e := mustEngine(t, l, EngineOptions{})
	defer e.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := e.Submit(ctx, Request{Prompt: "Once", MaxTokens: 400, IgnoreEOS: true, Sampling: greedy})
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	cancel()
	var last Event
	n := 0
	for ev := range ch {
		last = ev
		n++
	}
	if !last.Done || last.Err == nil || n > 400 {
		t.Fatalf("cancelled stream ended with %+v after %d events", last, n)
	}
}

func TestEngineRejectsLongPrompt(t *testing.T) {
	l := loadStories(t, QuantNF4)
	e := mustEngine(t, l, EngineOptions{MaxModelLen: 8})
	defer e.Close(context.Background())
	_, err := e.Submit(context.Background(), Request{Prompt: strings.Repeat("hello ", 20)})
	if err == nil || !strings.Contains(err.Error(), "longer than the context") {
		t.Fatalf("long prompt: %v", err)
	}
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// A reader that does not keep up never stalls the scheduler: other requests
// finish while its events wait, and it later receives all of them in order.
func TestSlowReaderDoesNotBlockOthers(t *testing.T) {
	l := loadStories(t, QuantNF4)
	e := mustEngine(t, l, EngineOptions{})
	defer e.Close(context.Background())
	req := Request{PromptTokens: []int32{1}, MaxTokens: 200, IgnoreEOS: true, Sampling: greedy}
	solo, _ := generate(t, e, req)
	slow, err := e.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	fast, _ := generate(t, e, Request{Prompt: "Once", MaxTokens: 150, IgnoreEOS: true, Sampling: greedy})
	if fast == "" {
		t.Fatal("the second request produced nothing")
	}
	var sb strings.Builder
	n := 0
	for ev := range slow {
		sb.WriteString(ev.Text)
		n++
	}
	if n != 201 || sb.String() != solo {
		t.Fatalf("slow reader got %d events, text %q", n, sb.String())
	}
}

// A cancelled request whose reader is gone leaves no goroutine behind.
func TestAbandonedStreamDoesNotLeak(t *testing.T) {
	l := loadStories(t, QuantNF4)
	e := mustEngine(t, l, EngineOptions{})
	defer e.Close(context.Background())
	before := goruntime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := e.Submit(ctx, Request{PromptTokens: []int32{1}, MaxTokens: 300, IgnoreEOS: true, Sampling: greedy}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for goruntime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g := goruntime.NumGoroutine(); g > before {
		t.Fatalf("%d goroutines after an abandoned stream, %d before", g, before)
	}
}
