package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the q-th percentile (0..100) of xs by linear
// interpolation between the closest ranks, numpy.percentile's default
// method, which vLLM's benchmark_serving.py (calculate_metrics) uses for its
// p50/p90/p99. xs need not be sorted; an empty xs gives 0.
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	pos := q / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// latency summarises a latency distribution in milliseconds.
type latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	N    int     `json:"n"` // samples
}

func summarize(ms []float64) latency {
	return latency{Mean: round3(mean(ms)), P50: round3(percentile(ms, 50)), P90: round3(percentile(ms, 90)),
		P99: round3(percentile(ms, 99)), N: len(ms)}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// round3 keeps three decimals, enough for milliseconds and rates.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
