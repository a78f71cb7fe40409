package sampler

import "math"

// exp32 returns e^x for x <= 0 with a relative error of a few float32 ulps,
// and 0 below the smallest normal float32 (x < -87.3). Sampling with top_p
// or plain temperature exponentiates the whole vocabulary every step, and
// math.Exp's long dependency chain made that the bottleneck.
//
// Method: x = n·ln2 + r with n = round(x·log2 e) and |r| <= ln2/2; e^r by its
// Taylor series to r^7 (truncation error r^8/8! < 1e-8 there), evaluated in
// Estrin's scheme so the dependency chain stays short; 2^n by writing the
// exponent bits.
func exp32(x float32) float32 {
	const (
		log2e = 1.44269504088896340736
		ln2Hi = 0.693359375 // ln 2 split so that n·ln2Hi is exact
		ln2Lo = -2.12194440e-4
		minX  = -87.3    // e^minX is just above the smallest normal float32
		magic = 12582912 // 1.5·2^23: adding it rounds to an integer kept in the low mantissa bits
	)
	if !(x >= minX) { // also NaN
		return 0
	}
	x = min(x, 0)
	t := x*log2e + magic
	n := t - magic
	r := x - n*ln2Hi - n*ln2Lo
	r2 := r * r
	p := (1 + r) + r2*(1.0/2+r*(1.0/6)) +
		r2*r2*((1.0/24+r*(1.0/120))+r2*(1.0/720+r*(1.0/5040)))
	k := math.Float32bits(t) - math.Float32bits(magic) // n as an integer (mod 2^32)
	return p * math.Float32frombits((k+127)<<23)
}
