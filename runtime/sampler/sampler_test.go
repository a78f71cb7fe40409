package sampler

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func seed(v uint64) *uint64 { return &v }

// randomLogits returns n logits ~ N(0, scale²) from r; with ties, rounded to
// multiples of 0.5 so that equal values are common.
func randomLogits(r *rand.Rand, n int, scale float64, ties bool) []float32 {
	x := make([]float32, n)
	for i := range x {
		v := r.NormFloat64() * scale
		if ties {
			v = math.Round(v*2) / 2
		}
		x[i] = float32(v)
	}
	return x
}

func naiveArgmax(x []float32) int32 {
	best := int32(0)
	for i := range x {
		if x[i] > x[best] {
			best = int32(i)
		}
	}
	return best
}

func TestGreedyIsArgmax(t *testing.T) {
	// Ties: the lowest id wins, as torch.argmax returns the first maximum.
	s := New(Params{Temperature: 0, TopP: 1}, 4, nil)
	if got := s.Sample([]float32{1, 3, 3, 2}).Token; got != 1 {
		t.Errorf("tie: got token %d, want 1", got)
	}
	s = New(Params{Temperature: 0, TopP: 1}, 3, nil)
	if got := s.Sample([]float32{float32(math.NaN()), 1, 2}).Token; got != 2 {
		t.Errorf("NaN: got token %d, want 2", got)
	}
	// Below the greedy epsilon is greedy too, and filters do not matter.
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		x := randomLogits(r, 1+r.IntN(300), 3, trial%2 == 0)
		p := Params{Temperature: 5e-6, TopP: 0.3, TopK: 2, MinP: 0.5}
		if got, want := New(p, len(x), nil).Sample(x).Token, naiveArgmax(x); got != want {
			t.Fatalf("trial %d: got %d, want argmax %d", trial, got, want)
		}
	}
}

// chiSquareCritical approximates the upper 1e-6 quantile of χ²(df)
// (Wilson–Hilferty).
func chiSquareCritical(df int) float64 {
	const z = 4.753 // standard normal upper 1e-6 quantile
	d := float64(df)
	c := 1 - 2/(9*d) + z*math.Sqrt(2/(9*d))
	return d * c * c * c
}

func TestSampledDistribution(t *testing.T) {
	logits := []float32{2, 1, 0, -1, 0.5, 1.5, -0.5, 1}
	cases := []struct {
		name string
		p    Params
		// orderMatters: the llama.cpp order (temperature last) gives a
		// clearly different distribution, so this case tells orders apart.
		orderMatters bool
		support      []int32 // hand-derived support, when given
	}{
		{name: "temperature", p: Params{Temperature: 0.7, TopP: 1}},
		// min_p after temperature keeps logit >= 2 + 2·ln(0.3) = -0.41;
		// before temperature it would keep logit >= 2 + ln(0.3) = 0.80.
		{name: "temperature+min_p", p: Params{Temperature: 2, TopP: 1, MinP: 0.3}, orderMatters: true,
			support: []int32{0, 1, 2, 4, 5, 7}},
		{name: "temperature+top_p", p: Params{Temperature: 0.5, TopP: 0.8}, orderMatters: true},
		// top_k=3 cuts at logit 1, which two tokens share: both stay.
		{name: "temperature+top_k ties", p: Params{Temperature: 1.5, TopP: 1, TopK: 3},
			support: []int32{0, 1, 5, 7}},
		{name: "all filters", p: Params{Temperature: 1.3, TopP: 0.9, TopK: 6, MinP: 0.1}},
		{name: "logit_bias", p: Params{Temperature: 1, TopP: 1, LogitBias: map[int32]float32{0: -100, 3: 3}}},
	}
	const draws = 200_000
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Seed = seed(uint64(1000 + i))
			if err := tc.p.Validate(len(logits)); err != nil {
				t.Fatal(err)
			}
			want := refVLLM(logits, tc.p)
			if tc.orderMatters {
				other := refLlamaCpp(logits, tc.p)
				if d := maxAbsDiff(want.probs, other.probs); d < 0.05 {
					t.Fatalf("case does not separate the orders: max |Δp| = %.3f", d)
				}
			}
			if tc.support != nil {
				var got []int32
				for id, k := range want.keep {
					if k {
						got = append(got, int32(id))
					}
				}
				if !slices.Equal(got, tc.support) {
					t.Fatalf("reference support %v, hand-derived %v", got, tc.support)
				}
			}

			s := New(tc.p, len(logits), nil)
			counts := make([]int, len(logits))
			for range draws {
				counts[s.Sample(logits).Token]++
			}
			emp := make([]float64, len(logits))
			chi2, df := 0.0, -1
			for id, c := range counts {
				emp[id] = float64(c) / draws
				if !want.keep[id] && c > 0 {
					t.Errorf("token %d is outside the support but was drawn %d times", id, c)
				}
				if e := want.probs[id] * draws; e >= 5 {
					chi2 += (float64(c) - e) * (float64(c) - e) / e
					df++
				}
			}
			if d := maxAbsDiff(emp, want.probs); d > 0.005 {
				t.Errorf("max |empirical - analytic| = %.4f > 0.005\nempirical %.4f\nanalytic  %.4f", d, emp, want.probs)
			}
			if df > 0 && chi2 > chiSquareCritical(df) {
				t.Errorf("χ² = %.1f > %.1f (df %d)", chi2, chiSquareCritical(df), df)
			}
		})
	}
}

