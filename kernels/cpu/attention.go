package cpu

import (
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

// attnJob: items are (token, head) pairs, item = t*nHeads + h; scratch[w]
// holds the scores of one pair.
type attnJob struct {
	out, q                    []float32
	kv                        []kernels.KVRef
	nHeads, nKVHeads, headDim int
	scratch                   [][]float32
	simd                      bool
}

func (j *attnJob) run(w, lo, hi int) {
	hd := j.headDim
	kvDim := j.nKVHeads * hd
	group := j.nHeads / j.nKVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	for it := lo; it < hi; it++ {
		t, h := it/j.nHeads, it%j.nHeads
		g := h / group
		c := j.kv[t]
		qh := j.q[it*hd : (it+1)*hd]
		oh := j.out[it*hd : (it+1)*hd]
		clear(oh)
		if c.Len == 0 {
			continue
		}
		scores := j.scratch[w][:c.Len]
		maxScore := float32(math.Inf(-1))
		for p := range scores {
			s := dot(qh, c.K[p*kvDim+g*hd:p*kvDim+(g+1)*hd], j.simd) * scale
			scores[p] = s
			maxScore = max(maxScore, s)
		}
		var sum float32
		for p, s := range scores {
			e := expf(s - maxScore)
			scores[p] = e
			sum += e
		}
		for p, e := range scores {
			axpy(oh, e, c.V[p*kvDim+g*hd:p*kvDim+(g+1)*hd], j.simd)
		}
		inv := 1 / sum
		for i := range oh {
			oh[i] *= inv
		}
	}
}

// axpy: y += a·x.
func axpy(y []float32, a float32, x []float32, simd bool) {
	if simd && len(y) >= 8 {
		axpyAVX2(y, a, x)
		return
	}
	x = x[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		y[i] += a * x[i]
		y[i+1] += a * x[i+1]
		y[i+2] += a * x[i+2]
		y[i+3] += a * x[i+3]
	}
	for ; i < len(y); i++ {
		y[i] += a * x[i]
	}
}
