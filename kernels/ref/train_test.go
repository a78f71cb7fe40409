package ref

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

// Every backward op is checked against central finite differences of a
// float64 forward written out here from its definition, on small random
// shapes; the float32 forward ops of Backend are checked against the same
// float64 forwards, which ties the gradients to the ops the model runs.
//
// In float64 with h = 1e-5 the central difference is exact to ~1e-10, so the
// only error left is the float32 rounding of the gradient: tolerances are
// 1e-5 of the largest gradient component.

const fdStep = 1e-5

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// dotR is the scalar loss L = Σ r[i]·y[i] whose gradient with respect to y is r.
func dotR(r []float32, y []float64) float64 {
	var s float64
	for i, v := range y {
		s += float64(r[i]) * v
	}
	return s
}

// fdCheck compares grad with the central differences of loss at x, one
// component at a time.
func fdCheck(t *testing.T, what string, x []float32, loss func(x []float64) float64, grad []float32) {
	t.Helper()
	if len(grad) != len(x) {
		t.Fatalf("%s: gradient has %d components, input %d", what, len(grad), len(x))
	}
	xs := to64(x)
	num := make([]float64, len(x))
	var scale float64
	for i := range xs {
		orig := xs[i]
		xs[i] = orig + fdStep
		up := loss(xs)
		xs[i] = orig - fdStep
		down := loss(xs)
		xs[i] = orig
		num[i] = (up - down) / (2 * fdStep)
		scale = math.Max(scale, math.Abs(num[i]))
	}
	if scale == 0 {
		t.Fatalf("%s: the loss does not depend on the input (test is vacuous)", what)
	}
	for i := range num {
		if d := math.Abs(float64(grad[i]) - num[i]); d > 1e-5*scale {
			t.Fatalf("%s[%d]: analytic %.8g, finite difference %.8g (|diff| %.3g, scale %.3g)", what, i, grad[i], num[i], d, scale)
		}
	}
}

// near64 checks a float32 op output against its float64 definition.
func near64(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > tol*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %.8g, want %.8g", what, i, got[i], want[i])
		}
	}
}

// ---- float64 forwards (the definitions) ----

func matmul64(x []float64, w kernels.Matrix, T int) []float64 {
	rows, cols := w.Shape()
	y := make([]float64, T*rows)
	for t := 0; t < T; t++ {
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				y[t*rows+r] += float64(Element(w, r, c)) * x[t*cols+c]
			}
		}
	}
	return y
}

func rmsnorm64(x []float64, w []float32, eps float32) []float64 {
	n := len(w)
	y := make([]float64, len(x))
	for t := 0; t < len(x)/n; t++ {
		var ss float64
		for i := 0; i < n; i++ {
			ss += x[t*n+i] * x[t*n+i]
		}
		s := 1 / math.Sqrt(ss/float64(n)+float64(eps))
		for i := 0; i < n; i++ {
			y[t*n+i] = float64(w[i]) * x[t*n+i] * s
		}
	}
	return y
}

// rope64 uses the float32 angles and cos/sin of the reference RoPE, so only
// the rotation itself is in float64.
func rope64(x []float64, pos []int32, nHeads, headDim int, invFreq []float32) []float64 {
	y := append([]float64(nil), x...)
	half := headDim / 2
	for t, p := range pos {
		for i := 0; i < half; i++ {
			angle := float32(p) * invFreq[i]
			c := float64(float32(math.Cos(float64(angle))))
			s := float64(float32(math.Sin(float64(angle))))
			for h := 0; h < nHeads; h++ {
				base := (t*nHeads + h) * headDim
				x0, x1 := x[base+i], x[base+i+half]
				y[base+i] = x0*c - x1*s
				y[base+i+half] = x1*c + x0*s
			}
		}
	}
	return y
}

