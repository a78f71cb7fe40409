package train

import (
	"math"

	"github.com/parrot-llm/parrot/runtime/quant"
)

// The two AdamW variants, torch.optim.AdamW and bitsandbytes' 8-bit AdamW,
// element by element in float32 as the reference kernels compute them.
// Hyper-parameters arrive as float64 and are rounded to float32 once per
// step, as they are when passed to a kernel.

// blockSize8bit is bitsandbytes' 8-bit optimizer block (0.44.0 and later).
const blockSize8bit = 256

// paramState is the optimizer state of one LoRA tensor of n elements.
type paramState struct {
	eightBit bool
	m, v     []float32 // [n] 32-bit moments (adamw_torch, or bnb's fallback for small tensors)
	// 8-bit blockwise moments: element i is code[c[i]]·absmax[i/256].
	c1, c2     []uint8   // [n] codes of m (signed map) and v (unsigned map)
	abs1, abs2 []float32 // [ceil(n/256)]
}

func newParamState(n int, opts Options) paramState {
	if opts.Optim == AdamW8bit && n >= opts.Min8bitSize {
		nb := (n + blockSize8bit - 1) / blockSize8bit
		return paramState{eightBit: true, c1: make([]uint8, n), c2: make([]uint8, n),
			abs1: make([]float32, nb), abs2: make([]float32, nb)}
	}
	return paramState{m: make([]float32, n), v: make([]float32, n)}
}

// bytes is the memory the state holds.
func (s *paramState) bytes() int64 {
	return int64(4*(len(s.m)+len(s.v)+len(s.abs1)+len(s.abs2)) + len(s.c1) + len(s.c2))
}

// hyper are one step's hyper-parameters.
type hyper struct {
	lr, beta1, beta2, eps, wd float64
	step                      int // 1-based count of updates of this tensor
}

// adamWTorch is torch.optim.AdamW's single-tensor step (torch/optim/adamw.py
// _single_tensor_adamw): decoupled decay first, then the bias-corrected Adam
// update.
func adamWTorch(p, g []float32, s *paramState, h hyper) {
	decay := float32(1 - h.lr*h.wd)
	b1, b2 := float32(h.beta1), float32(h.beta2)
	a1, a2 := float32(1-h.beta1), float32(1-h.beta2)
	bc1 := 1 - math.Pow(h.beta1, float64(h.step))
	bc2Sqrt := float32(math.Sqrt(1 - math.Pow(h.beta2, float64(h.step))))
	stepSize := float32(-h.lr / bc1)
	eps := float32(h.eps)
	for i, gi := range g {
		pi := p[i] * decay
		m := s.m[i]*b1 + a1*gi
		v := s.v[i]*b2 + float32(a2*gi)*gi
		denom := float32(float32(math.Sqrt(float64(v)))/bc2Sqrt) + eps
		p[i] = pi + stepSize*float32(m/denom)
		s.m[i], s.v[i] = m, v
	}
}

// bnbCorrections are the bias corrections of bitsandbytes' kernels:
// c1 = 1−β1^t, c2 = √(1−β2^t), stepSize = −lr·c2/c1 (float32).
func bnbCorrections(h hyper) (c2, stepSize float32) {
	c1 := float32(1 - math.Pow(h.beta1, float64(h.step)))
	c2 = float32(math.Sqrt(1 - math.Pow(h.beta2, float64(h.step))))
	return c2, float32(-float32(h.lr)*c2) / c1
}

// adamW32bit is bitsandbytes' 32-bit Adam kernel (kOptimizer32bit2State),
// used for tensors below min_8bit_size: the update first, then the decay.
func adamW32bit(p, g []float32, s *paramState, h hyper) {
	c2, stepSize := bnbCorrections(h)
	b1, b2 := float32(h.beta1), float32(h.beta2)
	a1, a2 := float32(1-h.beta1), float32(1-h.beta2)
	epsC2 := float32(h.eps) * c2
	lr, wd := float32(h.lr), float32(h.wd)
	for i, gi := range g {
		m := s.m[i]*b1 + a1*gi
		v := s.v[i]*b2 + a2*float32(gi*gi)
		pi := p[i] + stepSize*float32(m/float32(float32(math.Sqrt(float64(v)))+epsC2))
		if wd > 0 {
			pi *= 1 - lr*wd
		}
		p[i], s.m[i], s.v[i] = pi, m, v
	}
}

// codes8bit are the dynamic maps of the 8-bit states (bitsandbytes
// functional.py create_dynamic_map, signed for m and unsigned for v, as
// optim/optimizer.py fill_qmap makes them).
type codes8bit struct {
	signed, unsigned [256]float32
}