// TestFiltersMatchReference compares the candidate set and probabilities
// the fast filters leave with the sort-based reference, on random logits
// with and without ties.
func TestFiltersMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for trial := range 400 {
		n := 1 + r.IntN(2000)
		x := randomLogits(r, n, 3, trial%2 == 1)
		p := Params{Temperature: float32(0.2 + 1.8*r.Float64()), TopP: 1}
		if r.IntN(2) == 0 {
			p.MinP = float32(0.5 * r.Float64())
		}
		if r.IntN(2) == 0 {
			p.TopK = 1 + r.IntN(n+2)
		}
		if r.IntN(2) == 0 {
			p.TopP = float32(0.05 + 0.95*r.Float64())
		}
		want := refVLLM(x, p)

		s := New(p, n, nil)
		s.filter(slices.Clone(x))
		got := make([]bool, n)
		total := 0.0
		for _, c := range s.cand {
			if got[c.id] {
				t.Fatalf("trial %d: token %d twice", trial, c.id)
			}
			got[c.id] = true
			total += float64(c.v)
		}
		for id := range got {
			// A token the reference keeps may only be missing when its
			// probability underflows float32 (the sampler drops those).
			if got[id] != want.keep[id] && (got[id] || want.probs[id] > 1e-36) {
				t.Fatalf("trial %d (n %d, %+v): token %d (p %g): kept %v, reference %v",
					trial, n, p, id, want.probs[id], got[id], want.keep[id])
			}
		}
		for _, c := range s.cand {
			if d := math.Abs(float64(c.v)/total - want.probs[c.id]); d > 1e-6 {
				t.Fatalf("trial %d: p[%d] = %g, want %g", trial, c.id, float64(c.v)/total, want.probs[c.id])
			}
		}
	}
}

func TestFilterEdgeCases(t *testing.T) {
	support := func(p Params, x []float32) []int32 {
		s := New(p, len(x), nil)
		s.filter(slices.Clone(x))
		var ids []int32
		for _, c := range s.cand {
			ids = append(ids, c.id)
		}
		slices.Sort(ids)
		return ids
	}
	flat := make([]float32, 1000) // all equal: ranks go by id

	cases := []struct {
		name string
		p    Params
		x    []float32
		want []int32
	}{
		{"top_p keeps at least one", Params{Temperature: 1, TopP: 1e-6}, []float32{0, 5, 1, 5}, []int32{1}},
		{"top_p equal mass by id", Params{Temperature: 1, TopP: 0.5}, []float32{1, 1, 1, 1}, []int32{0, 1}},
		{"top_p large flat vocab", Params{Temperature: 1, TopP: 0.0035}, flat, []int32{0, 1, 2, 3}},
		// The mass of the first 500 equals top_p·total exactly: token 500 is out.
		{"top_p exact boundary", Params{Temperature: 1, TopP: 0.5}, flat, iota(500)},
		{"top_k ties at the cut", Params{Temperature: 1, TopP: 1, TopK: 1}, []float32{2, 3, 3, 1}, []int32{1, 2}},
		{"top_k above vocab is off", Params{Temperature: 1, TopP: 1, TopK: 10}, []float32{2, 3, 1}, []int32{0, 1, 2}},
		{"min_p 1 keeps the maxima", Params{Temperature: 1, TopP: 1, MinP: 1}, []float32{2, 3, 3, 1}, []int32{1, 2}},
		{"-Inf never a candidate", Params{Temperature: 1, TopP: 1}, []float32{float32(math.Inf(-1)), 0, float32(math.NaN())}, []int32{1}},
	}
	for _, tc := range cases {
		if got := support(tc.p, tc.x); !slices.Equal(got, tc.want) {
			t.Errorf("%s: support %v, want %v", tc.name, got, tc.want)
		}
	}
}

