package engine

import (
	"math"
	"testing"

	"github.com/parrot-llm/parrot/adapters/adaptertest"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

const storiesDir = "../../testdata/stories260K"

var greedy = sampler.Params{Temperature: 0, TopP: 1}

func loadStories(t testing.TB, quantize string) *llama.Loaded {
	t.Helper()
	be := cpu.New(2)
	t.Cleanup(be.Close)
	l, err := llama.Load(storiesDir, llama.LoadOptions{Quantize: quantize, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// installRandom writes adaptertest.Random(m, seed) into slot of ls.
func installRandom(t *testing.T, m *llama.Model, ls *llama.LoRASlots, slot int, seed uint64) {
	t.Helper()
	a := adaptertest.Random(m, seed)
	ls.Clear(slot)
	for name, mod := range a.Modules {
		if err := ls.Set(slot, name, mod.A, mod.B, mod.Rank, a.Config.Scale(name)); err != nil {
			t.Fatal(err)
		}
	}
}

// prefillLogits runs prompt through m in one batch and returns the last
// token's logits.
func prefillLogits(t *testing.T, m *llama.Model, prompt []int32, slot int32) []float32 {
	t.Helper()
	cache, err := m.NewKVCache(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	var b llama.Batch
	for pos, tok := range prompt {
		b.AddWithAdapter(tok, int32(pos), cache, pos == len(prompt)-1, slot)
	}
	logits, err := m.Forward(&b)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}
