package sampler

import (
	"fmt"
	"math"
)

// GreedyEpsilon is the temperature below which sampling is greedy, as in
// vLLM (_SAMPLING_EPS = 1e-5).
const GreedyEpsilon = 1e-5

// MaxTopLogprobs is the largest accepted TopLogprobs (OpenAI's limit).
const MaxTopLogprobs = 20

// Params are the sampling parameters of one request, in OpenAI/vLLM units.
// The zero value is not "defaults": callers pass TopP = 1 and Temperature = 1
// when the request leaves them out.
type Params struct {
	Temperature       float32 // [0, 2]; < GreedyEpsilon = greedy argmax
	TopP              float32 // (0, 1]; 1 = off
	TopK              int     // <= 0 = off; >= vocab = off
	MinP              float32 // [0, 1]; 0 = off
	PresencePenalty   float32 // [-2, 2]; 0 = off; over generated tokens
	FrequencyPenalty  float32 // [-2, 2]; 0 = off; over generated tokens
	RepetitionPenalty float32 // >= 0; 1 = off (0 is treated as 1); over prompt + generated tokens

	// LogitBias is added to the logit of each listed token before anything
	// else; -100 effectively bans a token, +100 effectively forces it.
	LogitBias map[int32]float32 // token id -> bias in [-100, 100]

	Seed *uint64 // nil = a random seed

	Logprobs    bool // report the sampled token's log-probability
	TopLogprobs int  // [0, MaxTopLogprobs]; alternatives per position (needs Logprobs)
}

// ParamError is a validation error for one request field. Param is the
// OpenAI JSON name of the field ("temperature", "logit_bias", ...), for the
// `param` member of an OpenAI error body.
type ParamError struct {
	Param   string
	Message string
}

func (e *ParamError) Error() string { return e.Message }

func paramErr(param, format string, args ...any) error {
	return &ParamError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// inRange reports whether v is a number in [lo, hi] (false for NaN).
func inRange(v float32, lo, hi float64) bool {
	f := float64(v)
	return f >= lo && f <= hi
}

// Validate checks p against the OpenAI ranges for a model with vocab tokens.
// Errors are *ParamError and their message names the field.
func (p Params) Validate(vocab int) error {
	if vocab <= 0 {
		return paramErr("", "vocabulary size must be positive, got %d", vocab)
	}
	if !inRange(p.Temperature, 0, 2) {
		return paramErr("temperature", "temperature must be in [0, 2], got %v", p.Temperature)
	}
	if !inRange(p.TopP, 0, 1) || p.TopP == 0 {
		return paramErr("top_p", "top_p must be in (0, 1], got %v", p.TopP)
	}
	if !inRange(p.MinP, 0, 1) {
		return paramErr("min_p", "min_p must be in [0, 1], got %v", p.MinP)
	}
	if !inRange(p.PresencePenalty, -2, 2) {
		return paramErr("presence_penalty", "presence_penalty must be in [-2, 2], got %v", p.PresencePenalty)
	}
	if !inRange(p.FrequencyPenalty, -2, 2) {
		return paramErr("frequency_penalty", "frequency_penalty must be in [-2, 2], got %v", p.FrequencyPenalty)
	}
	if !inRange(p.RepetitionPenalty, 0, math.MaxFloat32) {
		return paramErr("repetition_penalty", "repetition_penalty must be a finite number >= 0 (1 or 0 = off), got %v", p.RepetitionPenalty)
	}
	for id, b := range p.LogitBias {
		if id < 0 || int(id) >= vocab {
			return paramErr("logit_bias", "logit_bias token %d is out of range [0, %d)", id, vocab)
		}
		if !inRange(b, -100, 100) {
			return paramErr("logit_bias", "logit_bias for token %d must be in [-100, 100], got %v", id, b)
		}
	}
	if p.TopLogprobs < 0 || p.TopLogprobs > MaxTopLogprobs {
		return paramErr("top_logprobs", "top_logprobs must be in [0, %d], got %d", MaxTopLogprobs, p.TopLogprobs)
	}
	if p.TopLogprobs > 0 && !p.Logprobs {
		return paramErr("logprobs", "logprobs must be true when top_logprobs is set")
	}
	return nil
}