func iota(n int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(i)
	}
	return ids
}

func TestPenaltiesHandComputed(t *testing.T) {
	p := Params{Temperature: 0, TopP: 1, RepetitionPenalty: 2, PresencePenalty: 0.5, FrequencyPenalty: 0.25}
	s := New(p, 6, []int32{1, 1, 2})
	// Generate 3, 3, 4: a logit of 100 wins whatever the penalties do.
	for _, tok := range []int32{3, 3, 4} {
		x := make([]float32, 6)
		x[tok] = 100
		if got := s.Sample(x).Token; got != tok {
			t.Fatalf("forced token %d, got %d", tok, got)
		}
	}
	res := s.Sample([]float32{1, 2, -1, 3, 0.5, -2})
	// 0: untouched; 1: prompt, 2/2; 2: prompt, -1·2;
	// 3: generated twice, 3/2 - 0.25·2 - 0.5; 4: once, 0.5/2 - 0.25 - 0.5.
	want := []float32{1, 1, -2, 0.5, -0.5, -2}
	if !slices.Equal(s.buf, want) {
		t.Errorf("penalised logits %v, want %v", s.buf, want)
	}
	if res.Token != 0 { // 0 and 1 tie at 1: the lower id
		t.Errorf("token %d, want 0", res.Token)
	}
}

func TestPenaltiesChangeSampling(t *testing.T) {
	// Greedy with frequency penalty 2 on two tokens 1 apart: after one
	// pick the leader drops by 2.5 (frequency 2 + presence 0.5) and loses.
	s := New(Params{Temperature: 0, TopP: 1, FrequencyPenalty: 2, PresencePenalty: 0.5}, 2, nil)
	x := []float32{1, 0}
	var got []int32
	for range 4 {
		got = append(got, s.Sample(x).Token)
	}
	// counts (0,0): 1>0 → 0; (1,0): -1.5<0 → 1; (1,1): -1.5>-2.5 → 0; (2,1): -3.5<-2.5 → 1.
	if want := []int32{0, 1, 0, 1}; !slices.Equal(got, want) {
		t.Errorf("tokens %v, want %v", got, want)
	}
	// Repetition penalty counts the prompt, presence/frequency do not.
	s = New(Params{Temperature: 0, TopP: 1, PresencePenalty: 2}, 2, []int32{0})
	if tok := s.Sample(x).Token; tok != 0 {
		t.Errorf("presence penalty applied to the prompt: token %d", tok)
	}
	s = New(Params{Temperature: 0, TopP: 1, RepetitionPenalty: 1.5}, 2, []int32{0})
	if tok := s.Sample([]float32{1.2, 1}).Token; tok != 1 { // 1.2/1.5 = 0.8 < 1
		t.Errorf("repetition penalty not applied to the prompt: token %d", tok)
	}
}

