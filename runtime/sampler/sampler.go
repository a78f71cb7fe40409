package sampler

import (
	"math"
	"math/rand/v2"
	"slices"
)

// TokenLogprob is one token with its log-probability.
type TokenLogprob struct {
	Token   int32
	Logprob float32
}

// Result is the outcome of one sampling step.
type Result struct {
	Token int32
	// Logprob is the sampled token's log-probability under the raw model
	// distribution (see the package doc); set only when Params.Logprobs.
	Logprob float32
	// Top holds the Params.TopLogprobs most probable tokens of the raw
	// distribution, most probable first (ties: lower id first). It aliases
	// a buffer of the Sampler that the next Sample call overwrites: copy it
	// to keep it.
	Top []TokenLogprob
}

// Sampler samples the tokens of one sequence. It keeps the sequence's token
// counts (for the penalties) and its random generator, and reuses its
// buffers, so Sample does not allocate once the sequence's set of distinct
// generated tokens stops growing. Not safe for concurrent use.
type Sampler struct {
	vocab int

	greedy     bool
	invTemp    float64 // 1/temperature
	temp       float64
	logMinP    float64 // ln(min_p); -Inf = off
	topK       int     // 0 = off
	topP       float64 // 1 = off
	presence   float32
	frequency  float32
	repetition float32 // 1 = off
	biasIDs    []int32 // sorted token ids of logit_bias
	biasVals   []float32
	logprobs   bool
	topN       int

	rng *rand.Rand

	// Penalty state; nil when no penalty is set.
	counts    []int32  // [vocab] times each token was generated
	inPrompt  []uint64 // [ceil(vocab/64)] bitset of prompt tokens (repetition only)
	promptIDs []int32  // distinct prompt tokens (repetition only)
	genIDs    []int32  // distinct generated tokens, in first-seen order

	modifies bool           // logit_bias or a penalty is set: work on a copy
	buf      []float32      // [vocab] logits after bias and penalties, then weights
	cand     []candidate    // [<= vocab] tokens surviving the filters
	heap     []float32      // [topK] scratch for top_k
	top      []TokenLogprob // [<= topN]
}

// New returns a Sampler for one sequence over a vocabulary of vocab tokens.
// prompt is the sequence's prompt (for repetition_penalty); New keeps no
// reference to it. p should have passed Validate; out-of-range values are
// still handled (TopP outside (0, 1) and RepetitionPenalty <= 0 mean off,
// logit_bias entries outside the vocabulary are ignored).
func New(p Params, vocab int, prompt []int32) *Sampler {
	vocab = max(vocab, 0)
	s := &Sampler{
		vocab:      vocab,
		greedy:     !(float64(p.Temperature) >= GreedyEpsilon), // NaN → greedy
		temp:       float64(p.Temperature),
		invTemp:    1 / float64(p.Temperature),
		logMinP:    math.Inf(-1),
		topP:       1,
		presence:   p.PresencePenalty,
		frequency:  p.FrequencyPenalty,
		repetition: p.RepetitionPenalty,
		logprobs:   p.Logprobs,
	}
	if p.MinP > 0 && p.MinP <= 1 {
		s.logMinP = math.Log(float64(p.MinP))
	}
	if p.TopK > 0 && p.TopK < vocab {
		s.topK = p.TopK
		s.heap = make([]float32, 0, p.TopK)
	}
	if p.TopP > 0 && p.TopP < 1 {
		s.topP = float64(p.TopP)
	}
	if !(s.repetition > 0) {
		s.repetition = 1
	}
	if !s.greedy {
		s.cand = make([]candidate, 0, vocab)
	}
	s.modifies = len(p.LogitBias) > 0 || s.repetition != 1 || s.presence != 0 || s.frequency != 0
	if s.modifies || (!s.greedy && s.topP < 1) {
		s.buf = make([]float32, vocab)
	}
	if p.Logprobs {
		s.topN = min(max(p.TopLogprobs, 0), vocab)
		s.top = make([]TokenLogprob, 0, s.topN)
	}

	for id := range p.LogitBias {
		if id >= 0 && int(id) < vocab {
			s.biasIDs = append(s.biasIDs, id)
		}
	}
	slices.Sort(s.biasIDs) // deterministic order of float additions
	for _, id := range s.biasIDs {
		s.biasVals = append(s.biasVals, p.LogitBias[id])
	}

	if s.repetition != 1 || s.presence != 0 || s.frequency != 0 {
		s.counts = make([]int32, vocab)
		s.genIDs = make([]int32, 0, 256)
	}
	if s.repetition != 1 {
		s.inPrompt = make([]uint64, (vocab+63)/64)
		for _, id := range prompt {
			if id < 0 || int(id) >= vocab || s.promptHas(id) {
				continue
			}
			s.inPrompt[id/64] |= 1 << (id % 64)
			s.promptIDs = append(s.promptIDs, id)
		}
	}

	seed := rand.Uint64()
	if p.Seed != nil {
		seed = *p.Seed
	}
	// The second PCG word is a fixed odd constant: only Seed selects the stream.
	s.rng = rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	return s
}

