package sampler

import (
	"math"
	"slices"
)

// This file holds naive float64 references written straight from the engines'
// definitions (transformers generation/logits_process.py, vLLM
// v1/sample/sampler.py, llama.cpp src/llama-sampler.cpp), full sorts and all,
// to test the fast code against.

// refResult is the distribution a reference samples from: keep[i] says
// whether token i survived the filters, probs the renormalised probability.
type refResult struct {
	keep  []bool
	probs []float64
}

func softmax64(x []float64, keep []bool) []float64 {
	mx := math.Inf(-1)
	for i, v := range x {
		if keep[i] && v > mx {
			mx = v
		}
	}
	p := make([]float64, len(x))
	sum := 0.0
	for i, v := range x {
		if keep[i] {
			p[i] = math.Exp(v - mx)
			sum += p[i]
		}
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// refMinP masks tokens with softmax(x) < minP·max (HF/vLLM MinP).
func refMinP(x []float64, keep []bool, minP float64) {
	p := softmax64(x, keep)
	pmax := slices.Max(p)
	for i := range x {
		if p[i] < minP*pmax {
			keep[i] = false
		}
	}
}

// refTopK masks tokens with x < the k-th largest kept x (ties kept).
func refTopK(x []float64, keep []bool, k int) {
	var vals []float64
	for i, v := range x {
		if keep[i] {
			vals = append(vals, v)
		}
	}
	if k <= 0 || k >= len(vals) {
		return
	}
	slices.Sort(vals)
	kth := vals[len(vals)-k]
	for i, v := range x {
		if v < kth {
			keep[i] = false
		}
	}
}

// refTopP is vLLM's/HF's mask: sort ascending (ties: higher id first, the
// reverse of our rank order), cumsum of the softmax, drop where
// cum <= 1-topP, always keep the largest.
func refTopP(x []float64, keep []bool, topP float64) {
	if topP >= 1 {
		return
	}
	p := softmax64(x, keep)
	var idx []int
	for i := range x {
		if keep[i] {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case p[a] < p[b]:
			return -1
		case p[a] > p[b]:
			return 1
		default:
			return b - a
		}
	})
	cum := 0.0
	for j, i := range idx {
		cum += p[i]
		if cum <= 1-topP && j < len(idx)-1 {
			keep[i] = false
		}
	}
}

// refVLLM is the whole pipeline in parrot's (vLLM v1) order, for a
// non-greedy p without penalties: bias → /T → min_p → top_k → top_p.
func refVLLM(logits []float32, p Params) refResult {
	x := make([]float64, len(logits))
	keep := make([]bool, len(logits))
	for i, v := range logits {
		x[i] = float64(v)
		keep[i] = true
	}
	for id, b := range p.LogitBias {
		x[id] = float64(float32(x[id]) + b) // float32 addition, as the sampler does
	}
	for i := range x {
		x[i] /= float64(p.Temperature)
	}
	if p.MinP > 0 {
		refMinP(x, keep, float64(p.MinP))
	}
	refTopK(x, keep, p.TopK)
	refTopP(x, keep, float64(p.TopP))
	return refResult{keep, softmax64(x, keep)}
}

// refLlamaCpp is llama.cpp's default chain order for the same parameters:
// top_k → top_p → min_p on the untempered logits, temperature last. Only
// used to show that the tests tell the orders apart.
func refLlamaCpp(logits []float32, p Params) refResult {
	x := make([]float64, len(logits))
	keep := make([]bool, len(logits))
	for i, v := range logits {
		x[i] = float64(v)
		keep[i] = true
	}
	refTopK(x, keep, p.TopK)
	refTopP(x, keep, float64(p.TopP))
	if p.MinP > 0 {
		refMinP(x, keep, float64(p.MinP))
	}
	for i := range x {
		x[i] /= float64(p.Temperature)
	}
	return refResult{keep, softmax64(x, keep)}
}

func maxAbsDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}