func TestLogitBias(t *testing.T) {
	x := []float32{0, 1, 10, 2}
	// -100 bans the greedy choice.
	s := New(Params{Temperature: 0, TopP: 1, LogitBias: map[int32]float32{2: -100}}, 4, nil)
	if tok := s.Sample(x).Token; tok != 3 {
		t.Errorf("greedy with token 2 banned: got %d, want 3", tok)
	}
	// ... and in sampling it never appears.
	s = New(Params{Temperature: 1, TopP: 1, Seed: seed(3), LogitBias: map[int32]float32{2: -100}}, 4, nil)
	for i := range 20_000 {
		if tok := s.Sample(x).Token; tok == 2 {
			t.Fatalf("draw %d: banned token 2 sampled", i)
		}
	}
	// +100 forces a token.
	s = New(Params{Temperature: 1, TopP: 1, Seed: seed(4), LogitBias: map[int32]float32{0: 100}}, 4, nil)
	for i := range 1000 {
		if tok := s.Sample(x).Token; tok != 0 {
			t.Fatalf("draw %d: got %d, want forced 0", i, tok)
		}
	}
}

func TestSeed(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	steps := make([][]float32, 200)
	for i := range steps {
		steps[i] = randomLogits(r, 50, 1, false)
	}
	run := func(sd *uint64) []int32 {
		p := Params{Temperature: 1, TopP: 0.95, MinP: 0.01, Seed: sd, PresencePenalty: 0.3}
		s := New(p, 50, nil)
		var toks []int32
		for _, x := range steps {
			toks = append(toks, s.Sample(x).Token)
		}
		return toks
	}
	a, b, c := run(seed(42)), run(seed(42)), run(seed(43))
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different tokens")
	}
	if slices.Equal(a, c) {
		t.Error("seeds 42 and 43 gave the same 200 tokens")
	}
	if slices.Equal(run(nil), run(nil)) {
		t.Error("two unseeded samplers gave the same 200 tokens")
	}
}

func TestLogprobs(t *testing.T) {
	x := []float32{1, 2, 3, 0.5}
	lse := math.Log(math.Exp(1) + math.Exp(2) + math.Exp(3) + math.Exp(0.5))
	// Raw: temperature, bias and penalties do not change the reported values.
	p := Params{Temperature: 0.5, TopP: 0.9, LogitBias: map[int32]float32{0: 50}, PresencePenalty: 1,
		Logprobs: true, TopLogprobs: 2, Seed: seed(1)}
	s := New(p, 4, nil)
	for range 3 {
		res := s.Sample(x)
		if res.Token != 0 {
			t.Fatalf("bias +50 should force token 0, got %d", res.Token)
		}
		if want := 1 - lse; math.Abs(float64(res.Logprob)-want) > 1e-6 {
			t.Errorf("logprob %v, want %v", res.Logprob, want)
		}
		want := []TokenLogprob{{2, float32(3 - lse)}, {1, float32(2 - lse)}}
		if len(res.Top) != 2 {
			t.Fatalf("top %v, want %v", res.Top, want)
		}
		for i := range want {
			if res.Top[i].Token != want[i].Token || math.Abs(float64(res.Top[i].Logprob-want[i].Logprob)) > 1e-6 {
				t.Errorf("top %v, want %v", res.Top, want)
			}
		}
	}

	// Ties rank by lower id; no logprobs unless asked.
	s = New(Params{Temperature: 0, TopP: 1, Logprobs: true, TopLogprobs: 3}, 5, nil)
	res := s.Sample([]float32{0, 1, 1, -1, 1})
	if ids := []int32{res.Top[0].Token, res.Top[1].Token, res.Top[2].Token}; !slices.Equal(ids, []int32{1, 2, 4}) {
		t.Errorf("tied top ids %v, want [1 2 4]", ids)
	}
	if res := New(Params{Temperature: 0, TopP: 1}, 2, nil).Sample([]float32{0, 1}); res.Logprob != 0 || res.Top != nil {
		t.Errorf("logprobs not requested but got %+v", res)
	}

	// Over a whole vocabulary the probabilities sum to one, in order.
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 7, 1000} {
		x := randomLogits(r, n, 4, n == 7)
		res := New(Params{Temperature: 1, TopP: 1, Logprobs: true, TopLogprobs: n}, n, nil).Sample(x)
		sum := 0.0
		for i, tl := range res.Top {
			sum += math.Exp(float64(tl.Logprob))
			if i > 0 && before(candidate{tl.Token, x[tl.Token]}, candidate{res.Top[i-1].Token, x[res.Top[i-1].Token]}) {
				t.Fatalf("n %d: top not in rank order at %d", n, i)
			}
		}
		if len(res.Top) != n || math.Abs(sum-1) > 1e-5 {
			t.Errorf("n %d: %d entries summing to %v, want %d summing to 1", n, len(res.Top), sum, n)
		}
		if res.Logprob != res.Top[slices.IndexFunc(res.Top, func(tl TokenLogprob) bool { return tl.Token == res.Token })].Logprob {
			t.Errorf("n %d: sampled logprob %v disagrees with its top entry", n, res.Logprob)
		}
	}
}

