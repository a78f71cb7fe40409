// Package adaptertest makes random LoRA adapters for tests of the packages
// that serve them.
package adaptertest

import (
	"math/rand/v2"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// Random is a rank-8, alpha-16 adapter on every projection of m with
// weights uniform in ±0.3 from seed: strong enough to change a tiny model's
// greedy output.
func Random(m *llama.Model, seed uint64) *peft.Adapter {
	const rank = 8
	rng := rand.New(rand.NewPCG(seed, 1))
	a := &peft.Adapter{Config: peft.NewConfig(rank, 16), Modules: map[string]*peft.Module{}}
	for i := range m.Weights.Layers {
		for _, l := range m.Weights.Layers[i].Projections() {
			mod := &peft.Module{Name: l.Name, Rank: rank, In: l.In, Out: l.Out,
				A: make([]float32, rank*l.In), B: make([]float32, l.Out*rank)}
			for j := range mod.A {
				mod.A[j] = (rng.Float32()*2 - 1) * 0.3
			}
			for j := range mod.B {
				mod.B[j] = (rng.Float32()*2 - 1) * 0.3
			}
			a.Modules[l.Name] = mod
		}
	}
	return a
}
