package sampler

import (
	"math/rand/v2"
	"testing"
)

// benchLogits imitates a language model's logits over Llama 3's vocabulary:
// a Gaussian bulk (σ 2.5) and a handful of strong candidates.
func benchLogits() []float32 {
	const vocab = 128256
	r := rand.New(rand.NewPCG(1, 2))
	x := randomLogits(r, vocab, 2.5, false)
	for i := range 8 {
		x[r.IntN(vocab)] = float32(14 - i)
	}
	return x
}

func BenchmarkSample(b *testing.B) {
	x := benchLogits()
	cases := []struct {
		name string
		p    Params
	}{
		{"greedy", Params{Temperature: 0, TopP: 1}},
		{"temperature", Params{Temperature: 0.8, TopP: 1}},
		{"temperature+min_p", Params{Temperature: 0.8, TopP: 1, MinP: 0.05}},
		{"temperature+top_p", Params{Temperature: 0.8, TopP: 0.95}},
		{"temperature+top_p_flat", Params{Temperature: 2, TopP: 0.95}}, // a nucleus of ~10^5 tokens
		{"llama3.2_defaults", Params{Temperature: 0.6, TopP: 0.9, TopK: 50}},
		{"greedy+logprobs5", Params{Temperature: 0, TopP: 1, Logprobs: true, TopLogprobs: 5}},
		{"greedy+penalties", Params{Temperature: 0, TopP: 1, RepetitionPenalty: 1.1, PresencePenalty: 0.5, FrequencyPenalty: 0.5}},
	}
	prompt := make([]int32, 2000)
	for i := range prompt {
		prompt[i] = int32(i * 61 % len(x))
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			bc.p.Seed = seed(1)
			s := New(bc.p, len(x), prompt)
			b.SetBytes(int64(4 * len(x)))
			b.ReportAllocs()
			for b.Loop() {
				s.Sample(x)
			}
		})
	}
}
