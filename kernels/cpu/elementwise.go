package cpu

import (
	"math"
)

// eltGrain is the number of elements below which splitting an elementwise
// op across workers costs more than it saves.
const eltGrain = 16384

// normJob: items are tokens.
type normJob struct {
	out, x, weight []float32
	eps            float32
}

func (j *normJob) run(_, lo, hi int) {
	n := len(j.weight)
	for t := lo; t < hi; t++ {
		x := j.x[t*n : (t+1)*n]
		out := j.out[t*n : (t+1)*n]
		var s0, s1, s2, s3 float32
		i := 0
		for ; i+4 <= n; i += 4 {
			s0 += x[i] * x[i]
			s1 += x[i+1] * x[i+1]
			s2 += x[i+2] * x[i+2]
			s3 += x[i+3] * x[i+3]
		}
		for ; i < n; i++ {
			s0 += x[i] * x[i]
		}
		ss := (s0 + s1) + (s2 + s3)
		scale := float32(1 / math.Sqrt(float64(ss)/float64(n)+float64(j.eps)))
		w := j.weight[:n]
		for i, v := range x {
			out[i] = w[i] * (v * scale)
		}
	}
}

// ropeJob: items are tokens; scratch[w] holds the token's cos and sin.
type ropeJob struct {
	x               []float32
	pos             []int32
	nHeads, headDim int
	invFreq         []float32
	scratch         [][]float32
}

func (j *ropeJob) run(w, lo, hi int) {
	half := j.headDim / 2
	cos := j.scratch[w][:half]
	sin := j.scratch[w][half : 2*half]
	for t := lo; t < hi; t++ {
		p := float32(j.pos[t])
		for i := range cos {
			// The angle is rounded to float32 first, as transformers does.
			angle := float64(p * j.invFreq[i])
			cos[i] = float32(math.Cos(angle))
			sin[i] = float32(math.Sin(angle))
		}
		for h := 0; h < j.nHeads; h++ {
			base := (t*j.nHeads + h) * j.headDim
			x0 := j.x[base : base+half]
			x1 := j.x[base+half : base+2*half]
			for i := range x0 {
				a, b := x0[i], x1[i]
				x0[i] = a*cos[i] - b*sin[i]
				x1[i] = b*cos[i] + a*sin[i]
			}
		}
	}
}

type eltOp int

const (
	opSiLUMul eltOp = iota // out = silu(a)·b
	opAdd                  // out = a + b
)

// eltJob: items are elements.
type eltJob struct {
	op        eltOp
	out, a, b []float32
}

func (j *eltJob) run(_, lo, hi int) {
	out, a, b := j.out[lo:hi], j.a[lo:hi], j.b[lo:hi]
	switch j.op {
	case opSiLUMul:
		for i, g := range a {
			out[i] = g / (1 + expf(-g)) * b[i]
		}
	case opAdd:
		for i := range out {
			out[i] = a[i] + b[i]
		}
	}
}

// expf is e^x in float32 to within a few ulp: x = k·ln2 + r with |r| ≤ ln2/2,
// e^r by a degree-7 Taylor polynomial (truncation < 5e-9), scaled by 2^k.
// Inputs below the normal range give 0, above it +Inf.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693145751953125 // ln 2 split so that k·ln2hi is exact
		ln2lo = 1.428606765330187e-06
		round = 12582912 // 1.5·2²³: adding and subtracting it rounds to an integer
	)
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	if !(x >= -87.33654) { // also NaN
		if x != x {
			return x
		}
		return 0
	}
	k := (x*log2e + round) - round
	r := (x - k*ln2hi) - k*ln2lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	e := int32(k)
	if e > 127 { // 2^128 is not a float32; x ≤ 88.72 keeps p·2^128 finite
		p *= 2
		e--
	}
	return p * math.Float32frombits(uint32(e+127)<<23)
}
