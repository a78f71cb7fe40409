package train

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/kernels/ref"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// A float64 Llama with the trainer's LoRA modules, written out from
// transformers' modeling_llama and PEFT's LoRA layer, one sequence at a time
// (no padding), applying the trainer's dropout masks. Its finite
// differences check the trainer's whole backward pass: every op's backward,
// the residual and norm wiring, the shift, the per-step normalisation,
// padding, and the dropout path.

type lora64 map[*module][2][]float64 // A [rank, in], B [out, rank]

func loraParams64(tr *Trainer) lora64 {
	p := lora64{}
	for _, m := range tr.modules {
		a, b := make([]float64, len(m.a)), make([]float64, len(m.b))
		for i, v := range m.a {
			a[i] = float64(v)
		}
		for i, v := range m.b {
			b[i] = float64(v)
		}
		p[m] = [2][]float64{a, b}
	}
	return p
}

func elem(w kernels.Matrix, r, c int) float64 { return float64(ref.Element(w, r, c)) }

// hostVec reads a vector of the model (a norm weight) back from the backend.
func hostVec(tr *Trainer, b kernels.Buf) []float32 {
	v := make([]float32, b.Len())
	tr.be.Read(v, b)
	return v
}

func rms64(x []float64, w []float32, eps float32) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+float64(eps))
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(w[i]) * v * s
	}
	return y
}

// loss64 is the summed cross-entropy of one micro-batch (micro-batch index
// micro, padded layout of makeBatch for the dropout masks), times scale.
func loss64(tr *Trainer, exs []Example, micro int, p lora64, scale float64) float64 {
	c, w := tr.cfg, tr.m.Weights
	T := 0
	for _, ex := range exs {
		T = max(T, len(ex.Input))
	}
	N := len(exs) * T
	masks := map[*module][]float32{}
	if tr.opts.Dropout > 0 {
		for _, m := range tr.modules {
			masks[m] = make([]float32, N*m.in)
			tr.dropoutMask(masks[m], micro, m)
		}
	}
	// linear: W·x + scale·B·A·(x∘mask) for token row n of the micro-batch.
	linear := func(lin *llama.Linear, m *module, x []float64, n int) []float64 {
		y := make([]float64, lin.Out)
		for o := range y {
			for i, v := range x {
				y[o] += elem(lin.W, o, i) * v
			}
		}
		if m == nil {
			return y
		}
		xin := x
		if mask := masks[m]; mask != nil {
			xin = make([]float64, len(x))
			for i, v := range x {
				xin[i] = v * float64(mask[n*m.in+i])
			}
		}
		a, b := p[m][0], p[m][1]
		z := make([]float64, m.rank)
		for r := range z {
			for i, v := range xin {
				z[r] += a[r*m.in+i] * v
			}
		}
		for o := range y {
			var s float64
			for r, zr := range z {
				s += b[o*m.rank+r] * zr
			}
			y[o] += float64(tr.scale) * s
		}
		return y
	}
	hd, half := c.HeadDim, c.HeadDim/2
	rope := func(x []float64, heads, pos int) {
		for i := 0; i < half; i++ {
			angle := float64(float32(pos) * tr.invFreq[i])
			cs, sn := math.Cos(angle), math.Sin(angle)
			for h := 0; h < heads; h++ {
				x0, x1 := x[h*hd+i], x[h*hd+i+half]
				x[h*hd+i], x[h*hd+i+half] = x0*cs-x1*sn, x1*cs+x0*sn
			}
		}
	}
	var total float64
	for bi, ex := range exs {
		L := len(ex.Input)
		xs := make([][]float64, L)
		for j, id := range ex.Input {
			xs[j] = make([]float64, c.Hidden)
			for i := range xs[j] {
				xs[j][i] = elem(w.Embed, int(id), i)
			}
		}
		for l := range w.Layers {
			lw, mods := &w.Layers[l], &tr.layers[l]
			qs, ks, vs := make([][]float64, L), make([][]float64, L), make([][]float64, L)
			for j := range xs {
				n := bi*T + j
				xn := rms64(xs[j], hostVec(tr, lw.AttnNorm), c.NormEps)
				qs[j], ks[j], vs[j] = linear(lw.Q, mods[projQ], xn, n), linear(lw.K, mods[projK], xn, n), linear(lw.V, mods[projV], xn, n)
				rope(qs[j], c.Heads, j)
				rope(ks[j], c.KVHeads, j)
			}
			for j := range xs {
				n := bi*T + j
				att := make([]float64, c.Heads*hd)
				for h := 0; h < c.Heads; h++ {
					g := h / (c.Heads / c.KVHeads)
					s := make([]float64, j+1)
					m := math.Inf(-1)
					for jj := range s {
						for i := 0; i < hd; i++ {
							s[jj] += qs[j][h*hd+i] * ks[jj][g*hd+i]
						}
						s[jj] /= math.Sqrt(float64(hd))
						m = math.Max(m, s[jj])
					}
					var sum float64
					for jj := range s {
						s[jj] = math.Exp(s[jj] - m)
						sum += s[jj]
					}
					for jj := range s {
						for i := 0; i < hd; i++ {
							att[h*hd+i] += s[jj] / sum * vs[jj][g*hd+i]
						}
					}
				}
				o := linear(lw.O, mods[projO], att, n)
				for i := range xs[j] {
					xs[j][i] += o[i]
				}
				xn := rms64(xs[j], hostVec(tr, lw.MLPNorm), c.NormEps)
				gate, up := linear(lw.Gate, mods[projGate], xn, n), linear(lw.Up, mods[projUp], xn, n)
				for i, gv := range gate {
					gate[i] = gv / (1 + math.Exp(-gv)) * up[i]
				}
				d := linear(lw.Down, mods[projDown], gate, n)
				for i := range xs[j] {
					xs[j][i] += d[i]
				}
			}
		}
		for j := 0; j+1 < L; j++ {
			label := ex.Labels[j+1]
			if label == kernels.IgnoreIndex {
				continue
			}
			hn := rms64(xs[j], hostVec(tr, w.Norm), c.NormEps)
			logits := make([]float64, c.Vocab)
			m := math.Inf(-1)
			for v := range logits {
				for i, x := range hn {
					logits[v] += elem(w.LMHead, v, i) * x
				}
				m = math.Max(m, logits[v])
			}
			var sum float64
			for _, v := range logits {
				sum += math.Exp(v - m)
			}
			total += scale * (m + math.Log(sum) - logits[label])
		}
	}
	return total
}

