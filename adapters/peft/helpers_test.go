package peft

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/runtime/testmodel"
)

// projections are the seven projections of a Llama layer.
var projections = []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}

// tiny is the architecture of the model the fixtures are for
// (testmodel.Tiny: hidden 64, 2 layers).
var tiny = testmodel.Tiny()

// shape is [out, in] of projection p of a model of architecture o.
func shape(o testmodel.Options, p string) (out, in int) {
	q, kv := o.Heads*o.HeadDim, o.KVHeads*o.HeadDim
	switch p {
	case "self_attn.q_proj":
		return q, o.Hidden
	case "self_attn.k_proj", "self_attn.v_proj":
		return kv, o.Hidden
	case "self_attn.o_proj":
		return o.Hidden, q
	case "mlp.gate_proj", "mlp.up_proj":
		return o.Intermediate, o.Hidden
	case "mlp.down_proj":
		return o.Hidden, o.Intermediate
	}
	panic("unknown projection " + p)
}

// randomAdapter draws a rank-r adapter on the given projections (nil = all
// seven) of every layer of testmodel.Tiny: A and B uniform in ±amp.
func randomAdapter(rank int, alpha float64, seed uint64, amp float32, projs []string) *Adapter {
	if projs == nil {
		projs = projections
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	a := &Adapter{Config: NewConfig(rank, alpha), Modules: map[string]*Module{}}
	for l := range tiny.Layers {
		for _, p := range projs {
			out, in := shape(tiny, p)
			m := &Module{Name: fmt.Sprintf("model.layers.%d.%s", l, p), Rank: rank, In: in, Out: out,
				A: make([]float32, rank*in), B: make([]float32, out*rank)}
			for i := range m.A {
				m.A[i] = (rng.Float32()*2 - 1) * amp
			}
			for i := range m.B {
				m.B[i] = (rng.Float32()*2 - 1) * amp
			}
			a.Modules[m.Name] = m
		}
	}
	return a
}

func saveAdapter(t testing.TB, dir string, a *Adapter) {
	t.Helper()
	if err := Save(dir, a); err != nil {
		t.Fatal(err)
	}
}

func mustLoad(t *testing.T, dir string) *Adapter {
	t.Helper()
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
