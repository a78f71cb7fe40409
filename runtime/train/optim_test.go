package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/runtime/quant"
)

// The 8-bit optimizer alone against golden.py's Adam8bit on 600 elements
// (two full blocks and a partial one, one block with zero gradients for the
// first two steps, which exercises the all-zero block): the same float32
// operations in the same order, so codes and scales must agree exactly and
// parameters to the last bit.
func TestAdamW8bitMatchesGolden(t *testing.T) {
	g := readGolden(t)
	o := g.Optimizer8
	opts, err := goldenOptions(g, AdamW8bit).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	p := append([]float32(nil), o.P0...)
	s := newParamState(len(p), opts)
	if !s.eightBit || len(s.abs1) != 3 {
		t.Fatalf("600 elements with min_8bit_size %d: eightBit %v, %d blocks", opts.Min8bitSize, s.eightBit, len(s.abs1))
	}
	q := newCodes8bit()
	for k, grad := range o.Grads {
		s.update(p, grad, hyper{lr: o.LRs[k], beta1: opts.Beta1, beta2: opts.Beta2, eps: opts.Eps, wd: opts.WeightDecay, step: k + 1}, AdamW8bit, q)
	}
	for i := range p {
		if math.Float32bits(p[i]) != math.Float32bits(o.P[i]) {
			t.Fatalf("p[%d] = %v, golden %v", i, p[i], o.P[i])
		}
		if s.c1[i] != o.C1[i] || s.c2[i] != o.C2[i] {
			t.Fatalf("codes[%d] = %d, %d; golden %d, %d", i, s.c1[i], s.c2[i], o.C1[i], o.C2[i])
		}
	}
	for b := range s.abs1 {
		if s.abs1[b] != o.Absmax1[b] || s.abs2[b] != o.Absmax2[b] {
			t.Fatalf("absmax[%d] = %v, %v; golden %v, %v", b, s.abs1[b], s.abs2[b], o.Absmax1[b], o.Absmax2[b])
		}
	}
}

// quantize2D is the nearest code, and on a midpoint between two codes it
// keeps the one its binary search reached (checked against a brute-force
// nearest search, which must agree everywhere off the midpoints).
func TestQuantize2DIsNearestCode(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		signed bool
		code   [256]float32
	}{{true, quant.SignedDynamicMap()}, {false, quant.UnsignedDynamicMap()}} {
		lo := float32(0)
		if c.signed {
			lo = -1
		}
		xs := []float32{lo, 1, 0, c.code[0], c.code[255], c.code[127], c.code[128]}
		for range 20000 {
			xs = append(xs, lo+(1-lo)*rng.Float32())
		}
		for i := 0; i+1 < 256; i++ {
			mid := (c.code[i] + c.code[i+1]) / 2
			xs = append(xs, c.code[i], math.Nextafter32(mid, -2), math.Nextafter32(mid, 2))
		}
		for _, x := range xs {
			got := quantize2D(&c.code, c.signed, x)
			best := 0
			for j := range c.code {
				if math.Abs(float64(x-c.code[j])) < math.Abs(float64(x-c.code[best])) {
					best = j
				}
			}
			if math.Abs(float64(x-c.code[got])) != math.Abs(float64(x-c.code[best])) {
				t.Fatalf("signed=%v x=%v: code %d (%v), nearest is %d (%v)", c.signed, x, got, c.code[got], best, c.code[best])
			}
		}
		// An all-zero block divides 0 by 0: NaN lands on code 0.
		if got := quantize2D(&c.code, c.signed, float32(math.NaN())); got != 0 {
			t.Fatalf("NaN quantizes to %d, want 0", got)
		}
	}
}

// The linear schedule with warmup, values from transformers'
// get_linear_schedule_with_warmup (optimization.py).
func TestLearningRateSchedule(t *testing.T) {
	o := Options{LearningRate: 2e-4, WarmupSteps: 5, TotalSteps: 60}
	for _, c := range []struct {
		s    int
		want float64
	}{{0, 0}, {1, 0.4e-4}, {4, 1.6e-4}, {5, 2e-4}, {6, 2e-4 * 54.0 / 55}, {59, 2e-4 / 55}, {60, 0}, {70, 0}} {
		if got := o.LearningRateAt(c.s); math.Abs(got-c.want) > 1e-18 {
			t.Errorf("lr(%d) = %v, want %v", c.s, got, c.want)
		}
	}
	o.WarmupSteps = 0
	if got := o.LearningRateAt(0); got != 2e-4 {
		t.Errorf("no warmup: lr(0) = %v, want 2e-4", got)
	}
}

// adamWTorch against the update written out in float64 (torch.optim.AdamW's
// _single_tensor_adamw) for a few steps: float32 rounding only.
func TestAdamWTorchFormula(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 50
	p := make([]float32, n)
	for i := range p {
		p[i] = float32(rng.NormFloat64())
	}
	p64 := make([]float64, n)
	m64, v64 := make([]float64, n), make([]float64, n)
	for i := range p {
		p64[i] = float64(p[i])
	}
	s := paramState{m: make([]float32, n), v: make([]float32, n)}
	h := hyper{lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.1}
	for k := 1; k <= 5; k++ {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(rng.NormFloat64())
		}
		h.step = k
		adamWTorch(p, g, &s, h)
		for i := range p64 {
			gi := float64(g[i])
			p64[i] *= 1 - h.lr*h.wd
			m64[i] = h.beta1*m64[i] + (1-h.beta1)*gi
			v64[i] = h.beta2*v64[i] + (1-h.beta2)*gi*gi
			denom := math.Sqrt(v64[i])/math.Sqrt(1-math.Pow(h.beta2, float64(k))) + h.eps
			p64[i] -= h.lr / (1 - math.Pow(h.beta1, float64(k))) * m64[i] / denom
		}
	}
	for i := range p {
		if math.Abs(float64(p[i])-p64[i]) > 1e-6*math.Max(1, math.Abs(p64[i])) {
			t.Fatalf("p[%d] = %v, float64 formula %v", i, p[i], p64[i])
		}
	}
}