// attention64 is causal attention within B sequences of T tokens (GQA).
func attention64(q, k, v []float64, B, T, nHeads, nKVHeads, headDim int) (out, lse []float64) {
	group := nHeads / nKVHeads
	out = make([]float64, B*T*nHeads*headDim)
	lse = make([]float64, B*T*nHeads)
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			for h := 0; h < nHeads; h++ {
				g := h / group
				qrow := ((b*T+t)*nHeads + h) * headDim
				s := make([]float64, t+1)
				m := math.Inf(-1)
				for j := range s {
					krow := ((b*T+j)*nKVHeads + g) * headDim
					for i := 0; i < headDim; i++ {
						s[j] += q[qrow+i] * k[krow+i]
					}
					s[j] /= math.Sqrt(float64(headDim))
					m = math.Max(m, s[j])
				}
				var sum float64
				for _, sj := range s {
					sum += math.Exp(sj - m)
				}
				for j, sj := range s {
					p := math.Exp(sj-m) / sum
					vrow := ((b*T+j)*nKVHeads + g) * headDim
					for i := 0; i < headDim; i++ {
						out[qrow+i] += p * v[vrow+i]
					}
				}
				lse[(b*T+t)*nHeads+h] = m + math.Log(sum)
			}
		}
	}
	return out, lse
}

func silumul64(g, u []float64) []float64 {
	y := make([]float64, len(g))
	for i := range g {
		y[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
	}
	return y
}

// ce64 is Σ_t scale·CE(logits[t], labels[t]) over rows with a label.
func ce64(logits []float64, labels []int32, scale float64) (total float64, rows []float64) {
	V := len(logits) / len(labels)
	rows = make([]float64, len(labels))
	for t, lab := range labels {
		if lab == kernels.IgnoreIndex {
			continue
		}
		row := logits[t*V : (t+1)*V]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, v)
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(v - m)
		}
		rows[t] = m + math.Log(sum) - row[lab]
		total += scale * rows[t]
	}
	return total, rows
}

// lora64 is y = scale·B·(A·x) for T tokens.
func lora64(x, a, b []float64, T, in, out, rank int, scale float64) []float64 {
	y := make([]float64, T*out)
	for t := 0; t < T; t++ {
		z := make([]float64, rank)
		for r := 0; r < rank; r++ {
			for i := 0; i < in; i++ {
				z[r] += a[r*in+i] * x[t*in+i]
			}
		}
		for o := 0; o < out; o++ {
			for r := 0; r < rank; r++ {
				y[t*out+o] += scale * b[o*rank+r] * z[r]
			}
		}
	}
	return y
}

// ---- tests ----

// randNF4 returns a rows×cols NF4 matrix with random nibbles and scales.
func randNF4(rng *rand.Rand, rows, cols int) *kernels.NF4Matrix {
	n := rows * cols
	m := &kernels.NF4Matrix{Rows: rows, Cols: cols, Packed: make([]byte, (n+1)/2),
		Absmax: make([]float32, (n+kernels.NF4BlockSize-1)/kernels.NF4BlockSize), Code: kernels.NF4Code}
	for i := range m.Packed {
		m.Packed[i] = byte(rng.IntN(256))
	}
	for i := range m.Absmax {
		m.Absmax[i] = 0.1 + rng.Float32()
	}
	return m
}

func TestMatMulTFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const T = 3
	for _, w := range []kernels.Matrix{
		&kernels.F32Matrix{Rows: 5, Cols: 7, Data: randVec(rng, 35)},
		randNF4(rng, 5, 27), // blocks straddle rows, odd element count
		randNF4(rng, 3, 64),
	} {
		rows, cols := w.Shape()
		x, r := randVec(rng, T*cols), randVec(rng, T*rows)
		y := make([]float32, T*rows)
		Backend{}.MatMul(hb(y), hb(x), w, T)
		near64(t, "MatMul", y, matmul64(to64(x), w, T), 1e-6)
		dx := make([]float32, T*cols)
		Backend{}.MatMulT(hb(dx), hb(r), w, T)
		fdCheck(t, "MatMulT dx", x, func(x []float64) float64 { return dotR(r, matmul64(x, w, T)) }, dx)
	}
}

func TestRMSNormBackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 1))
	const T, n, eps = 3, 6, float32(1e-5)
	x, w, r := randVec(rng, T*n), randVec(rng, n), randVec(rng, T*n)
	y := make([]float32, T*n)
	Backend{}.RMSNorm(hb(y), hb(x), hb(w), eps)
	near64(t, "RMSNorm", y, rmsnorm64(to64(x), w, eps), 1e-6)
	dx := make([]float32, T*n)
	Backend{}.RMSNormBackward(hb(dx), hb(r), hb(x), hb(w), eps)
	fdCheck(t, "RMSNormBackward dx", x, func(x []float64) float64 { return dotR(r, rmsnorm64(x, w, eps)) }, dx)
	// dx may alias dy.
	alias := append([]float32(nil), r...)
	Backend{}.RMSNormBackward(hb(alias), hb(alias), hb(x), hb(w), eps)
	near64(t, "RMSNormBackward aliased", alias, to64(dx), 0)
}

func TestRoPEBackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 1))
	const nHeads, headDim = 2, 6
	pos := []int32{0, 3, 17, 1000}
	inv := []float32{1, 0.1, 0.003}
	n := len(pos) * nHeads * headDim
	x, r := randVec(rng, n), randVec(rng, n)
	y := append([]float32(nil), x...)
	Backend{}.RoPE(hb(y), hi(pos), nHeads, headDim, hb(inv))
	near64(t, "RoPE", y, rope64(to64(x), pos, nHeads, headDim, inv), 1e-6)
	dx := append([]float32(nil), r...)
	Backend{}.RoPEBackward(hb(dx), hi(pos), nHeads, headDim, hb(inv))
	fdCheck(t, "RoPEBackward dx", x, func(x []float64) float64 { return dotR(r, rope64(x, pos, nHeads, headDim, inv)) }, dx)
}

func TestAttentionBackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 1))
	for _, c := range []struct{ B, T, nHeads, nKVHeads, headDim int }{
		{2, 5, 4, 2, 4}, // GQA, two sequences
		{1, 4, 3, 3, 2}, // MHA
		{1, 3, 4, 1, 3}, // MQA, odd head dim
	} {
		qd, kd := c.nHeads*c.headDim, c.nKVHeads*c.headDim
		N := c.B * c.T
		q, k, v, r := randVec(rng, N*qd), randVec(rng, N*kd), randVec(rng, N*kd), randVec(rng, N*qd)
		out, lse := make([]float32, N*qd), make([]float32, N*c.nHeads)
		Backend{}.AttentionForwardTrain(hb(out), hb(lse), hb(q), hb(k), hb(v), c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
		wantOut, wantLSE := attention64(to64(q), to64(k), to64(v), c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
		near64(t, "AttentionForwardTrain out", out, wantOut, 1e-6)
		near64(t, "AttentionForwardTrain lse", lse, wantLSE, 1e-6)

		// The training forward agrees with the serving op on each sequence:
		// sequence b's keys are rows b*T.. of k, one block of T positions.
		seq, pos, tables := make([]int32, N), make([]int32, N), make([]int32, c.B)
		for b := 0; b < c.B; b++ {
			tables[b] = int32(b)
			for tt := 0; tt < c.T; tt++ {
				seq[b*c.T+tt], pos[b*c.T+tt] = int32(b), int32(tt)
			}
		}
		meta := kernels.AttnMeta{Seq: hi(seq), Pos: hi(pos), BlockTables: hi(tables), MaxBlocks: 1, BlockSize: c.T, MaxLen: c.T}
		serve := make([]float32, N*qd)
		Backend{}.PagedAttention(hb(serve), hb(q), kernels.KVLayer{K: hb(k), V: hb(v)}, meta, c.nHeads, c.nKVHeads, c.headDim)
		near64(t, "Attention (serving) vs training forward", serve, to64(out), 1e-6)

		dq, dk, dv := make([]float32, N*qd), make([]float32, N*kd), make([]float32, N*kd)
		Backend{}.AttentionBackward(hb(dq), hb(dk), hb(dv), hb(r), hb(out), hb(lse), hb(q), hb(k), hb(v), c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
		f := func(q, k, v []float64) float64 {
			o, _ := attention64(q, k, v, c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
			return dotR(r, o)
		}
		fdCheck(t, "AttentionBackward dq", q, func(x []float64) float64 { return f(x, to64(k), to64(v)) }, dq)
		fdCheck(t, "AttentionBackward dk", k, func(x []float64) float64 { return f(to64(q), x, to64(v)) }, dk)
		fdCheck(t, "AttentionBackward dv", v, func(x []float64) float64 { return f(to64(q), to64(k), x) }, dv)
	}
}

func TestSiLUMulBackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 1))
	const n = 13
	g, u, r := randVec(rng, n), randVec(rng, n), randVec(rng, n)
	g[0], g[1] = 12, -12 // saturated sigmoid on both sides
	y := make([]float32, n)
	Backend{}.SiLUMul(hb(y), hb(g), hb(u))
	near64(t, "SiLUMul", y, silumul64(to64(g), to64(u)), 1e-6)
	dg, du := make([]float32, n), make([]float32, n)
	Backend{}.SiLUMulBackward(hb(dg), hb(du), hb(r), hb(g), hb(u))
	fdCheck(t, "SiLUMulBackward dgate", g, func(x []float64) float64 { return dotR(r, silumul64(x, to64(u))) }, dg)
	fdCheck(t, "SiLUMulBackward dup", u, func(x []float64) float64 { return dotR(r, silumul64(to64(g), x)) }, du)
}

func TestCrossEntropyFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 1))
	const T, V = 4, 9
	logits := randVec(rng, T*V)
	logits[2*V+3] = 40 // a confident row: the max must be subtracted
	labels := []int32{3, kernels.IgnoreIndex, 3, 8}
	const scale = float32(1.0 / 3) // three label tokens in the step
	loss, dl := make([]float32, T), make([]float32, T*V)
	Backend{}.CrossEntropy(hb(loss), hb(dl), hb(logits), hi(labels), scale)
	_, rows := ce64(to64(logits), labels, float64(scale))
	near64(t, "CrossEntropy loss", loss, rows, 1e-6)
	fdCheck(t, "CrossEntropy dlogits", logits, func(x []float64) float64 {
		total, _ := ce64(x, labels, float64(scale))
		return total
	}, dl)
	for i := V; i < 2*V; i++ {
		if dl[i] != 0 {
			t.Fatalf("ignored row has gradient %v at %d", dl[i], i)
		}
	}
	// dlogits may alias logits.
	inPlace := append([]float32(nil), logits...)
	Backend{}.CrossEntropy(hb(loss), hb(inPlace), hb(inPlace), hi(labels), scale)
	near64(t, "CrossEntropy in place", inPlace, to64(dl), 0)
}

func TestLoRABackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 1))
	const T, in, out, rank = 3, 5, 4, 2
	const scale = float32(2.5)
	x, a, b, r := randVec(rng, T*in), randVec(rng, rank*in), randVec(rng, out*rank), randVec(rng, T*out)
	base := randVec(rng, T*out)
	y, z := append([]float32(nil), base...), make([]float32, T*rank)
	Backend{}.LoRAForward(hb(y), hb(z), hb(x), hb(a), hb(b), T, in, out, rank, scale)
	want := lora64(to64(x), to64(a), to64(b), T, in, out, rank, float64(scale))
	for i := range want {
		want[i] += float64(base[i])
	}
	near64(t, "LoRAForward", y, want, 1e-6)

	// Gradients accumulate onto what is already there.
	prevA, prevB, prevX := randVec(rng, rank*in), randVec(rng, out*rank), randVec(rng, T*in)
	dA, dB, dx := append([]float32(nil), prevA...), append([]float32(nil), prevB...), append([]float32(nil), prevX...)
	Backend{}.LoRABackward(hb(dA), hb(dB), hb(dx), hb(x), hb(z), hb(r), hb(a), hb(b), T, in, out, rank, scale)
	for i := range dA {
		dA[i] -= prevA[i]
	}
	for i := range dB {
		dB[i] -= prevB[i]
	}
	for i := range dx {
		dx[i] -= prevX[i]
	}
	f := func(x, a, b []float64) float64 { return dotR(r, lora64(x, a, b, T, in, out, rank, float64(scale))) }
	fdCheck(t, "LoRABackward dA", a, func(v []float64) float64 { return f(to64(x), v, to64(b)) }, dA)
	fdCheck(t, "LoRABackward dB", b, func(v []float64) float64 { return f(to64(x), to64(a), v) }, dB)
	fdCheck(t, "LoRABackward dx", x, func(v []float64) float64 { return f(v, to64(a), to64(b)) }, dx)
}