func (s *Sampler) promptHas(id int32) bool {
	return s.inPrompt != nil && s.inPrompt[id/64]&(1<<(id%64)) != 0
}

// Sample picks the next token from logits ([vocab], not modified) and
// records it for the penalties. A logits slice of another length is a
// caller bug: only the first min(len(logits), vocab) entries are used, and
// an empty one yields Token -1. If every logit is -Inf or NaN the result is
// token 0.
func (s *Sampler) Sample(logits []float32) Result { return s.SampleMasked(logits, nil) }

// SampleMasked is Sample restricted to the tokens mask allows (bit i%64 of
// mask[i/64]; nil = all), for structured outputs: the others are set to
// -Inf before every other filter (as vLLM applies grammar bitmasks before
// its logits processors). Logprobs stay those of the raw logits, as vLLM
// reports them by default. If mask allows no token the result is token -1.
func (s *Sampler) SampleMasked(logits []float32, mask []uint64) Result {
	n := min(len(logits), s.vocab)
	if n == 0 {
		return Result{Token: -1}
	}
	x := logits[:n]
	if s.modifies || mask != nil {
		if s.buf == nil {
			s.buf = make([]float32, s.vocab)
		}
		x = s.buf[:n]
		copy(x, logits[:n])
	}
	if mask != nil && !applyMask(x, mask) {
		return Result{Token: -1}
	}
	if s.modifies {
		s.applyBias(x)
		s.applyPenalties(x)
	}

	var tok int32
	if s.greedy {
		tok = argmax(x)
	} else {
		s.filter(x)
		tok = s.draw()
	}
	s.record(tok)

	res := Result{Token: tok}
	if s.logprobs {
		res.Logprob, res.Top = s.rawLogprobs(logits[:n], tok)
	}
	return res
}

// applyMask sets the disallowed entries of x to -Inf (step 0); false when
// none is allowed.
func applyMask(x []float32, mask []uint64) bool {
	neg := float32(math.Inf(-1))
	allowed := false
	for i := range x {
		if w := i / 64; w < len(mask) && mask[w]&(1<<(i%64)) != 0 {
			allowed = true
		} else {
			x[i] = neg
		}
	}
	return allowed
}

// applyBias adds logit_bias (step 1).
func (s *Sampler) applyBias(x []float32) {
	for i, id := range s.biasIDs {
		if int(id) < len(x) {
			x[id] += s.biasVals[i]
		}
	}
}

// applyPenalties applies repetition, then frequency and presence (step 2),
// in vLLM's order.
func (s *Sampler) applyPenalties(x []float32) {
	if s.repetition != 1 {
		for _, id := range s.promptIDs {
			if int(id) < len(x) {
				x[id] = repeat(x[id], s.repetition)
			}
		}
		for _, id := range s.genIDs {
			if int(id) < len(x) && !s.promptHas(id) {
				x[id] = repeat(x[id], s.repetition)
			}
		}
	}
	if s.presence != 0 || s.frequency != 0 {
		for _, id := range s.genIDs {
			if int(id) < len(x) {
				x[id] -= s.frequency*float32(s.counts[id]) + s.presence
			}
		}
	}
}

// repeat is the HF/vLLM repetition penalty of one logit.
func repeat(v, r float32) float32 {
	if v > 0 {
		return v / r
	}
	return v * r
}

// record counts a generated token for the penalties.
func (s *Sampler) record(tok int32) {
	if s.counts == nil || tok < 0 || int(tok) >= len(s.counts) {
		return
	}
	if s.counts[tok] == 0 {
		s.genIDs = append(s.genIDs, tok)
	}
	s.counts[tok]++
}

// argmax returns the index of the largest value, the lowest on ties,
// skipping NaN; 0 when there is none. Four independent lanes (lane j sees
// the indices ≡ j mod 4, each keeping its first maximum) let the CPU overlap
// the comparisons; merging prefers the lower index on equal values.
func argmax(x []float32) int32 {
	neg := float32(math.Inf(-1))
	var bv = [4]float32{neg, neg, neg, neg}
	var bi = [4]int{-1, -1, -1, -1}
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		if v[0] > bv[0] {
			bv[0], bi[0] = v[0], i
		}
		if v[1] > bv[1] {
			bv[1], bi[1] = v[1], i+1
		}
		if v[2] > bv[2] {
			bv[2], bi[2] = v[2], i+2
		}
		if v[3] > bv[3] {
			bv[3], bi[3] = v[3], i+3
		}
	}
	for ; i < len(x); i++ { // the tail has the highest indices: lane 0 stays first-maximum
		if x[i] > bv[0] {
			bv[0], bi[0] = x[i], i
		}
	}
	best, bestV := -1, neg
	for j := range 4 {
		if bi[j] >= 0 && (best < 0 || bv[j] > bestV || (bv[j] == bestV && bi[j] < best)) {
			best, bestV = bi[j], bv[j]
		}
	}
	return int32(max(best, 0))
}