func newCodes8bit() *codes8bit {
	return &codes8bit{signed: quant.SignedDynamicMap(), unsigned: quant.UnsignedDynamicMap()}
}

// quantize2D is bitsandbytes' quantize_2D: a 7-step binary search of the
// sorted code for x, then the nearer of the last pivot and its neighbour
// (midpoints in float32; a value on a midpoint keeps the pivot). The
// search starts with lower = −1 (signed) or 0 and upper = 1. A NaN (0/0 in
// an all-zero block) compares false throughout and lands on code 0.
func quantize2D(code *[256]float32, signed bool, x float32) uint8 {
	pivot, upperPivot, lowerPivot := 127, 255, 0
	lower, upper := float32(0), float32(1)
	if signed {
		lower = -1
	}
	val := code[pivot]
	for i := 64; i > 0; i >>= 1 {
		if x > val {
			lowerPivot, lower = pivot, val
			pivot += i
		} else {
			upperPivot, upper = pivot, val
			pivot -= i
		}
		val = code[pivot]
	}
	if x > val {
		if x > float32(upper+val)*0.5 {
			return uint8(upperPivot)
		}
		return uint8(pivot)
	}
	if x < float32(lower+val)*0.5 {
		return uint8(lowerPivot)
	}
	return uint8(pivot)
}

// adamW8bit is bitsandbytes' kOptimizerStatic8bit2StateBlockwise for Adam
// (csrc/kernels.cu), one block of 256 at a time: dequantize both moments,
// update them, take the block's new absmax from the new values, update the
// parameter (decay after the step), and requantize, keeping m's sign.
//
// A partial last block runs as on the GPU with its missing lanes loaded as
// g = 0, m code 128, v code 0: their m = code[128]·absmax·β1 still enters
// the block's new absmax.
func adamW8bit(p, g []float32, s *paramState, h hyper, q *codes8bit) {
	c2, stepSize := bnbCorrections(h)
	b1, b2 := float32(h.beta1), float32(h.beta2)
	a1, a2 := float32(1-h.beta1), float32(1-h.beta2)
	epsC2 := float32(h.eps) * c2
	lr, wd := float32(h.lr), float32(h.wd)
	var m, v [blockSize8bit]float32
	for blk := range s.abs1 {
		lo, hi := blk*blockSize8bit, min((blk+1)*blockSize8bit, len(p))
		max1, max2 := float32(-math.MaxFloat32), float32(-math.MaxFloat32)
		for j := lo; j < hi; j++ {
			gj := g[j]
			if math.IsNaN(float64(gj)) || math.IsInf(float64(gj), 0) {
				m[j-lo], v[j-lo] = 0, 0
			} else {
				v[j-lo] = float32(q.unsigned[s.c2[j]]*s.abs2[blk])*b2 + float32(a2*gj)*gj
				m[j-lo] = float32(q.signed[s.c1[j]]*s.abs1[blk])*b1 + a1*gj
			}
			max1 = max(max1, abs32(m[j-lo]))
			max2 = max(max2, abs32(v[j-lo]))
		}
		if hi-lo < blockSize8bit {
			max1 = max(max1, abs32(float32(q.signed[128]*s.abs1[blk])*b1))
			max2 = max(max2, 0)
		}
		s.abs1[blk], s.abs2[blk] = max1, max2
		for j := lo; j < hi; j++ {
			mj, vj := m[j-lo], v[j-lo]
			if gj := g[j]; !math.IsNaN(float64(gj)) && !math.IsInf(float64(gj), 0) {
				pj := p[j] + stepSize*float32(mj/float32(float32(math.Sqrt(float64(vj)))+epsC2))
				if wd > 0 {
					pj *= 1 - lr*wd
				}
				p[j] = pj
			}
			c := quantize2D(&q.signed, true, mj/max1)
			if math.Signbit(float64(q.signed[c])) != math.Signbit(float64(mj)) {
				if mj > 0 {
					c++
				} else {
					c-- // wraps 0 → 255 as the kernel's unsigned char does
				}
			}
			s.c1[j] = c
			s.c2[j] = quantize2D(&q.unsigned, false, vj/max2)
		}
	}
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// update applies one optimizer step to parameter p with gradient g.
func (s *paramState) update(p, g []float32, h hyper, optim string, q *codes8bit) {
	switch {
	case s.eightBit:
		adamW8bit(p, g, s, h, q)
	case optim == AdamW8bit:
		adamW32bit(p, g, s, h)
	default:
		adamWTorch(p, g, s, h)
	}
}
