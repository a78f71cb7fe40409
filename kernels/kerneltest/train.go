package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

// The training ops against kernels/ref, whose backward ops are checked
// against finite differences there. Sums may be reordered, so a reduction
// is allowed 1e-5 of the sum of its absolute terms, elementwise results a
// few float32 ulps.

// RunTrain checks every op of kernels.TrainBackend against ref. It skips a
// backend that does not implement the interface.
func RunTrain(t *testing.T, b kernels.Backend) {
	tb, ok := b.(kernels.TrainBackend)
	if !ok {
		t.Skipf("backend %s does not implement kernels.TrainBackend", b.Name())
	}
	t.Run("MatMulT", func(t *testing.T) { testMatMulT(t, tb) })
	t.Run("RMSNormBackward", func(t *testing.T) { testRMSNormBackward(t, tb) })
	t.Run("SiLUMulBackward", func(t *testing.T) { testSiLUMulBackward(t, tb) })
	t.Run("RoPEBackward", func(t *testing.T) { testRoPEBackward(t, tb) })
	t.Run("Attention", func(t *testing.T) { testAttentionTrain(t, tb) })
	t.Run("CrossEntropy", func(t *testing.T) { testCrossEntropy(t, tb) })
	t.Run("LoRA", func(t *testing.T) { testLoRATrain(t, tb) })
}

// within fails at the first i with |got−want| > rel·tol[i], or with tol nil
// > rel·max(max|want|, 1): the inputs are O(1), so that is the size of the
// terms even where they cancel to a small result.
func within(t *testing.T, what string, got, want, tol []float32, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	scale := 1.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	for i := range want {
		lim := rel * scale
		if tol != nil {
			lim = rel * float64(tol[i])
		}
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= lim) {
			t.Fatalf("%s[%d] = %v, want %v (|diff| %.3g > %.3g)", what, i, got[i], want[i], d, lim)
		}
	}
}

func testMatMulT(t *testing.T, b kernels.TrainBackend) {
	rng := rand.New(rand.NewPCG(11, 1))
	m := newMem(t, b)
	skipped := map[string]bool{}
	for _, c := range []struct{ rows, cols, T int }{
		{1, 1, 1}, {5, 7, 3}, {3, 50, 2}, {64, 64, 9}, {7, 200, 5}, {130, 97, 17}, {33, 300, 4}, {9, 96, 3},
	} {
		dy := Vec(rng, c.T*c.rows)
		ws := []kernels.Matrix{F32(rng, c.rows, c.cols), NF4(rng, c.rows, c.cols, kernels.NF4Code), BF16(rng, c.rows, c.cols)}
		if c.cols%kernels.Q8BlockSize == 0 {
			ws = append(ws, Q8(rng, c.rows, c.cols))
		}
		for _, w := range ws {
			if err := kernels.CheckMatrix(b, w); err != nil {
				if kind := fmt.Sprintf("%T", w); !skipped[kind] {
					skipped[kind] = true
					t.Logf("skipping %s: %v", kind, err)
				}
				continue
			}
			what := fmt.Sprintf("MatMulT %T [%d,%d] T=%d", w, c.rows, c.cols, c.T)
			got := m.out(c.T * c.cols)
			b.MatMulT(got.buf(), m.in(dy), m.upload(w), c.T)
			want, bound := make([]float32, c.T*c.cols), make([]float32, c.T*c.cols)
			rb.MatMulT(hb(want), hb(dy), w, c.T)
			rb.MatMulT(hb(bound), hb(abs(dy)), absDense(w), c.T)
			within(t, what, m.read(what, got), want, bound, SumTol)
			m.reset()
		}
	}
}