// filter runs steps 3 to 6 on x and leaves the survivors in s.cand with
// their unnormalised probabilities exp((logit-max)/T). Tokens whose
// probability underflows float32 (below ~1e-38 of the maximum's) are left
// out: they could never be drawn.
func (s *Sampler) filter(x []float32) {
	s.cand = s.cand[:0]
	top := argmax(x)
	maxV := float64(x[top])
	if math.IsInf(maxV, -1) || math.IsNaN(maxV) {
		s.cand = append(s.cand, candidate{id: top, v: 1})
		return
	}

	// Survivors of min_p and top_k are exactly the tokens with logit >= lo.
	// min_p: p_i >= min_p·p_max ⇔ (logit_i - max)/T >= ln(min_p).
	lo := float32(math.Inf(-1))
	if !math.IsInf(s.logMinP, -1) {
		lo = roundUp32(maxV + s.temp*s.logMinP)
	}
	if s.topK > 0 {
		lo = max(lo, kthLargest(x, lo, s.topK, s.heap))
	}
	// float32 arithmetic: a float64 argument costs a conversion whose false
	// register dependency serialises the loop (2-3x slower). v - max is
	// exact for the tokens near the max, where precision matters.
	max32, invT32 := float32(maxV), float32(s.invTemp)
	weight := func(v float32) float32 { return exp32((v - max32) * invT32) }

	if s.topP >= 1 {
		for i, v := range x {
			if v >= lo {
				if w := weight(v); w > 0 {
					s.cand = append(s.cand, candidate{id: int32(i), v: w})
				}
			}
		}
		return
	}

	// top_p needs the total mass first: weights of all survivors into buf
	// (in place when x is buf).
	w := s.buf[:len(x)]
	total := 0.0
	for i, v := range x {
		wi := float32(0)
		if v >= lo {
			wi = weight(v)
		}
		w[i] = wi
		total += float64(wi)
	}
	// Exact pre-filter: the tokens lighter than eps weigh at most
	// n·eps = (1-top_p)·total/2 together, so the mass ranked above any of
	// them exceeds top_p·total and none can be in the nucleus. This leaves
	// the partition below a few hundred candidates in typical cases.
	eps := float32(0.5 * (1 - s.topP) * total / float64(len(x)))
	for i, wi := range w {
		if wi > 0 && wi >= eps {
			s.cand = append(s.cand, candidate{id: int32(i), v: wi})
		}
	}
	s.cand = s.cand[:nucleus(s.cand, s.topP*total)]
}

// roundUp32 is the smallest float32 >= f, so that float32 v >= roundUp32(f)
// ⇔ float64(v) >= f.
func roundUp32(f float64) float32 {
	r := float32(f)
	if float64(r) < f {
		r = math.Nextafter32(r, float32(math.Inf(1)))
	}
	return r
}

// draw samples one candidate in proportion to its weight (inverse CDF).
func (s *Sampler) draw() int32 {
	total := 0.0
	for _, c := range s.cand {
		total += float64(c.v)
	}
	u := s.rng.Float64() * total
	acc := 0.0
	for _, c := range s.cand {
		acc += float64(c.v)
		if acc > u {
			return c.id
		}
	}
	// Rounding left u at the very top: the last candidate (all have weight > 0).
	return s.cand[len(s.cand)-1].id
}

// rawLogprobs returns log_softmax(logits)[tok] and the topN entries of
// log_softmax(logits), computed in float64.
func (s *Sampler) rawLogprobs(logits []float32, tok int32) (float32, []TokenLogprob) {
	maxV := logits[argmax(logits)]
	lse := 0.0 // all -Inf/NaN: no distribution; report the logits as they are
	if !math.IsInf(float64(maxV), 0) && !math.IsNaN(float64(maxV)) {
		sum := 0.0
		for _, v := range logits {
			sum += float64(exp32(v - maxV)) // 0 for NaN
		}
		lse = float64(maxV) + math.Log(sum)
	}
	lp := func(v float32) float32 { return float32(float64(v) - lse) }

	// Top N by insertion into a short list sorted by logit (held in the
	// Logprob field until the end): most tokens fail the comparison with
	// the current last entry. Scanning ids upwards and moving only past
	// strictly smaller logits puts the lower id first on ties.
	top := s.top[:0]
	for i, v := range logits {
		if s.topN == 0 {
			break
		}
		if v != v || (len(top) == s.topN && !(v > top[len(top)-1].Logprob)) {
			continue
		}
		j := len(top)
		if j < s.topN {
			top = append(top, TokenLogprob{})
		} else {
			j--
		}
		for j > 0 && v > top[j-1].Logprob {
			top[j] = top[j-1]
			j--
		}
		top[j] = TokenLogprob{Token: int32(i), Logprob: v}
	}
	for i := range top {
		top[i].Logprob = lp(top[i].Logprob)
	}
	s.top = top
	return lp(logits[tok]), top
}
