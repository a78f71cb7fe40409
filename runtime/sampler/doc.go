// Package sampler turns one sequence's logits into its next token, with the
// sampling parameters of the OpenAI API (plus vLLM's top_k, min_p and
// repetition_penalty), and finds OpenAI `stop` strings in streamed text.
//
// # Order of operations
//
// A Sampler follows vLLM v1 (vllm/v1/sample/sampler.py), the engine whose
// OpenAI server parrot most resembles:
//
//  1. logit_bias: logit[t] += bias[t].
//  2. penalties, over the counts of this sequence's tokens:
//     repetition (prompt + generated tokens): logit /= r if logit > 0, else logit *= r;
//     then frequency and presence (generated tokens only, OpenAI's formula):
//     logit -= frequency*count + presence*(count > 0).
//  3. temperature < 1e-5: greedy, the argmax of the logits from step 2; the
//     lowest token id wins a tie, as torch.argmax returns the first maximum.
//     Otherwise logit /= temperature.
//  4. min_p: drop tokens whose probability (softmax of step 3) is below
//     min_p × the largest probability.
//  5. top_k: keep tokens whose logit is >= the k-th largest (ties at the k-th
//     value are all kept, as in HF and vLLM).
//  6. top_p: over the probabilities renormalised on the survivors of 4 and 5,
//     keep the highest-probability tokens while the mass of the tokens ranked
//     above is < top_p (so the token that crosses top_p is kept, and at least
//     one token always is). Equal probabilities rank by lower id.
//  7. draw one token from the renormalised survivors with the Sampler's own
//     PCG generator (math/rand/v2), seeded from Params.Seed.
//
// How the engines differ (numbers give the position in each chain):
//
//	step              parrot = vLLM v1   HF transformers        llama.cpp (default chain)
//	logit_bias        1                  - (no OpenAI bias)     1 (added before the chain)
//	penalties         2 (prompt+output)  1 (repetition only)    2 (last 64 tokens)
//	temperature       3                  2                      8 (last, before dist)
//	min_p             4                  5                      7
//	top_k             5                  3                      4
//	top_p             6                  4                      6
//	greedy when       temperature<1e-5   do_sample=False        temperature<=0
//
// Why this order. Temperature comes before the truncation filters, as in HF
// and vLLM, so that min_p and top_p see the distribution that is actually
// sampled: with temperature 2 the tail is fatter and min_p=0.1 keeps more
// tokens than it would on the raw logits. llama.cpp applies temperature last,
// so its min_p and top_p act on the untempered distribution; results differ
// from ours whenever temperature != 1. Placing min_p before top_k/top_p is
// vLLM v1's choice (HF applies it last). min_p's test p_i >= min_p·p_max only
// involves ratios to the most probable token, which top_k and top_p always
// keep, so it removes the same tokens wherever it stands; what moves is
// top_p's renormalisation: we (and vLLM) accumulate top_p's mass over the
// min_p survivors, HF over the top_k survivors, so with both min_p and top_p
// set HF can keep a few more tokens. Penalties and logit_bias change which
// token is greedy, so they come before the greedy test (vLLM calls them the
// "non-argmax-invariant" processors).
//
// # Log-probabilities
//
// Result.Logprob and Result.Top are log_softmax of the model's raw logits,
// before logit_bias, penalties, temperature and the filters. This is vLLM's
// default (logprobs_mode = "raw_logprobs"). So a token banned by logit_bias
// still shows its raw log-probability among the alternatives, and the
// log-probabilities do not depend on temperature.
//
// # Seeds
//
// The same Seed and the same sequence of logits give the same tokens, in
// this implementation. Token streams do not match vLLM, HF or llama.cpp for
// the same seed: each engine draws its random numbers differently.
//
// # Cost
//
// Nothing is sorted over the whole vocabulary. Greedy is one pass (argmax
// over the logits, copied first only when logit_bias or a penalty is set).
// min_p and top_k reduce to one threshold on the logit: min_p's is
// max + temperature·ln(min_p); top_k's is the k-th largest logit, found by
// streaming the logits through a size-k heap. Only tokens above the
// threshold are exponentiated, with a float32 exp (exp32) accurate to a few
// ulps. top_p needs the total mass, so it exponentiates every survivor, then
// drops the tokens lighter than (1-top_p)·total/(2·vocab), which provably
// cannot be in the nucleus, and finds the nucleus among the rest with a
// quickselect on mass: partition around a pivot, add up the upper part's
// mass, continue in the part that holds the boundary (O(n) expected, with a
// sort fallback that bounds the worst case). Tokens whose probability
// underflows float32 (below ~1e-38 of the most probable token's) are dropped:
// they could never be drawn. See BenchmarkSample for the numbers.
package sampler