// stepGradients runs forward and backward over a step's micro-batches
// without updating anything, as Step does up to the clipping.
func stepGradients(t *testing.T, tr *Trainer, micro [][]Example) (loss float64, scale float32) {
	t.Helper()
	var bts []*batch
	labels := 0
	for _, exs := range micro {
		bt, err := tr.makeBatch(exs)
		if err != nil {
			t.Fatal(err)
		}
		bts = append(bts, bt)
		labels += len(bt.rows)
	}
	tr.zeroGrads()
	scale = float32(1 / float64(labels))
	for i, bt := range bts {
		l, err := tr.forwardBackward(bt, i, scale, true)
		if err != nil {
			t.Fatal(err)
		}
		loss += l
	}
	tr.readGrads()
	return loss * float64(scale), scale
}

// randomizeB gives every B random values (PEFT starts them at zero, which
// would leave every A gradient zero and the check half empty).
func randomizeB(tr *Trainer, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 9))
	for _, m := range tr.modules {
		for i := range m.b {
			m.b[i] = float32(0.2 * rng.NormFloat64())
		}
	}
	tr.writeParams()
}

func TestWholeModelGradientsFiniteDifferences(t *testing.T) {
	g := readGolden(t)
	micro := goldenStep(g, 0)
	for _, dropout := range []float64{0, 0.3} {
		opts := goldenOptions(g, AdamWTorch)
		opts.Dropout = dropout
		tr := goldenTrainer(t, g, ref.New(), opts)
		randomizeB(tr, 1)
		loss, scale := stepGradients(t, tr, micro)

		p := loraParams64(tr)
		f := func() float64 {
			var s float64
			for i, exs := range micro {
				s += loss64(tr, exs, i, p, float64(scale))
			}
			return s
		}
		if l64 := f(); relErr(loss, l64) > 1e-6 {
			t.Fatalf("dropout %v: trainer loss %.9g, float64 model %.9g", dropout, loss, l64)
		}

		// Directional derivatives along random directions through every
		// LoRA parameter at once.
		const h = 1e-5
		rng := rand.New(rand.NewPCG(2, 2))
		for trial := 0; trial < 3; trial++ {
			dir := map[*module][2][]float64{}
			var analytic float64
			for _, m := range tr.modules {
				da, db := make([]float64, len(m.a)), make([]float64, len(m.b))
				for i := range da {
					da[i] = rng.NormFloat64()
					analytic += da[i] * float64(m.ga[i])
				}
				for i := range db {
					db[i] = rng.NormFloat64()
					analytic += db[i] * float64(m.gb[i])
				}
				dir[m] = [2][]float64{da, db}
			}
			move := func(sign float64) {
				for m, d := range dir {
					for k := 0; k < 2; k++ {
						for i, v := range d[k] {
							p[m][k][i] += sign * h * v
						}
					}
				}
			}
			move(1)
			up := f()
			move(-2)
			down := f()
			move(1)
			numeric := (up - down) / (2 * h)
			if relErr(analytic, numeric) > 1e-5 {
				t.Fatalf("dropout %v direction %d: analytic %.9g, finite difference %.9g", dropout, trial, analytic, numeric)
			}
		}

		// Single components, in every module.
		var maxGrad float64
		for _, m := range tr.modules {
			for _, v := range append(append([]float32(nil), m.ga...), m.gb...) {
				maxGrad = math.Max(maxGrad, math.Abs(float64(v)))
			}
		}
		for _, m := range tr.modules {
			for k, grad := range [][]float32{m.ga, m.gb} {
				for trial := 0; trial < 2; trial++ {
					i := rng.IntN(len(grad))
					orig := p[m][k][i]
					p[m][k][i] = orig + h
					up := f()
					p[m][k][i] = orig - h
					down := f()
					p[m][k][i] = orig
					numeric := (up - down) / (2 * h)
					if d := math.Abs(float64(grad[i]) - numeric); d > 1e-5*maxGrad {
						t.Fatalf("dropout %v %s %s[%d]: analytic %.9g, finite difference %.9g", dropout, m.name, "AB"[k:k+1], i, grad[i], numeric)
					}
				}
			}
		}
	}
}