// rmsTerms bounds the magnitude of the two terms of RMSNormBackward, which
// can cancel: |s·w·dy| + s³/n·|x|·Σ|dy·w·x|.
func rmsTerms(dy, x, w []float32, eps float64) []float32 {
	n := len(w)
	b := make([]float32, len(x))
	for t := 0; t < len(x)/n; t++ {
		var ss, sum float64
		for i := 0; i < n; i++ {
			v := float64(x[t*n+i])
			ss += v * v
			sum += math.Abs(float64(dy[t*n+i]) * float64(w[i]) * v)
		}
		s := 1 / math.Sqrt(ss/float64(n)+eps)
		for i := 0; i < n; i++ {
			b[t*n+i] = float32(math.Abs(s*float64(w[i]*dy[t*n+i])) + s*s*s/float64(n)*sum*math.Abs(float64(x[t*n+i])))
		}
	}
	return b
}

// siluTerms bounds the terms of dgate = dout·up·σ·(1 + g·(1−σ)), whose
// bracket cancels near g ≈ −1.28.
func siluTerms(dout, gate, up []float32) []float32 {
	b := make([]float32, len(gate))
	for i, g := range gate {
		sig := 1 / (1 + math.Exp(-float64(g)))
		b[i] = float32(math.Abs(float64(dout[i]*up[i])*sig) * (1 + math.Abs(float64(g))*(1-sig)))
	}
	return b
}

func testRMSNormBackward(t *testing.T, b kernels.TrainBackend) {
	rng := rand.New(rand.NewPCG(12, 1))
	m := newMem(t, b)
	for _, n := range []int{1, 7, 64, 130} {
		const T = 5
		x, dy, w := Vec(rng, T*n), Vec(rng, T*n), Vec(rng, n)
		want := make([]float32, T*n)
		rb.RMSNormBackward(hb(want), hb(dy), hb(x), hb(w), 1e-5)
		what := fmt.Sprintf("RMSNormBackward n %d", n)
		got, xb, wb := m.out(T*n), m.in(x), m.in(w)
		b.RMSNormBackward(got.buf(), m.in(dy), xb, wb, 1e-5)
		within(t, what, m.read(what, got), want, rmsTerms(dy, x, w, 1e-5), 1e-5)
		// dx may alias dy.
		alias := m.outWith(dy, T*n)
		b.RMSNormBackward(alias.buf(), alias.buf(), xb, wb, 1e-5)
		within(t, what+" aliased", m.read(what+" aliased", alias), want, rmsTerms(dy, x, w, 1e-5), 1e-5)
		m.reset()
	}
}

func testSiLUMulBackward(t *testing.T, b kernels.TrainBackend) {
	rng := rand.New(rand.NewPCG(12, 2))
	m := newMem(t, b)
	for _, n := range []int{1, 7, 64, 130, 40000} {
		dy, gate, up := Vec(rng, n), Vec(rng, n), Vec(rng, n)
		gate[0] = 30 // saturated sigmoid
		wg, wu := make([]float32, n), make([]float32, n)
		rb.SiLUMulBackward(hb(wg), hb(wu), hb(dy), hb(gate), hb(up))
		what := fmt.Sprintf("SiLUMulBackward n %d", n)
		dg, du := m.out(n), m.out(n)
		b.SiLUMulBackward(dg.buf(), du.buf(), m.in(dy), m.in(gate), m.in(up))
		within(t, what+" dgate", m.read(what+" dgate", dg), wg, siluTerms(dy, gate, up), 1e-6)
		within(t, what+" dup", m.read(what+" dup", du), wu, abs(wu), 1e-6)
		m.reset()
	}
}

