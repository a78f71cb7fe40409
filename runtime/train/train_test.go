package train

import (
	"math"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/quant"
)

// QLoRA proper: the golden model's projections quantized to NF4, LoRA on
// top; repeating one step's batch, the loss must fall well below where it
// started (the base stays frozen, so only the adapter can do it).
func TestNF4TrainingLowersLoss(t *testing.T) {
	g := readGolden(t)
	be := cpu.New(2)
	defer be.Close()
	m, _ := goldenModel(t, g, be)
	for l := range m.Weights.Layers {
		for _, lin := range m.Weights.Layers[l].Projections() {
			f := lin.W.(*kernels.F32Matrix)
			q, err := quant.QuantizeNF4(f.Data, f.Rows, f.Cols)
			if err != nil {
				t.Fatal(err)
			}
			lin.W = q
		}
	}
	opts := goldenOptions(g, AdamW8bit)
	opts.TotalSteps, opts.LearningRate = 40, 2e-2
	tr, err := New(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	batch := goldenStep(g, 0)
	before, err := tr.Eval(append(batch[0], batch[1]...))
	if err != nil {
		t.Fatal(err)
	}
	var first, last StepStats
	for k := 0; k < opts.TotalSteps; k++ {
		st, err := tr.Step(batch)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			first = st
		}
		last = st
	}
	after, err := tr.Eval(append(batch[0], batch[1]...))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NF4 base: loss %.4f (eval %.4f) -> step %d loss %.4f (eval %.4f)", first.Loss, before, opts.TotalSteps, last.Loss, after)
	// The first step's loss is the untrained model's, the same as Eval's.
	if relErr(first.Loss, before) > 1e-6 {
		t.Fatalf("first step loss %v, eval of the same batch %v", first.Loss, before)
	}
	if !(after < 0.5*before) {
		t.Fatalf("loss went from %.4f to %.4f; want it halved", before, after)
	}
	// The base weights are untouched: still NF4 and not written to.
	if _, ok := m.Weights.Layers[0].Q.W.(*kernels.NF4Matrix); !ok {
		t.Fatal("base weight changed kind")
	}
}

func TestStepStatsAndEval(t *testing.T) {
	g := readGolden(t)
	be := cpu.New(2)
	defer be.Close()
	tr := goldenTrainer(t, g, be, goldenOptions(g, AdamWTorch))
	micro := goldenStep(g, 0)
	tokens, labels := 0, 0
	for _, exs := range micro {
		for _, ex := range exs {
			tokens += len(ex.Input)
			for _, l := range ex.Labels[1:] {
				if l != kernels.IgnoreIndex {
					labels++
				}
			}
		}
	}
	// Eval over all four examples is the same per-token mean as the step's
	// loss (which splits them into two micro-batches).
	ev, err := tr.Eval(append(append([]Example(nil), micro[0]...), micro[1]...))
	if err != nil {
		t.Fatal(err)
	}
	st, err := tr.Step(micro)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tokens != tokens || st.LabelTokens != labels {
		t.Fatalf("stats count %d tokens, %d labels; want %d, %d", st.Tokens, st.LabelTokens, tokens, labels)
	}
	if relErr(st.Loss, ev) > 1e-6 || relErr(st.Loss, g.AdamWTorch.Losses[0]) > 1e-5 {
		t.Fatalf("step loss %v, eval %v, torch %v", st.Loss, ev, g.AdamWTorch.Losses[0])
	}
	if st.LearningRate != 0 || tr.StepCount() != 1 {
		t.Fatalf("first step lr %v (warmup starts at 0), step count %d", st.LearningRate, tr.StepCount())
	}
	base, training := tr.MemoryStats()
	// The golden model's float32 weights: embedding and lm_head 64×32, norms,
	// and per layer 32·32·2 + 16·32·2 + 64·32·3 projections.
	wantBase := int64(4 * (2*64*32 + 32 + 2*(2*32+2*32*32+2*16*32+3*64*32)))
	if base != wantBase {
		t.Fatalf("base bytes %d, want %d", base, wantBase)
	}
	// LoRA: per layer 1024 A + 1024 B values, each with a gradient and two
	// fp32 moments, plus activations.
	if lora := int64(2 * 2048 * 4 * 4); training <= lora {
		t.Fatalf("training bytes %d, want more than the LoRA tensors' %d", training, lora)
	}
}