// Recomputing each layer in backward (gradient checkpointing, with dropout
// masks redrawn from their keys) gives bit-identical gradients.
func TestGradientCheckpointingIsExact(t *testing.T) {
	g := readGolden(t)
	be := cpu.New(2)
	defer be.Close()
	grads := func(ckpt bool) []float32 {
		opts := goldenOptions(g, AdamW8bit)
		opts.Dropout, opts.GradientCheckpointing = 0.2, ckpt
		tr := goldenTrainer(t, g, be, opts)
		randomizeB(tr, 3)
		stepGradients(t, tr, goldenStep(g, 1))
		var all []float32
		for _, m := range tr.modules {
			all = append(append(all, m.ga...), m.gb...)
		}
		return all
	}
	plain, ckpt := grads(false), grads(true)
	for i := range plain {
		if math.Float32bits(plain[i]) != math.Float32bits(ckpt[i]) {
			t.Fatalf("gradient %d: %v without checkpointing, %v with", i, plain[i], ckpt[i])
		}
	}
}

// Dropout: the masks keep about 1−p of the elements, scaled by 1/(1−p),
// and are a pure function of (seed, step, micro-batch, module).
func TestDropoutMask(t *testing.T) {
	g := readGolden(t)
	opts := goldenOptions(g, AdamWTorch)
	opts.Dropout = 0.25
	tr := goldenTrainer(t, g, ref.New(), opts)
	m := tr.modules[3]
	a, b := make([]float32, 40000), make([]float32, 40000)
	tr.dropoutMask(a, 1, m)
	tr.dropoutMask(b, 1, m)
	kept := 0
	for i, v := range a {
		if v != b[i] {
			t.Fatal("the same key gave two different masks")
		}
		switch v {
		case 0:
		case float32(1 / 0.75):
			kept++
		default:
			t.Fatalf("mask value %v is neither 0 nor 1/(1-p)", v)
		}
	}
	// Binomial(40000, 0.75): standard deviation ~87.
	if kept < 29500 || kept > 30500 {
		t.Fatalf("kept %d of 40000 with p = 0.25", kept)
	}
	tr.dropoutMask(b, 2, m)
	same := 0
	for i := range a {
		if a[i] == b[i] {
			same++
		}
	}
	if same > 26000 { // independent masks agree on ~62.5%
		t.Fatalf("masks of different micro-batches agree on %d of 40000", same)
	}
}