func TestSampleDoesNotAllocate(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	x := randomLogits(r, 4096, 3, false)
	p := Params{Temperature: 0.8, TopP: 0.9, TopK: 100, MinP: 0.02, RepetitionPenalty: 1.1,
		PresencePenalty: 0.5, FrequencyPenalty: 0.5, LogitBias: map[int32]float32{3: 2},
		Logprobs: true, TopLogprobs: 5, Seed: seed(1)}
	s := New(p, len(x), []int32{1, 2, 3})
	for range 100 {
		s.Sample(x)
	}
	// At most 201 distinct generated tokens: genIDs' initial capacity (256)
	// holds them, so nothing may allocate.
	if a := testing.AllocsPerRun(100, func() { s.Sample(x) }); a != 0 {
		t.Errorf("Sample allocated %v times per call", a)
	}
}

func TestSampleInputLength(t *testing.T) {
	s := New(Params{Temperature: 0, TopP: 1}, 4, nil)
	if got := s.Sample(nil).Token; got != -1 {
		t.Errorf("empty logits: token %d, want -1", got)
	}
	in := []float32{1, 5, 2, 0, 9}
	if got := s.Sample(in).Token; got != 1 { // the 5th entry is beyond the vocabulary
		t.Errorf("long logits: token %d, want 1", got)
	}
	if in[4] != 9 || in[1] != 5 {
		t.Error("Sample modified its input")
	}
}

func TestValidate(t *testing.T) {
	ok := Params{Temperature: 1, TopP: 1}
	if err := ok.Validate(10); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	good := Params{Temperature: 2, TopP: 0.01, TopK: 5, MinP: 1, PresencePenalty: -2, FrequencyPenalty: 2,
		RepetitionPenalty: 1.3, LogitBias: map[int32]float32{0: -100, 9: 100}, Logprobs: true, TopLogprobs: 20}
	if err := good.Validate(10); err != nil {
		t.Fatalf("edge values rejected: %v", err)
	}
	nan := float32(math.NaN())
	bad := []struct {
		param string
		edit  func(*Params)
	}{
		{"temperature", func(p *Params) { p.Temperature = -0.1 }},
		{"temperature", func(p *Params) { p.Temperature = 2.01 }},
		{"temperature", func(p *Params) { p.Temperature = nan }},
		{"top_p", func(p *Params) { p.TopP = 0 }},
		{"top_p", func(p *Params) { p.TopP = 1.5 }},
		{"min_p", func(p *Params) { p.MinP = -0.1 }},
		{"min_p", func(p *Params) { p.MinP = 1.1 }},
		{"presence_penalty", func(p *Params) { p.PresencePenalty = 2.5 }},
		{"frequency_penalty", func(p *Params) { p.FrequencyPenalty = -3 }},
		{"repetition_penalty", func(p *Params) { p.RepetitionPenalty = -1 }},
		{"repetition_penalty", func(p *Params) { p.RepetitionPenalty = float32(math.Inf(1)) }},
		{"logit_bias", func(p *Params) { p.LogitBias = map[int32]float32{10: 1} }},
		{"logit_bias", func(p *Params) { p.LogitBias = map[int32]float32{-1: 1} }},
		{"logit_bias", func(p *Params) { p.LogitBias = map[int32]float32{1: 101} }},
		{"top_logprobs", func(p *Params) { p.Logprobs = true; p.TopLogprobs = 21 }},
		{"top_logprobs", func(p *Params) { p.Logprobs = true; p.TopLogprobs = -1 }},
		{"logprobs", func(p *Params) { p.TopLogprobs = 2 }},
	}
	for _, tc := range bad {
		p := ok
		tc.edit(&p)
		err := p.Validate(10)
		var pe *ParamError
		if !errors.As(err, &pe) {
			t.Errorf("%+v: got %v, want a *ParamError for %s", p, err, tc.param)
			continue
		}
		if pe.Param != tc.param || !strings.Contains(pe.Message, tc.param) {
			t.Errorf("%+v: error %q (param %q), want one naming %s", p, pe.Message, pe.Param, tc.param)
		}
	}
	if err := ok.Validate(0); err == nil {
		t.Error("vocab 0 accepted")
	}
}

