package llama

import (
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/quant"
)

// testAdapter is a random rank-r adapter on every projection, PEFT layout.
type testAdapter struct {
	rank  int
	scale float32
	a, b  map[string][]float32 // module -> A [r, In], B [Out, r]
}

func randomAdapter(m *Model, rank int, scale float32, seed uint64, zeroB bool) *testAdapter {
	rng := rand.New(rand.NewPCG(seed, 99))
	ad := &testAdapter{rank: rank, scale: scale, a: map[string][]float32{}, b: map[string][]float32{}}
	for i := range m.Weights.Layers {
		for _, l := range m.Weights.Layers[i].Projections() {
			a := make([]float32, rank*l.In)
			b := make([]float32, l.Out*rank)
			for j := range a {
				a[j] = (rng.Float32()*2 - 1) * 0.3
			}
			if !zeroB {
				for j := range b {
					b[j] = (rng.Float32()*2 - 1) * 0.3
				}
			}
			ad.a[l.Name], ad.b[l.Name] = a, b
		}
	}
	return ad
}

func (ad *testAdapter) install(t *testing.T, ls *LoRASlots, slot int) {
	t.Helper()
	for name := range ad.a {
		if err := ls.Set(slot, name, ad.a[name], ad.b[name], ad.rank, ad.scale); err != nil {
			t.Fatal(err)
		}
	}
}

// prefillLogits runs one prompt alone and returns its last logits.
func prefillLogits(t *testing.T, m *Model, prompt []int32, slot int32) []float32 {
	t.Helper()
	cache := mustCache(t, m, 0)
	var b Batch
	for pos, tok := range prompt {
		b.AddWithAdapter(tok, int32(pos), cache, pos == len(prompt)-1, slot)
	}
	logits, err := m.Forward(&b)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}

// mergedModel builds float weights W + scale·B·A from the (dequantized) base.
func mergedModel(t *testing.T, m *Model, ad *testAdapter) *Model {
	t.Helper()
	w := *m.Weights
	w.Layers = make([]Layer, len(m.Weights.Layers))
	for i, l := range m.Weights.Layers {
		var nl Layer = l
		ptrs := []**Linear{&nl.Q, &nl.K, &nl.V, &nl.O, &nl.Gate, &nl.Up, &nl.Down}
		for _, p := range ptrs {
			old := *p
			var dense []float32
			switch wm := old.W.(type) {
			case *kernels.F32Matrix:
				dense = append([]float32(nil), wm.Data...)
			case *kernels.NF4Matrix:
				var err error
				if dense, err = quant.DequantizeNF4(wm); err != nil {
					t.Fatal(err)
				}
			}
			a, b := ad.a[old.Name], ad.b[old.Name]
			for o := range old.Out {
				for c := range old.In {
					var sum float32
					for r := range ad.rank {
						sum += b[o*ad.rank+r] * a[r*old.In+c]
					}
					dense[o*old.In+c] += ad.scale * sum
				}
			}
			*p = &Linear{Name: old.Name, In: old.In, Out: old.Out, W: &kernels.F32Matrix{Rows: old.Out, Cols: old.In, Data: dense}}
		}
		w.Layers[i] = nl
	}
	return mustModel(t, m.Config, &w, m.Backend)
}

func TestLoRAZeroBGivesBaseLogitsExactly(t *testing.T) {
	m := loadStories(t, QuantNF4).Model
	prompt := []int32{1, 300, 301, 302}
	base := prefillLogits(t, m, prompt, -1)
	ls, err := m.EnableLoRA(2, 8)
	if err != nil {
		t.Fatal(err)
	}
	randomAdapter(m, 8, 2, 1, true).install(t, ls, 0)
	randomAdapter(m, 8, 0, 2, false).install(t, ls, 1) // scale 0
	for slot := int32(-1); slot < 2; slot++ {
		got := prefillLogits(t, m, prompt, slot)
		for i := range base {
			if got[i] != base[i] {
				t.Fatalf("slot %d: logit %d = %v, base %v", slot, i, got[i], base[i])
			}
		}
	}
}