// Resuming from a saved state continues bit for bit: 3 steps, save, a new
// trainer loads and runs 3 more, against 6 uninterrupted steps.
func TestSaveLoadStateResumesExactly(t *testing.T) {
	g := readGolden(t)
	be := cpu.New(2)
	defer be.Close()
	for _, optim := range []string{AdamW8bit, AdamWTorch} {
		opts := goldenOptions(g, optim)
		opts.Dropout = 0.1
		whole := goldenTrainer(t, g, be, opts)
		first := goldenTrainer(t, g, be, opts)
		var state bytes.Buffer
		for k := 0; k < 6; k++ {
			if _, err := whole.Step(goldenStep(g, k)); err != nil {
				t.Fatal(err)
			}
			if k < 3 {
				if _, err := first.Step(goldenStep(g, k)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := first.SaveState(&state); err != nil {
			t.Fatal(err)
		}
		m, _ := goldenModel(t, g, be)
		resumed, err := New(m, opts) // a fresh A init, overwritten by the state
		if err != nil {
			t.Fatal(err)
		}
		if err := resumed.LoadState(bytes.NewReader(state.Bytes())); err != nil {
			t.Fatal(err)
		}
		if resumed.StepCount() != 3 {
			t.Fatalf("resumed at step %d, want 3", resumed.StepCount())
		}
		for k := 3; k < 6; k++ {
			if _, err := resumed.Step(goldenStep(g, k)); err != nil {
				t.Fatal(err)
			}
		}
		want, got := whole.LoRAWeights(), resumed.LoRAWeights()
		for i := range want {
			for j := range want[i].A {
				if math.Float32bits(want[i].A[j]) != math.Float32bits(got[i].A[j]) {
					t.Fatalf("%s: %s A[%d] = %v resumed, %v uninterrupted", optim, want[i].Name, j, got[i].A[j], want[i].A[j])
				}
			}
			for j := range want[i].B {
				if math.Float32bits(want[i].B[j]) != math.Float32bits(got[i].B[j]) {
					t.Fatalf("%s: %s B[%d] = %v resumed, %v uninterrupted", optim, want[i].Name, j, got[i].B[j], want[i].B[j])
				}
			}
		}

		// A state does not load into an incompatible run, and a failed load
		// leaves the trainer as it was.
		bad := opts
		bad.Seed = 2
		other, _ := New(m, bad)
		before := other.LoRAWeights()[0].A[0]
		if err := other.LoadState(bytes.NewReader(state.Bytes())); err == nil {
			t.Fatal("a state trained with another seed loaded")
		}
		if other.LoRAWeights()[0].A[0] != before || other.StepCount() != 0 {
			t.Fatal("a failed load changed the trainer")
		}
		if err := resumed.LoadState(bytes.NewReader(state.Bytes()[:state.Len()-7])); err == nil {
			t.Fatal("a truncated state loaded")
		}
	}
}