func testRoPEBackward(t *testing.T, b kernels.TrainBackend) {
	rng := rand.New(rand.NewPCG(12, 3))
	m := newMem(t, b)
	for _, c := range []struct{ nHeads, headDim int }{{1, 2}, {3, 8}, {4, 64}} {
		pos := []int32{0, 1, 5, 100, 4000}
		inv := make([]float32, c.headDim/2)
		for i := range inv {
			inv[i] = float32(math.Pow(500000, -2*float64(i)/float64(c.headDim)))
		}
		n := len(pos) * c.nHeads * c.headDim
		dx := Vec(rng, n)
		want := clone(dx)
		rb.RoPEBackward(hb(want), hi(pos), c.nHeads, c.headDim, hb(inv))
		got := m.outWith(dx, n)
		b.RoPEBackward(got.buf(), m.inInts(pos), c.nHeads, c.headDim, m.in(inv))
		what := fmt.Sprintf("RoPEBackward %+v", c)
		within(t, what, m.read(what, got), want, nil, 1e-6)
		m.reset()
	}
}

func testAttentionTrain(t *testing.T, b kernels.TrainBackend) {
	rng := rand.New(rand.NewPCG(13, 1))
	m := newMem(t, b)
	for _, c := range []struct{ B, T, nHeads, nKVHeads, headDim int }{
		{1, 1, 1, 1, 2}, {2, 7, 4, 2, 8}, {3, 5, 6, 3, 5}, {1, 33, 8, 2, 16}, {2, 4, 4, 1, 64},
	} {
		what := fmt.Sprintf("%+v", c)
		N, qd, kd := c.B*c.T, c.nHeads*c.headDim, c.nKVHeads*c.headDim
		q, k, v := Vec(rng, N*qd), Vec(rng, N*kd), Vec(rng, N*kd)
		wout, wlse := make([]float32, N*qd), make([]float32, N*c.nHeads)
		rb.AttentionForwardTrain(hb(wout), hb(wlse), hb(q), hb(k), hb(v), c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
		qb, kb, vb := m.in(q), m.in(k), m.in(v)
		out, lse := m.out(N*qd), m.out(N*c.nHeads)
		b.AttentionForwardTrain(out.buf(), lse.buf(), qb, kb, vb, c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
		within(t, "AttentionForwardTrain out "+what, m.read("AttentionForwardTrain out", out), wout, nil, 1e-5)
		within(t, "AttentionForwardTrain lse "+what, m.read("AttentionForwardTrain lse", lse), wlse, nil, 1e-6)

		dout := Vec(rng, N*qd)
		// Stale values must be overwritten.
		dq, dk, dv := m.outWith(Vec(rng, N*qd), N*qd), m.outWith(Vec(rng, N*kd), N*kd), m.outWith(Vec(rng, N*kd), N*kd)
		wq, wk, wv := make([]float32, N*qd), make([]float32, N*kd), make([]float32, N*kd)
		b.AttentionBackward(dq.buf(), dk.buf(), dv.buf(), m.in(dout), m.in(wout), m.in(wlse), qb, kb, vb, c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
		rb.AttentionBackward(hb(wq), hb(wk), hb(wv), hb(dout), hb(wout), hb(wlse), hb(q), hb(k), hb(v), c.B, c.T, c.nHeads, c.nKVHeads, c.headDim)
		within(t, "AttentionBackward dq "+what, m.read("AttentionBackward dq", dq), wq, nil, 1e-5)
		within(t, "AttentionBackward dk "+what, m.read("AttentionBackward dk", dk), wk, nil, 1e-5)
		within(t, "AttentionBackward dv "+what, m.read("AttentionBackward dv", dv), wv, nil, 1e-5)
		m.reset()
	}
}

func testCrossEntropy(t *testing.T, b kernels.TrainBackend) {
	rng := rand.New(rand.NewPCG(14, 1))
	m := newMem(t, b)
	for _, V := range []int{1, 2, 37, 1000} {
		const T = 6
		logits := Vec(rng, T*V)
		for i := range logits {
			logits[i] *= 4
		}
		labels := make([]int32, T)
		for i := range labels {
			labels[i] = int32(rng.IntN(V))
		}
		labels[2] = kernels.IgnoreIndex
		const scale = float32(1.0 / 7)
		wl, wd := make([]float32, T), make([]float32, T*V)
		rb.CrossEntropy(hb(wl), hb(wd), hb(logits), hi(labels), scale)
		what := fmt.Sprintf("CrossEntropy V %d", V)
		lb := m.inInts(labels)
		loss, dl := m.out(T), m.out(T*V)
		b.CrossEntropy(loss.buf(), dl.buf(), m.in(logits), lb, scale)
		gl, gd := m.read(what+" loss", loss), m.read(what+" dlogits", dl)
		within(t, what+" loss", gl, wl, nil, 1e-6)
		within(t, what+" dlogits", gd, wd, nil, 1e-6)
		// An ignored label: no loss, no gradient.
		exact(t, what+" ignored row's loss", gl[2:3], []float32{0})
		exact(t, what+" ignored row's gradient", gd[2*V:3*V], make([]float32, V))
		// In place, the same values.
		inPlace := m.outWith(logits, T*V)
		loss2 := m.out(T)
		b.CrossEntropy(loss2.buf(), inPlace.buf(), inPlace.buf(), lb, scale)
		within(t, what+" in place", m.read(what+" in place", inPlace), gd, nil, 0)
		within(t, what+" in place loss", m.read(what+" in place loss", loss2), gl, nil, 0)
		m.reset()
	}
}

func testLoRATrain(t *testing.T, b kernels.TrainBackend) {
	rng := rand.New(rand.NewPCG(15, 1))
	m := newMem(t, b)
	for _, c := range []struct{ T, in, out, rank int }{
		{1, 1, 1, 1}, {3, 5, 4, 2}, {17, 64, 40, 8}, {40, 33, 130, 16},
	} {
		what := fmt.Sprintf("%+v", c)
		const scale = float32(2)
		x, a, bm := Vec(rng, c.T*c.in), Vec(rng, c.rank*c.in), Vec(rng, c.out*c.rank)
		y0 := Vec(rng, c.T*c.out)
		wy, wz := clone(y0), make([]float32, c.T*c.rank)
		rb.LoRAForward(hb(wy), hb(wz), hb(x), hb(a), hb(bm), c.T, c.in, c.out, c.rank, scale)
		xb, ab, bb := m.in(x), m.in(a), m.in(bm)
		y, z := m.outWith(y0, len(y0)), m.out(c.T*c.rank)
		b.LoRAForward(y.buf(), z.buf(), xb, ab, bb, c.T, c.in, c.out, c.rank, scale)
		within(t, "LoRAForward z "+what, m.read("LoRAForward z", z), wz, nil, 1e-5)
		within(t, "LoRAForward y "+what, m.read("LoRAForward y", y), wy, nil, 1e-5)

		// The gradients accumulate onto what is there.
		dy := Vec(rng, c.T*c.out)
		dA0, dB0, dx0 := Vec(rng, c.rank*c.in), Vec(rng, c.out*c.rank), Vec(rng, c.T*c.in)
		wA, wB, wx := clone(dA0), clone(dB0), clone(dx0)
		rb.LoRABackward(hb(wA), hb(wB), hb(wx), hb(x), hb(wz), hb(dy), hb(a), hb(bm), c.T, c.in, c.out, c.rank, scale)
		dA, dB, dx := m.outWith(dA0, len(dA0)), m.outWith(dB0, len(dB0)), m.outWith(dx0, len(dx0))
		b.LoRABackward(dA.buf(), dB.buf(), dx.buf(), xb, m.in(wz), m.in(dy), ab, bb, c.T, c.in, c.out, c.rank, scale)
		within(t, "LoRABackward dA "+what, m.read("LoRABackward dA", dA), wA, nil, 1e-5)
		within(t, "LoRABackward dB "+what, m.read("LoRABackward dB", dB), wB, nil, 1e-5)
		within(t, "LoRABackward dx "+what, m.read("LoRABackward dx", dx), wx, nil, 1e-5)
		m.reset()
	}
}
