package adapters

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/testmodel"
)

const storiesDir = "../testdata/stories260K"

// tinyConfig is the architecture of testmodel.Tiny (hidden 64, 2 layers).
func tinyConfig(t testing.TB) *llama.Config {
	t.Helper()
	data, err := json.Marshal(testmodel.Config(testmodel.Tiny()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := llama.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// randomAdapter draws a rank-r adapter on the given projections (nil = all
// seven) of every layer of base: A and B uniform in ±amp.
func randomAdapter(base *llama.Config, rank int, alpha float64, seed uint64, amp float32, projections []string) *peft.Adapter {
	if projections == nil {
		projections = llama.ProjectionNames
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	cfg := peft.NewConfig(rank, alpha)
	a := &peft.Adapter{Config: cfg, Modules: map[string]*peft.Module{}}
	for l := range base.Layers {
		for _, p := range projections {
			out, in, _ := projectionShape(base, p)
			m := &peft.Module{Name: fmt.Sprintf("model.layers.%d.%s", l, p), Rank: rank, In: in, Out: out,
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

func saveAdapter(t testing.TB, dir string, a *peft.Adapter) {
	t.Helper()
	if err := peft.Save(dir, a); err != nil {
		t.Fatal(err)
	}
}

// fingerprint is the version the watcher gives dir's files now.
func fingerprint(dir string) (string, error) {
	s, err := inspect("", dir)
	return s.version, err
}