// The slots' product equals merging the adapter into the weights, in both
// storages: for bfloat16 the adapter's values are bfloat16 already and its
// scale a power of two, so that the stored values are exactly its own.
func TestLoRAEqualsMergedWeights(t *testing.T) {
	for _, quantize := range []string{QuantNone, QuantNF4} {
		for _, f32 := range []bool{true, false} {
			m := loadStories(t, quantize).Model
			m.Backend.(*cpu.Backend).SetLoRAFloat32(f32)
			ad := randomAdapter(m, 4, 0.5, 3, false)
			if !f32 {
				for _, v := range ad.a {
					roundBF16(v)
				}
				for _, v := range ad.b {
					roundBF16(v)
				}
			}
			ls, err := m.EnableLoRA(1, 8) // rank 4 padded to 8
			if err != nil {
				t.Fatal(err)
			}
			if m.Weights.Layers[0].Q.LoRA.BF16 == f32 {
				t.Fatalf("float32 storage %v, stack in bfloat16 %v", f32, m.Weights.Layers[0].Q.LoRA.BF16)
			}
			ad.install(t, ls, 0)
			prompt := []int32{1, 50, 60, 70, 80}
			got := prefillLogits(t, m, prompt, 0)
			want := prefillLogits(t, mergedModel(t, m, ad), prompt, -1)
			if d := maxAbsDiff(got, want); d > 2e-4 {
				t.Errorf("%s, float32 slots %v: unmerged LoRA differs from merged weights by %g", quantize, f32, d)
			}
			if d := maxAbsDiff(got, prefillLogits(t, m, prompt, -1)); d < 1e-2 {
				t.Errorf("%s: adapter barely changes the logits (%g): test is vacuous", quantize, d)
			}
		}
	}
}

// roundBF16 rounds v in place to bfloat16.
func roundBF16(v []float32) {
	for i, x := range v {
		v[i] = kernels.BF16ToF32(kernels.F32ToBF16(x))
	}
}

// A batch of [base, A, B, A] equals the four sequences run alone (PEFT's
// mixed-batch meaning).
func TestLoRAMixedBatchEqualsSolo(t *testing.T) {
	m := loadStories(t, QuantNF4).Model
	ls, err := m.EnableLoRA(3, 16)
	if err != nil {
		t.Fatal(err)
	}
	randomAdapter(m, 16, 1, 4, false).install(t, ls, 0)
	randomAdapter(m, 8, 2, 5, false).install(t, ls, 2)
	prompts := [][]int32{{1, 10, 20}, {1, 11, 21, 31}, {1, 12}, {1, 10, 20}}
	slots := []int32{-1, 0, 2, 0}
	V := m.Config.Vocab
	var b Batch
	caches := sharedCaches(t, m, 4, 0)
	for i, p := range prompts {
		for pos, tok := range p {
			b.AddWithAdapter(tok, int32(pos), caches[i], pos == len(p)-1, slots[i])
		}
	}
	mixed, err := m.Forward(&b)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		solo := prefillLogits(t, m, p, slots[i])
		if d := maxAbsDiff(mixed[i*V:(i+1)*V], solo); d > 1e-4 {
			t.Errorf("sequence %d (slot %d): mixed batch differs from solo by %g", i, slots[i], d)
		}
	}
	// Decode step: one token each, all four adapters at once.
	b.Reset()
	for i := range prompts {
		b.AddWithAdapter(5, int32(len(prompts[i])), caches[i], true, slots[i])
	}
	if _, err := m.Forward(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Forward(&Batch{Tokens: []int32{1}, Pos: []int32{0}, Caches: []*KVCache{mustCache(t, m, 0)}, Slots: []int32{7}}); err == nil {
		t.Error("unallocated slot accepted")
	}
}