func TestErrors(t *testing.T) {
	g := readGolden(t)
	be := cpu.New(1)
	defer be.Close()
	m, _ := goldenModel(t, g, be)
	good := goldenOptions(g, AdamWTorch)
	for _, c := range []struct {
		mutate func(*Options)
		want   string
	}{
		{func(o *Options) { o.Rank = 0 }, "rank"},
		{func(o *Options) { o.Alpha = math.NaN() }, "lora_alpha"},
		{func(o *Options) { o.Dropout = 1 }, "dropout"},
		{func(o *Options) { o.Optim = "sgd" }, "unknown optimizer"},
		{func(o *Options) { o.TotalSteps = 0 }, "total steps"},
		{func(o *Options) { o.Targets = []string{"q_proj", "lm_head"} }, `"lm_head" matches no projection`},
	} {
		o := good
		c.mutate(&o)
		if _, err := New(m, o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("options %+v: error %v, want one mentioning %q", o, err, c.want)
		}
	}
	tr, err := New(m, good)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		micro [][]Example
		want  string
	}{
		{nil, "at least one micro-batch"},
		{[][]Example{{}}, "empty micro-batch"},
		{[][]Example{{{Input: []int32{1, 2}, Labels: []int32{1}}}}, "labels for 2 tokens"},
		{[][]Example{{{Input: []int32{1, 64}, Labels: []int32{-100, 64}}}}, "outside vocabulary"},
		{[][]Example{{{Input: []int32{1, 2}, Labels: []int32{-100, -5}}}}, "neither -100 nor a token id"},
		{[][]Example{{{Input: []int32{1, 2}, Labels: []int32{1, -100}}}}, "no label tokens"},
		{[][]Example{{{Input: make([]int32, 65), Labels: make([]int32, 65)}}}, "positions"},
	} {
		if _, err := tr.Step(c.micro); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("step %v: error %v, want one mentioning %q", c.micro, err, c.want)
		}
	}
	if tr.StepCount() != 0 {
		t.Fatal("a failed step counted")
	}
	// Only the targeted projections get modules.
	o := good
	o.Targets = []string{"self_attn.v_proj", "down_proj"}
	tr, err = New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range tr.LoRAWeights() {
		names = append(names, w.Name)
	}
	want := "model.layers.0.self_attn.v_proj model.layers.0.mlp.down_proj model.layers.1.self_attn.v_proj model.layers.1.mlp.down_proj"
	if strings.Join(names, " ") != want {
		t.Fatalf("modules %v, want %s", names, want)
	}
}

// PEFT's init: A ~ U(−1/√in, 1/√in) (mean 0, variance 1/(3·in)), B = 0,
// reproducible from the seed and different across seeds and modules.
func TestLoRAInit(t *testing.T) {
	g := readGolden(t)
	be := cpu.New(1)
	defer be.Close()
	m, _ := goldenModel(t, g, be)
	opts := goldenOptions(g, AdamWTorch)
	opts.Seed = 3407
	a, _ := New(m, opts)
	b, _ := New(m, opts)
	opts.Seed = 3408
	c, _ := New(m, opts)
	wa, wb, wc := a.LoRAWeights(), b.LoRAWeights(), c.LoRAWeights()
	var sum, sq float64
	n := 0
	for i, mod := range wa {
		bound := 1 / math.Sqrt(float64(mod.In))
		for j, v := range mod.A {
			if v != wb[i].A[j] {
				t.Fatal("the same seed gave two inits")
			}
			if math.Abs(float64(v)) > bound {
				t.Fatalf("%s A[%d] = %v outside ±%v", mod.Name, j, v, bound)
			}
			x := float64(v) / bound
			sum += x
			sq += x * x
			n++
		}
		for _, v := range mod.B {
			if v != 0 {
				t.Fatal("B is not zero")
			}
		}
		if wc[i].A[0] == mod.A[0] || (i > 0 && wa[i-1].In == mod.In && wa[i-1].A[0] == mod.A[0]) {
			t.Fatalf("%s: init does not depend on the seed and module", mod.Name)
		}
	}
	// U(-1,1): mean 0 ± 1/√(3n), second moment 1/3 ± ~0.3/√n.
	if mean, m2 := sum/float64(n), sq/float64(n); math.Abs(mean) > 4/math.Sqrt(3*float64(n)) || math.Abs(m2-1.0/3) > 1.2/math.Sqrt(float64(n)) {
		t.Fatalf("normalised A has mean %v and second moment %v over %d values; want 0 and 1/3", mean, m2, n)
	}
}

// The trained adapter, written in PEFT format and read back by package
// peft, computes in the serving forward pass (llama.Model with
// LoRA slots) the same loss the trainer's forward pass reports. The slots
// hold float32 (serve --lora-dtype float32) for an exact comparison.
func TestTrainedAdapterServes(t *testing.T) {
	g := readGolden(t)
	be := cpu.New(2)
	defer be.Close()
	be.SetLoRAFloat32(true)
	opts := goldenOptions(g, AdamW8bit)
	opts.RSLoRA = true
	tr := goldenTrainer(t, g, be, opts)
	for k := 0; k < 4; k++ {
		if _, err := tr.Step(goldenStep(g, k)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := peft.Save(dir, tr.Adapter("golden")); err != nil {
		t.Fatal(err)
	}
	a, err := peft.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Config.UseRSLoRA || len(a.Modules) != 14 {
		t.Fatalf("loaded adapter: rslora %v, %d modules", a.Config.UseRSLoRA, len(a.Modules))
	}
	m := tr.m
	slots, err := m.EnableLoRA(1, a.MaxRank())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range a.Names() {
		mod := a.Modules[name]
		if err := slots.Set(0, name, mod.A, mod.B, mod.Rank, a.Config.Scale(name)); err != nil {
			t.Fatal(err)
		}
	}
	ex := goldenStep(g, 5)[0][0]
	cache, err := m.NewKVCache(0)
	if err != nil {
		t.Fatal(err)
	}
	var b llama.Batch
	for j, id := range ex.Input {
		b.AddWithAdapter(id, int32(j), cache, true, 0)
	}
	logits, err := m.Forward(&b)
	if err != nil {
		t.Fatal(err)
	}
	V := m.Config.Vocab
	var sum float64
	n := 0
	for j := 0; j+1 < len(ex.Input); j++ {
		label := ex.Labels[j+1]
		if label == kernels.IgnoreIndex {
			continue
		}
		row := logits[j*V : (j+1)*V]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		sum += mx + math.Log(z) - float64(row[label])
		n++
	}
	served := sum / float64(n)
	trained, err := tr.Eval([]Example{ex})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("served loss %.7f, trainer's %.7f", served, trained)
	if relErr(served, trained) > 1e-5 {
		t.Fatalf("served loss %v, trainer's forward %v", served, trained)
	}
}
