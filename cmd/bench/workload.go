package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// vocabulary is what prompts are made of: common English words, most of
// them one token in a large BPE vocabulary. Random words rather than random
// token ids (vLLM's random dataset decodes random ids) keep the prompts
// plain text that any tokenizer takes.
var vocabulary = strings.Fields(`the of and to in is was that for on with as his they at be
this from have or by one had not but what all were when we there can an your which their said
if do will each about how up out them then she many some so these would other into has more her
two like him see time could no make than first been its who now people my made over did down
only way find use may water long little very after words called just where most know get through
back much go good new write our me man too any day same right look think also around another came
come work three must because does part even place well such here take why help put different away
again off went old number great tell men say small every found still between name should home big
give air line set own under read last never us left end along while might next sound below saw
something thought both few those always show large often together asked house world going want
school important until form food keep children feet land side without boy once animal life enough
took four head above kind began almost live page got earth need far hand high year mother light
country father let night picture being study second soon story since white ever paper hard near
sentence better best across during today however sure knew try told young sun thing whole hear
example heard several change answer room sea against top turned learn point city play toward five
himself usually money seen door cut morning`)

// words returns n words drawn from rng, space separated.
func words(rng *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(vocabulary[rng.IntN(len(vocabulary))])
	}
	return b.String()
}

// assumedTokensPerWord is the ratio used when the server cannot count
// tokens: about 3/4 of a word per token, the usual figure for English text
// in a BPE vocabulary of 32k-128k tokens.
const assumedTokensPerWord = 1.33

// prompter makes texts of a given token count. With a counter (the
// server's /tokenize) it fits each text: it picks the number of words from
// the measured tokens per word, counts the text's tokens, and grows or
// shrinks it by the difference a few times; without one it relies on the
// assumed ratio alone.
type prompter struct {
	count         func(text string) (int, error) // nil: no tokenizer
	tokensPerWord float64
}

// newPrompter measures the tokens per word of a sample of the vocabulary
// with the server's /tokenize. A server without it gives a prompter with
// the assumed ratio and no counter; any other failure is returned.
func newPrompter(ctx context.Context, c *client, model string, seed uint64) (*prompter, error) {
	count := func(text string) (int, error) { return c.countTokens(ctx, model, text) }
	const sample = 1000
	n, err := count(words(rand.New(rand.NewPCG(seed, math.MaxUint64)), sample))
	if errors.Is(err, errNoTokenize) {
		return &prompter{tokensPerWord: assumedTokensPerWord}, nil
	}
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("/tokenize counted %d tokens in %d words", n, sample)
	}
	return &prompter{count: count, tokensPerWord: float64(n) / sample}, nil
}

// text returns words from rng that make about target tokens, and their
// token count (the estimate when there is no counter).
func (p *prompter) text(rng *rand.Rand, target int) (string, int, error) {
	n := max(1, int(math.Round(float64(target)/p.tokensPerWord)))
	if p.count == nil {
		return words(rng, n), int(math.Round(float64(n) * p.tokensPerWord)), nil
	}
	// The candidate texts are prefixes of one stream of words, so that
	// adding words only appends.
	pool := strings.Fields(words(rng, 2*n+16))
	bestText, bestCount := "", -1
	for range 6 {
		for n > len(pool) {
			pool = append(pool, strings.Fields(words(rng, n))...)
		}
		text := strings.Join(pool[:n], " ")
		got, err := p.count(text)
		if err != nil {
			return "", 0, err
		}
		if bestCount < 0 || abs(got-target) < abs(bestCount-target) {
			bestText, bestCount = text, got
		}
		if got == target {
			break
		}
		step := int(math.Round(float64(target-got) / p.tokensPerWord))
		if step == 0 {
			step = 1
			if got > target {
				step = -1
			}
		}
		if n+step < 1 {
			break
		}
		n += step
	}
	return bestText, bestCount, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// turn is one request of a conversation: the user's text and the number of
// tokens to generate.
type turn struct {
	user         string
	targetTokens int // the length drawn for user
	userTokens   int // user's length as counted (or estimated)
	outputTokens int
}

// conversation is what one client plays: turns sent one after another,
// each with the replies to the earlier ones, under one model name.
type conversation struct {
	model string
	turns []turn
}

// lengthRange is the uniform integer range around mean that vLLM's random
// dataset (vllm/benchmarks/datasets/random.py, get_sampling_params) samples
// lengths from: [floor(mean·(1−r)), ceil(mean·(1+r))], at least 1. The
// bounds are rounded with a little slack, so that 100·(1+0.1), which is
// 110.00000000000001 in floating point, gives 110 and not 111.
func lengthRange(mean int, r float64) (lo, hi int) {
	const slack = 1e-9
	lo = max(1, int(math.Floor(float64(mean)*(1-r)+slack)))
	hi = max(lo, int(math.Ceil(float64(mean)*(1+r)-slack)))
	return lo, hi
}

func sampleLength(rng *rand.Rand, mean int, r float64) int {
	lo, hi := lengthRange(mean, r)
	return lo + rng.IntN(hi-lo+1)
}

// plan makes the conversations of the run. Conversation i draws from its
// own random stream (seed, i), so the workload does not depend on how
// many are made or in what order; it is served under
// models[i % len(models)].
func plan(o *options, p *prompter, models []string) ([]conversation, error) {
	convs := make([]conversation, o.numRequests)
	for i := range convs {
		rng := rand.New(rand.NewPCG(o.seed, uint64(i)))
		c := conversation{model: models[i%len(models)]}
		for range o.turns {
			in := sampleLength(rng, o.promptTokens, o.rangeRatio)
			out := sampleLength(rng, o.outputTokens, o.rangeRatio)
			text, n, err := p.text(rng, in)
			if err != nil {
				return nil, err
			}
			c.turns = append(c.turns, turn{user: text, targetTokens: in, userTokens: n, outputTokens: out})
		}
		convs[i] = c
	}
	return convs, nil
}
