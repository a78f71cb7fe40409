package llama

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/kernels/ref"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

const storiesDir = "../../testdata/stories260K"

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

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// A bfloat16 KV cache (what serve's --kv-cache-dtype auto picks for a bf16
// checkpoint) changes the logits by the rounding of keys and values only:
// close to the float32 cache's, and not identical (the path is in use).
func TestBF16KVCache(t *testing.T) {
	prompt := []int32{1, 403, 407, 261, 378, 300, 301, 302, 50, 60, 70, 80}
	exact := prefillLogits(t, loadStories(t, QuantNone).Model, prompt, -1)
	m := loadStories(t, QuantNone).Model
	m.Backend.(*cpu.Backend).SetKVBF16(true)
	if !m.KVShape().BF16 {
		t.Fatal("the model's KV shape is not bfloat16")
	}
	got := prefillLogits(t, m, prompt, -1)
	d := maxAbsDiff(got, exact)
	spread := 0.0
	for _, v := range exact {
		spread = math.Max(spread, math.Abs(float64(v)))
	}
	t.Logf("max |Δ logit| %g (largest |logit| %g)", d, spread)
	if d == 0 || d > 0.01*spread {
		t.Fatalf("bfloat16 KV cache moves the logits by %g (largest |logit| %g): want 0 < Δ <= 1%%", d, spread)
	}
}

// ForwardInto returns Forward's logits in the caller's buffer when it is
// large enough (the engine's per-step reuse), and in a new one otherwise.
func TestForwardIntoReusesBuffer(t *testing.T) {
	m := loadStories(t, QuantNF4).Model
	prompt := []int32{1, 403, 407, 261}
	run := func(dst []float32) []float32 {
		t.Helper()
		cache := mustCache(t, m, 0)
		var b Batch
		for pos, tok := range prompt {
			b.Add(tok, int32(pos), cache, pos >= 2) // logits of the last two tokens
		}
		logits, err := m.ForwardInto(&b, dst)
		if err != nil {
			t.Fatal(err)
		}
		return logits
	}
	want := run(nil)
	buf := make([]float32, 3*m.Config.Vocab)
	got := run(buf)
	if len(got) != 2*m.Config.Vocab || &got[0] != &buf[0] {
		t.Fatalf("ForwardInto gave %d logits in a new slice, want %d in the caller's", len(got), 2*m.Config.Vocab)
	}
	if !slices.Equal(got, want) {
		t.Fatal("ForwardInto's logits differ from Forward's")
	}
	if small := run(make([]float32, 5)); len(small) != len(want) || !slices.Equal(small, want) {
		t.Fatal("ForwardInto with a short buffer: wrong logits")
	}
}

// After Reserve, a batch of that many tokens and logit rows runs in the
// reserved buffers (nothing regrown).
func TestReserveSizesEveryStepBuffer(t *testing.T) {
	m := loadStories(t, QuantNF4).Model
	const T, rows = 9, 3
	if err := m.Reserve(T, rows); err != nil {
		t.Fatal(err)
	}
	s := &m.scratch
	bufs := []*kernels.Buf{&s.x, &s.xn, &s.q, &s.att, &s.k, &s.v, &s.gate, &s.up, &s.proj, &s.out, &s.logits}
	before := make([]*float32, len(bufs))
	for i, b := range bufs {
		before[i] = &b.Host()[0]
	}
	var b Batch
	cache := mustCache(t, m, 0)
	for pos := range T {
		b.Add(int32(300+pos), int32(pos), cache, pos >= T-rows)
	}
	if _, err := m.Forward(&b); err != nil {
		t.Fatal(err)
	}
	for i, b := range bufs {
		if &b.Host()[0] != before[i] {
			t.Fatalf("step buffer %d was reallocated after Reserve(%d, %d)", i, T, rows)
		}
	}
}

// With int8 activations, a prompt processed in one batch (the NF4 panel
// kernels on AVX-512 VNNI CPUs, the decode kernels elsewhere) gives the
// last token the logits that feeding the prompt one token at a time gives
// it, up to float rounding: both quantize the same activations the same
// way. And both stay near the float32 forward pass. The int8 model is
// loaded as serve loads it, with the modes set first, so that on a VNNI
// CPU its weights of whole panels are repacked (kernels/cpu's Upload).
func TestInt8PrefillMatchesInt8Decode(t *testing.T) {
	be := cpu.New(2)
	t.Cleanup(be.Close)
	be.SetInt8Activations(true)
	be.SetInt8Prefill(true)
	l, err := Load(storiesDir, LoadOptions{Quantize: QuantNF4, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	wq := l.Model.Weights.Layers[0].Q.W
	if _, bnb := wq.(*kernels.NF4Matrix); bnb == (be.Name() == "cpu-avx2-vnni") {
		t.Fatalf("on %s, wq was uploaded as %T", be.Name(), wq)
	}
	exactModel := loadStories(t, QuantNF4).Model
	prompt := []int32{1, 400, 401, 402, 403, 404, 405, 406, 45, 100, 200, 300, 7, 8, 9, 10, 11, 12, 13, 14}
	run := func(m *Model, oneAtATime bool) []float32 {
		cache := mustCache(t, m, 0)
		var b Batch
		var logits []float32
		for pos, tok := range prompt {
			b.Add(tok, int32(pos), cache, pos == len(prompt)-1)
			if oneAtATime || pos == len(prompt)-1 {
				out, err := m.Forward(&b)
				if err != nil {
					t.Fatal(err)
				}
				logits = out
				b.Reset()
			}
		}
		return logits
	}
	prefill, decode, exact := run(l.Model, false), run(l.Model, true), run(exactModel, false)
	scale := 0.0
	for _, v := range exact {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	t.Logf("max |logit| %g; int8 prefill vs decode %g, vs float32 %g", scale, maxAbsDiff(prefill, decode), maxAbsDiff(prefill, exact))
	if d := maxAbsDiff(prefill, decode); d > 1e-5*scale {
		t.Errorf("int8 prefill differs from int8 decode by %g (logits up to %g)", d, scale)
	}
	if d := maxAbsDiff(prefill, exact); d > 0.05*scale || d == 0 {
		t.Errorf("int8 prefill differs from float32 by %g (logits up to %g): want a small, nonzero difference", d, scale)
	}
}
