package train

import (
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/kernels/ref"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/testmodel"
)

// Training on a bitsandbytes checkpoint as the lab uses it (NF4 projections,
// bf16 tied embedding): the fast backend follows the reference backend step
// for step, and the loss falls.
func TestTrainOnBnbCheckpoint(t *testing.T) {
	dir := t.TempDir()
	o := testmodel.Tiny()
	o.Quantize = true
	if err := testmodel.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	fast := cpu.New(2)
	defer fast.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	var micro [][]Example
	for range 2 {
		var batch []Example
		for range 2 {
			n := 12 + rng.IntN(8)
			ex := Example{Input: make([]int32, n), Labels: make([]int32, n)}
			for i := range ex.Input {
				ex.Input[i] = int32(rng.IntN(300))
				ex.Labels[i] = ex.Input[i]
			}
			ex.Labels[0] = kernels.IgnoreIndex
			batch = append(batch, ex)
		}
		micro = append(micro, batch)
	}
	opts := Options{Rank: 8, Alpha: 16, LearningRate: 1e-2, WarmupSteps: 1, TotalSteps: 8, Optim: AdamW8bit,
		MaxGradNorm: 1, Seed: 3407, GradientCheckpointing: true}
	var losses [2][]float64
	for i, be := range []kernels.Backend{ref.New(), fast} {
		l, err := llama.Load(dir, llama.LoadOptions{Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := l.Model.Weights.Embed.(*kernels.BF16Matrix); !ok {
			t.Fatalf("embedding is %T, want bf16", l.Model.Weights.Embed)
		}
		tr, err := New(l.Model, opts)
		if err != nil {
			t.Fatal(err)
		}
		for range opts.TotalSteps {
			st, err := tr.Step(micro)
			if err != nil {
				t.Fatal(err)
			}
			losses[i] = append(losses[i], st.Loss)
		}
	}
	for k := range losses[0] {
		if relErr(losses[1][k], losses[0][k]) > 1e-4 {
			t.Errorf("step %d: cpu loss %v, ref loss %v", k+1, losses[1][k], losses[0][k])
		}
	}
	if first, last := losses[1][0], losses[1][len(losses[1])-1]; !(last < first) {
		t.Errorf("loss did not fall: %v", losses[1])
	}
	t.Logf("losses %v", losses[1])
}