func TestExp32(t *testing.T) {
	worst := 0.0
	for i := 0; i <= 1_000_000; i++ {
		x := -87.3 * float64(i) / 1_000_000
		want := math.Exp(float64(float32(x)))
		got := float64(exp32(float32(x)))
		worst = max(worst, math.Abs(got-want)/want)
	}
	if worst > 4e-7 { // a few float32 ulps (2^-23 ≈ 1.2e-7)
		t.Errorf("exp32 relative error %.3g", worst)
	}
	for _, x := range []float32{-87.5, -1000, float32(math.Inf(-1)), float32(math.NaN())} {
		if got := exp32(x); got != 0 {
			t.Errorf("exp32(%v) = %v, want 0", x, got)
		}
	}
	if exp32(0) != 1 {
		t.Errorf("exp32(0) = %v", exp32(0))
	}
}

// A mask restricts every mode to the allowed tokens before the other
// filters (a logit_bias cannot bring a masked token back), leaves the
// logits untouched, and logprobs stay those of the raw logits.
func TestSampleMaskedDrawsOnlyAllowedTokens(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const vocab = 300
	logits := randomLogits(r, vocab, 3, false)
	raw := slices.Clone(logits)
	mask := make([]uint64, (vocab+63)/64)
	allowed := map[int32]bool{}
	for _, id := range []int32{5, 64, 130, 299} {
		mask[id/64] |= 1 << (id % 64)
		allowed[id] = true
	}
	best := int32(-1)
	for id := range allowed {
		if best < 0 || logits[id] > logits[best] {
			best = id
		}
	}
	worst := int32(0)
	for i := range logits {
		if logits[i] > logits[worst] {
			worst = int32(i) // the unmasked argmax, most likely not allowed
		}
	}
	greedy := New(Params{Temperature: 0, TopP: 1, LogitBias: map[int32]float32{worst: 100}, Logprobs: true, TopLogprobs: 3}, vocab, nil)
	res := greedy.SampleMasked(logits, mask)
	if res.Token != best {
		t.Errorf("greedy masked: token %d, want the best allowed %d", res.Token, best)
	}
	want := New(Params{Temperature: 0, TopP: 1, Logprobs: true, TopLogprobs: 3}, vocab, nil).Sample(logits)
	if math.Abs(float64(res.Logprob-rawLogprob(res.Token, logits))) > 1e-5 || len(res.Top) != 3 || res.Top[0].Token != want.Top[0].Token {
		t.Errorf("masked logprobs %v %v, want the raw ones", res.Logprob, res.Top)
	}
	hot := New(Params{Temperature: 2, TopP: 0.9, TopK: 50, MinP: 0.01, Seed: seed(1)}, vocab, nil)
	seen := map[int32]int{}
	for range 2000 {
		tok := hot.SampleMasked(logits, mask).Token
		if !allowed[tok] {
			t.Fatalf("drew masked token %d", tok)
		}
		seen[tok]++
	}
	if len(seen) < 2 {
		t.Errorf("hot sampling over 4 allowed tokens drew only %v", seen)
	}
	if !slices.Equal(logits, raw) {
		t.Error("SampleMasked changed the logits")
	}
	if res := hot.SampleMasked(logits, make([]uint64, len(mask))); res.Token != -1 {
		t.Errorf("nothing allowed: token %d, want -1", res.Token)
	}
}

// rawLogprob is the log-probability of tok under logits.
func rawLogprob(tok int32, logits []float32) float32 {
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	sum := 0.0
	for _, v := range logits {
		sum += math.Exp(float64(v) - m)
	}
	return float32(float64(logits[tok]) - m - math.Log(sum))
}
