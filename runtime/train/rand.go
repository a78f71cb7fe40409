package train

import "math"

// The trainer's randomness is counter-based, so that it is a pure function
// of (Seed, what it is for) and bit-for-bit reproducible in Go on any
// machine: resuming a run needs no generator state beyond the step count,
// and gradient checkpointing regenerates the same dropout masks when it
// recomputes a layer.
//
// The generator is SplitMix64 (Steele, Lea & Flood 2014): state advances by
// the golden-ratio increment and each output is the state through the
// mix64 finalizer.

const goldenGamma = 0x9e3779b97f4a7c15

// mix64 is SplitMix64's output function (a bijective avalanche of x).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// splitmix is a SplitMix64 stream.
type splitmix struct{ state uint64 }

func (s *splitmix) next() uint64 {
	s.state += goldenGamma
	return mix64(s.state)
}

// float64 returns a uniform value in [0, 1) with 53 random bits.
func (s *splitmix) float64() float64 {
	return float64(s.next()>>11) * (1.0 / (1 << 53))
}

// hashString is FNV-1a, used to derive a stream per LoRA module name.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// streamSeed derives the starting state of a stream from the run's seed and
// any number of integer keys (step, micro-batch, module, ...).
func streamSeed(seed uint64, keys ...uint64) uint64 {
	h := mix64(seed ^ 0x5851f42d4c957f2d)
	for _, k := range keys {
		h = mix64(h ^ (k + goldenGamma))
	}
	return h
}

// initLoRAA fills a [rank, in] with PEFT's default init, kaiming_uniform_
// with a = √5, which is U(−1/√in, 1/√in) (PEFT tuners/lora/layer.py
// reset_lora_parameters). Each module draws from its own stream, seeded by
// the run's seed and the module's name, in row-major order: A[i] = (2u−1)/√in
// with u the i-th float64 of the stream, rounded to float32.
func initLoRAA(a []float32, in int, seed uint64, module string) {
	s := splitmix{state: streamSeed(seed, hashString(module))}
	bound := 1 / math.Sqrt(float64(in))
	for i := range a {
		a[i] = float32((2*s.float64() - 1) * bound)
	}
}
