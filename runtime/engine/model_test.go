package engine

import (
	"context"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/kernels/ref"
	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/grammar"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/safetensors"
	"github.com/parrot-llm/parrot/runtime/sampler"
	"github.com/parrot-llm/parrot/runtime/testmodel"
	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

// The greedy story published with stories260K (llama2.c doc/stories260K.md,
// `./run stories260K.bin -z tok512.bin -t 0.0`).
const publishedStory = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
Lily didn't want to help her mom, so she said, "I'm sorry, mom. I didn't know what to do." Her mom said, "Don't worry, Lily. We can help you.`

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
	l := loadStories(t, llama.QuantNone)
	e := mustEngine(t, l, Options{})
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
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{})
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

func TestEngineConcurrentRequestsMatchSolo(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	seed := uint64(7)
	reqs := []Request{
		{Prompt: "Once upon a time", MaxTokens: 30, Sampling: sampler.Params{Temperature: 0, TopP: 1}},
		{Prompt: "Lily and Ben", MaxTokens: 25, Sampling: sampler.Params{Temperature: 0.8, MinP: 0.05, TopP: 1, Seed: &seed}},
		{Prompt: "The cat", MaxTokens: 20, Stop: []string{"."}, Sampling: sampler.Params{Temperature: 0, TopP: 1}},
	}
	solo := make([]string, len(reqs))
	e := mustEngine(t, l, Options{MaxRunning: 1})
	for i, r := range reqs {
		solo[i], _ = generate(t, e, r)
	}
	e.Close(context.Background())

	e = mustEngine(t, l, Options{MaxRunning: 8, MaxBatchToken: 3}) // small budget: chunked prefill
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
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{})
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
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{MaxModelLen: 8})
	defer e.Close(context.Background())
	_, err := e.Submit(context.Background(), Request{Prompt: strings.Repeat("hello ", 20)})
	if err == nil || !strings.Contains(err.Error(), "longer than the context") {
		t.Fatalf("long prompt: %v", err)
	}
}

// A reader that does not keep up never stalls the scheduler: other requests
// finish while its events wait, and it later receives all of them in order.
func TestSlowReaderDoesNotBlockOthers(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{})
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
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{})
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

// A bnb NF4 checkpoint loads without loss: NF4 mode keeps exactly the stored
// codes and scales, and float mode equals their dequantization.
func TestLoadBnbCheckpoint(t *testing.T) {
	dir := testmodel.TinyDir(t, true)
	l, err := llama.Load(dir, llama.LoadOptions{Backend: ref.New()})
	if err != nil {
		t.Fatal(err)
	}
	q, ok := l.Model.Weights.Layers[1].Q.W.(*kernels.NF4Matrix)
	if !ok {
		t.Fatalf("q_proj loaded as %T, want NF4", l.Model.Weights.Layers[1].Q.W)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	raw, _ := set.Tensor("model.layers.1.self_attn.q_proj.weight")
	if string(raw.Data) != string(q.Packed) {
		t.Fatal("NF4 codes differ from the checkpoint's")
	}
	f, err := llama.Load(dir, llama.LoadOptions{Backend: ref.New(), Quantize: llama.QuantNone})
	if err != nil {
		t.Fatal(err)
	}
	dense := f.Model.Weights.Layers[1].Q.W.(*kernels.F32Matrix)
	for i := range dense.Data {
		if want := ref.NF4Element(q, i); dense.Data[i] != want {
			t.Fatalf("float mode element %d = %v, NF4 dequantizes to %v", i, dense.Data[i], want)
		}
	}
	// Both generate the same greedy text: the float mode is the NF4 model's reference.
	prompt := Request{Prompt: "hello world", MaxTokens: 8, IgnoreEOS: true, Sampling: greedy}
	a, _ := generate(t, mustEngine(t, l, Options{}), prompt)
	b, _ := generate(t, mustEngine(t, f, Options{}), prompt)
	if a != b {
		t.Fatalf("NF4 %q vs dequantized float %q", a, b)
	}
}

// A chat request on a Llama 3 style checkpoint is rendered with its template.
func TestChatRequestUsesTemplate(t *testing.T) {
	l, err := llama.Load(testmodel.TinyDir(t, false), llama.LoadOptions{Backend: ref.New()})
	if err != nil {
		t.Fatal(err)
	}
	e := mustEngine(t, l, Options{})
	defer e.Close(context.Background())
	msgs := []chat.Message{{Role: "user", Content: "Hi"}}
	ids, err := e.Tokenize(&Request{Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	text, err := l.Template.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := l.Tokenizer.Encode(text, false)
	if len(ids) != len(want) || ids[0] != want[0] {
		t.Fatalf("chat prompt %v, want %v", ids, want)
	}
	if bos, _ := l.Tokenizer.TokenID("<|begin_of_text|>"); ids[0] != bos || ids[1] == bos {
		t.Fatalf("chat prompt must start with exactly one BOS: %v", ids[:2])
	}
}

// The 8-bit lm_head stays close to the float one: same greedy story start,
// logits within the Q8 error.
func TestLMHead8Bit(t *testing.T) {
	be := ref.New()
	full, err := llama.Load(storiesDir, llama.LoadOptions{Backend: be, Quantize: llama.QuantNone})
	if err != nil {
		t.Fatal(err)
	}
	q8, err := llama.Load(storiesDir, llama.LoadOptions{Backend: be, Quantize: llama.QuantNone, LMHead8Bit: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := q8.Model.Weights.LMHead.(*kernels.Q8Matrix); !ok {
		t.Fatalf("lm_head is %T", q8.Model.Weights.LMHead)
	}
	prompt := []int32{1, 400, 401}
	a, b := prefillLogits(t, full.Model, prompt, -1), prefillLogits(t, q8.Model, prompt, -1)
	scale := 0.0
	for _, v := range a {
		scale = max(scale, float64(v), -float64(v))
	}
	if d := maxAbsDiff(a, b); d > 0.02*scale || d == 0 {
		t.Fatalf("8-bit lm_head logits differ by %g (max |logit| %g)", d, scale)
	}
	text, _ := generate(t, mustEngine(t, q8, Options{}), Request{PromptTokens: []int32{1}, MaxTokens: 12, Sampling: greedy})
	if !strings.HasPrefix(publishedStory, text) {
		t.Errorf("8-bit lm_head greedy start %q departs from the float story", text)
	}
}

// BenchmarkConstrainedDecode1B compares 8 concurrent streams on the
// Llama-3.2-1B-shaped NF4 model with and without a JSON Schema constraint,
// in one run: the masks are computed while the forward pass runs, so the
// constrained streams should keep most of the unconstrained tokens/s. It
// needs the real Llama 3 vocabulary, generated by runtime/tokenizer's tests
// (runtime/tokenizer/testdata/llama3/gen/tokenizer.json).
func BenchmarkConstrainedDecode1B(b *testing.B) {
	const genDir = "../tokenizer/testdata/llama3/gen"
	dir := b.TempDir()
	raw, err := os.ReadFile(filepath.Join(genDir, "tokenizer.json"))
	if err != nil {
		b.Skip("the Llama 3 tokenizer is not generated yet: run go test ./runtime/tokenizer first")
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), raw, 0o644)
	os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id": [128001, 128008, 128009]}`), 0o644)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	vocab, err := grammar.LoadVocab(dir)
	if err != nil {
		b.Fatal(err)
	}
	schema := []byte(`{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
		"tags": {"type": "array", "items": {"type": "string"}}, "address": {"type": "object", "properties": {
		"city": {"type": "string"}, "zip": {"type": "string", "pattern": "[0-9]{5}"}}, "required": ["city", "zip"]}},
		"required": ["name", "age", "tags", "address"]}`)
	g, err := grammar.CompileJSONSchema(vocab, schema, grammar.Options{})
	if err != nil {
		b.Fatal(err)
	}
	// Random Llama-3.2-1B-shaped NF4 weights (written to disk once: a few
	// seconds), served with the real Llama 3 vocabulary.
	modelDir := b.TempDir()
	o := testmodel.Llama32_1B()
	o.Quantize = true
	if err := testmodel.Generate(modelDir, o); err != nil {
		b.Fatal(err)
	}
	be := cpu.New(0)
	defer be.Close()
	l, err := llama.Load(modelDir, llama.LoadOptions{Backend: be})
	if err != nil {
		b.Fatal(err)
	}
	l.Tokenizer = tok
	const streams, tokens = 8, 48
	run := func(constrained bool) float64 {
		e := mustEngine(b, l, Options{MaxRunning: streams, MaxModelLen: 512})
		defer e.Close(context.Background())
		seed := uint64(1)
		var chans []<-chan Event
		start := time.Now()
		for range streams {
			req := Request{PromptTokens: []int32{128000, 9906}, MaxTokens: tokens, IgnoreEOS: true,
				Sampling: sampler.Params{Temperature: 1, TopP: 1, Seed: &seed}}
			if constrained {
				req.Constraint = g.NewMatcher()
			}
			ch, err := e.Submit(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			chans = append(chans, ch)
		}
		n := 0
		for _, ch := range chans {
			for ev := range ch {
				if ev.Err != nil {
					b.Fatal(ev.Err)
				}
				if !ev.Done {
					n++
				}
			}
		}
		return float64(n) / time.Since(start).Seconds()
	}
	for i := 0; i < b.N; i++ {
		free, constrained := run(false), run(true)
		b.ReportMetric(free, "free_tok/s")
		b.ReportMetric(constrained, "json_tok/s")
		b.ReportMetric(constrained/free, "ratio")
	}
}

func mustEngine(tb testing.TB, l *llama.Loaded, opts Options) *Engine {
	tb.Helper()
	e, err := NewEngine(l, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}
