//go:build cuda

package cuda_test

// The GPU half of the backend's tests: they need -tags cuda and an NVIDIA
// GPU (scripts/gpu-check.sh runs them from a test binary built elsewhere
// by scripts/gpu-build.sh). Without a usable device they fail, saying why:
// a cuda test binary is only ever run to test a GPU.
//
//	TestAcceptance     kerneltest (every op, LoRA and training included) against kernels/ref
//	TestMatMulAligned  the vectorised decode GEMV (aligned x), against kernels/ref
//	TestGreedyParity   stories260K: greedy tokens and first logits, CUDA against the CPU backend
//	TestLoRAParity     stories260K: a batch mixing base and two adapters, CUDA against CPU
//	TestTrainParity    stories260K: five QLoRA steps' losses, CUDA against CPU
//	TestDecodeSpeed    decode and prefill tokens/s of $PARROT_BENCH_MODEL (skips without it)
//	TestFinetuneSpeed  QLoRA optimizer steps/s on $PARROT_BENCH_MODEL (skips without it)
//	TestCopyBandwidth  device-to-device copy bandwidth, the decode floor's peer
//	TestGraphReplay    eager ops against the same ops captured as a CUDA graph (Capture)
//
// Figures are printed as "gpu-check: key=value" lines for the script's
// table.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/kernels/cuda"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
	"github.com/parrot-llm/parrot/kernels/ref"
	"github.com/parrot-llm/parrot/runtime/kvpool"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/train"
)

const storiesDir = "../../testdata/stories260K"

var (
	once    sync.Once
	shared  *cuda.Backend
	initErr error
)

// gpu returns the process's CUDA backend (one context for every test).
func gpu(t testing.TB) *cuda.Backend {
	t.Helper()
	once.Do(func() {
		start := time.Now()
		// PARROT_CUDA_TC=1: the GEMMs on tensor cores (cuda.Options).
		shared, initErr = cuda.NewWithOptions(0, cuda.Options{TensorCores: os.Getenv("PARROT_CUDA_TC") == "1"})
		if initErr == nil {
			fmt.Printf("gpu-check: device=%q start_s=%.2f sms=%d\n", shared.Name(), time.Since(start).Seconds(), shared.SMs())
		}
	})
	if initErr != nil {
		t.Fatalf("cuda.New: %v", initErr)
	}
	return shared
}

func report(key string, format string, v ...any) {
	fmt.Printf("gpu-check: %s=%s\n", key, fmt.Sprintf(format, v...))
}

func TestAcceptance(t *testing.T) {
	b := gpu(t)
	kerneltest.Run(t, b)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestMatMulAligned covers what kerneltest cannot: its inputs sit at odd
// offsets, which sends every small-T MatMul to the generic GEMV, while the
// model's whole allocations take the vectorised one (matmul_gemv8_*, one
// and four rows per block). Here x is a whole allocation, checked against
// kernels/ref with kerneltest's tolerance, 1e-5·Σ|W[r,c]·x[t,c]|.
func TestMatMulAligned(t *testing.T) {
	b := gpu(t)
	rng := rand.New(rand.NewPCG(5, 55))
	var rb ref.Backend
	for _, s := range [][2]int{{1, 8}, {3, 64}, {5, 96}, {17, 2048}, {1100, 96}, {2100, 512}, {64, 8192}} {
		rows, cols := s[0], s[1]
		ws := []kernels.Matrix{kerneltest.F32(rng, rows, cols), kerneltest.NF4(rng, rows, cols, kernels.NF4Code), kerneltest.BF16(rng, rows, cols)}
		if cols%kernels.Q8BlockSize == 0 {
			ws = append(ws, kerneltest.Q8(rng, rows, cols))
		}
		for _, w := range ws {
			dw, err := b.Upload(w)
			if err != nil {
				t.Fatal(err)
			}
			for _, T := range []int{1, 2, 5, 8} {
				x := kerneltest.Vec(rng, T*cols)
				xb, err := b.Alloc(T * cols)
				if err != nil {
					t.Fatal(err)
				}
				yb, err := b.Alloc(T * rows)
				if err != nil {
					t.Fatal(err)
				}
				b.Write(xb, x)
				b.MatMul(yb, xb, dw, T)
				got := make([]float32, T*rows)
				b.Read(got, yb)
				b.Free(xb)
				b.Free(yb)
				want := make([]float32, T*rows)
				rb.MatMul(kernels.HostBuf(want), kernels.HostBuf(x), w, T)
				for i := range want {
					tt, r := i/rows, i%rows
					var bound float64
					for c := 0; c < cols; c++ {
						bound += math.Abs(float64(ref.Element(w, r, c)) * float64(x[tt*cols+c]))
					}
					if d := math.Abs(float64(got[i] - want[i])); !(d <= kerneltest.SumTol*bound) {
						t.Fatalf("%T [%d,%d] T=%d: y[%d,%d] = %v, want %v (Σ|terms| %v)", w, rows, cols, T, tt, r, got[i], want[i], bound)
					}
				}
			}
			b.FreeMatrix(dw)
		}
	}
}

// generate runs n greedy steps after prompt and returns the tokens and the
// logits of the prompt's last position.
func generate(t *testing.T, m *llama.Model, prompt []int32, n int) ([]int32, []float32) {
	t.Helper()
	cache, err := m.NewKVCache(len(prompt) + n)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	var b llama.Batch
	for p, id := range prompt {
		b.Add(id, int32(p), cache, p == len(prompt)-1)
	}
	logits, err := m.Forward(&b)
	if err != nil {
		t.Fatal(err)
	}
	first := append([]float32(nil), logits...)
	var out []int32
	for s := range n {
		next := argmax(logits)
		out = append(out, next)
		b.Reset()
		b.Add(next, int32(len(prompt)+s), cache, true)
		if logits, err = m.Forward(&b); err != nil {
			t.Fatal(err)
		}
	}
	return out, first
}

func argmax(v []float32) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return int32(best)
}

// TestGreedyParity: the same greedy story from the CUDA and CPU backends,
// with the weights as float32 and quantized to NF4 on load.
func TestGreedyParity(t *testing.T) {
	g := gpu(t)
	c := cpu.New(0)
	defer c.Close()
	prompt := []int32{1, 400, 401, 402}
	const steps = 100
	for _, q := range []string{llama.QuantNone, llama.QuantNF4} {
		var toks [2][]int32
		var first [2][]float32
		for i, be := range []kernels.Backend{c, g} {
			l, err := llama.Load(storiesDir, llama.LoadOptions{Quantize: q, Backend: be})
			if err != nil {
				t.Fatalf("%s on %s: %v", q, be.Name(), err)
			}
			toks[i], first[i] = generate(t, l.Model, prompt, steps)
		}
		var d float64
		for i := range first[0] {
			d = math.Max(d, math.Abs(float64(first[0][i]-first[1][i])))
		}
		same := 0
		for same < steps && toks[0][same] == toks[1][same] {
			same++
		}
		report("parity_"+q, "%d/%d", same, steps)
		report("first_logits_maxdiff_"+q, "%.3g", d)
		if d > 1e-3 {
			t.Errorf("%s: first logits differ from the CPU backend's by %g", q, d)
		}
		if same != steps {
			t.Errorf("%s: greedy tokens diverge from the CPU backend's at step %d\ncpu  %v\ncuda %v", q, same, toks[0], toks[1])
		}
	}
}

// TestLoRAParity: one batch mixing the base model and two random rank-8
// adapters (per-token slots), prefilled and then decoded greedily in the
// same batch, CUDA against the CPU backend.
func TestLoRAParity(t *testing.T) {
	g := gpu(t)
	c := cpu.New(0)
	defer c.Close()
	prompts := [][]int32{{1, 400, 401}, {1, 45, 46, 47, 48}, {1, 300}}
	slots := []int32{-1, 0, 1}
	const steps = 32
	var toks [2][][]int32
	var first [2][]float32
	for i, be := range []kernels.Backend{c, g} {
		l, err := llama.Load(storiesDir, llama.LoadOptions{Quantize: llama.QuantNF4, Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		m := l.Model
		ls, err := m.EnableLoRA(2, 8)
		if err != nil {
			t.Fatal(err)
		}
		for slot := range 2 {
			rng := rand.New(rand.NewPCG(uint64(slot), 7))
			for li := range m.Weights.Layers {
				for _, p := range m.Weights.Layers[li].Projections() {
					a, b := make([]float32, 8*p.In), make([]float32, p.Out*8)
					for j := range a {
						a[j] = (rng.Float32()*2 - 1) * 0.3
					}
					for j := range b {
						b[j] = (rng.Float32()*2 - 1) * 0.3
					}
					if err := ls.Set(slot, p.Name, a, b, 8, 2); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		pool, err := kvpool.New(m.Backend, m.KVShape(), kvpool.DefaultBlockSize, 3*4)
		if err != nil {
			t.Fatal(err)
		}
		caches := make([]*llama.KVCache, len(prompts))
		for s := range caches {
			caches[s] = llama.NewSeqCache(pool, 64)
		}
		// Prefill all three in one batch, then decode them together.
		var b llama.Batch
		for s, p := range prompts {
			for pos, id := range p {
				b.AddWithAdapter(id, int32(pos), caches[s], pos == len(p)-1, slots[s])
			}
		}
		logits, err := m.Forward(&b)
		if err != nil {
			t.Fatal(err)
		}
		first[i] = logits
		V := m.Config.Vocab
		out := make([][]int32, len(prompts))
		for step := range steps {
			b.Reset()
			for s, p := range prompts {
				next := argmax(logits[s*V : (s+1)*V])
				out[s] = append(out[s], next)
				b.AddWithAdapter(next, int32(len(p)+step), caches[s], true, slots[s])
			}
			if logits, err = m.Forward(&b); err != nil {
				t.Fatal(err)
			}
		}
		toks[i] = out
	}
	var d float64
	for i := range first[0] {
		d = math.Max(d, math.Abs(float64(first[0][i]-first[1][i])))
	}
	report("lora_first_logits_maxdiff", "%.3g", d)
	same := 0
	for s := range prompts {
		for k := 0; k < steps && toks[0][s][k] == toks[1][s][k]; k++ {
			same++
		}
	}
	report("lora_parity", "%d/%d", same, steps*len(prompts))
	if d > 1e-3 {
		t.Errorf("adapter logits differ from the CPU backend's by %g", d)
	}
	if same != steps*len(prompts) {
		t.Errorf("adapter greedy tokens diverge\ncpu  %v\ncuda %v", toks[0], toks[1])
	}
}

// trainExamples are n random sequences of length T over vocab, labels on
// every token.
func trainExamples(rng *rand.Rand, n, T, vocab int) []train.Example {
	exs := make([]train.Example, n)
	for i := range exs {
		in := make([]int32, T)
		for j := range in {
			in[j] = int32(rng.IntN(vocab))
		}
		exs[i] = train.Example{Input: in, Labels: append([]int32(nil), in...)}
	}
	return exs
}

// runSteps loads dir on be and runs steps optimizer steps of micro
// micro-batches of batch sequences of length T (the same data for every
// backend), returning each step's loss and the time of all but the first.
func runSteps(t *testing.T, dir string, be kernels.Backend, steps, micro, batch, T int) ([]float64, time.Duration) {
	t.Helper()
	l, err := llama.Load(dir, llama.LoadOptions{Quantize: llama.QuantNF4, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.New(l.Model, train.Options{Rank: 16, Alpha: 32, LearningRate: 2e-4, WarmupSteps: 1,
		TotalSteps: steps, Optim: train.AdamW8bit, MaxGradNorm: 1, Seed: 1, GradientCheckpointing: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	var losses []float64
	var start time.Time
	for k := range steps {
		if k == 1 {
			start = time.Now()
		}
		mbs := make([][]train.Example, micro)
		for i := range mbs {
			mbs[i] = trainExamples(rng, batch, T, l.Model.Config.Vocab)
		}
		st, err := tr.Step(mbs)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, st.Loss)
	}
	return losses, time.Since(start)
}

// TestTrainParity: QLoRA steps on stories260K (every training op, the
// optimizer on the host side of the seam), CUDA against the CPU backend.
func TestTrainParity(t *testing.T) {
	g := gpu(t)
	c := cpu.New(0)
	defer c.Close()
	want, _ := runSteps(t, storiesDir, c, 5, 2, 2, 48)
	got, _ := runSteps(t, storiesDir, g, 5, 2, 2, 48)
	var d float64
	for i := range want {
		d = math.Max(d, math.Abs(got[i]-want[i])/math.Max(1, math.Abs(want[i])))
	}
	report("train_loss_rel_diff", "%.3g", d)
	if d > 1e-3 {
		t.Errorf("losses differ from the CPU backend's:\ncpu  %v\ncuda %v", want, got)
	}
}

// TestFinetuneSpeed: optimizer steps per second on $PARROT_BENCH_MODEL at
// the lab's shape (rank 16 on the seven projections, 2 × 4 micro-batches),
// sequences of $PARROT_BENCH_SEQ tokens (default 256).
func TestFinetuneSpeed(t *testing.T) {
	dir := os.Getenv("PARROT_BENCH_MODEL")
	if dir == "" {
		t.Skip("PARROT_BENCH_MODEL is not set")
	}
	g := gpu(t)
	steps := envInt(t, "PARROT_BENCH_STEPS", 6)
	losses, d := runSteps(t, dir, g, steps, 4, 2, envInt(t, "PARROT_BENCH_SEQ", 256))
	report("finetune_steps_s", "%.2f", float64(steps-1)/d.Seconds())
	report("finetune_losses", "%.3f..%.3f", losses[0], losses[len(losses)-1])
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// TestDecodeSpeed: single-stream greedy decode of $PARROT_BENCH_MODEL (a
// genmodel --preset llama32-1b --quantize directory) after a short prompt,
// with the lm_head as stored and in 8 bits; best of three runs of
// $PARROT_BENCH_TG steps (default 128). Also times one prefill of 512.
func TestDecodeSpeed(t *testing.T) {
	dir := os.Getenv("PARROT_BENCH_MODEL")
	if dir == "" {
		t.Skip("PARROT_BENCH_MODEL is not set")
	}
	g := gpu(t)
	tg := envInt(t, "PARROT_BENCH_TG", 128)
	bw, err := g.CopyBandwidth(1<<30, 10)
	if err != nil {
		t.Fatal(err)
	}
	const promptLen, prefill = 8, 512
	for _, head8 := range []bool{false, true} {
		start := time.Now()
		l, err := llama.Load(dir, llama.LoadOptions{Quantize: llama.QuantNF4, Backend: g, LMHead8Bit: head8})
		if err != nil {
			t.Fatal(err)
		}
		m := l.Model
		load := time.Since(start)
		cache, err := m.NewKVCache(prefill + tg + promptLen)
		if err != nil {
			t.Fatal(err)
		}
		var b llama.Batch
		// Prefill of 512 tokens (ids spread over the vocabulary).
		var pre time.Duration
		for run := range 2 {
			cache.Truncate(0)
			b.Reset()
			for p := range prefill {
				b.Add(int32((p*7919+13)%m.Config.Vocab), int32(p), cache, p == prefill-1)
			}
			s := time.Now()
			if _, err := m.Forward(&b); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(s); run == 1 {
				pre = d
			}
		}
		best := time.Duration(math.MaxInt64)
		for range 3 {
			cache.Truncate(0)
			b.Reset()
			for p := range promptLen {
				b.Add(int32(1+p), int32(p), cache, p == promptLen-1)
			}
			logits, err := m.Forward(&b)
			if err != nil {
				t.Fatal(err)
			}
			s := time.Now()
			for step := range tg {
				b.Reset()
				b.Add(argmax(logits), int32(promptLen+step), cache, true)
				if logits, err = m.Forward(&b); err != nil {
					t.Fatal(err)
				}
			}
			best = min(best, time.Since(s))
		}
		head := "stored"
		if head8 {
			head = "q8"
		}
		tps := float64(tg) / best.Seconds()
		bytes := weightBytes(t, m.Weights)
		report("load_s_lmhead_"+head, "%.1f", load.Seconds())
		report("decode_tok_s_lmhead_"+head, "%.1f", tps)
		report("weight_MB_lmhead_"+head, "%.0f", float64(bytes)/1e6)
		// A decode step streams every weight byte once: against the copy
		// bandwidth measured in this process, the fraction of the floor.
		report("decode_frac_of_copy_bw_lmhead_"+head, "%.2f", float64(bytes)*tps/bw)
		report("prefill512_tok_s_lmhead_"+head, "%.0f", float64(prefill)/pre.Seconds())
		cache.Close()
		if err := g.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

// weightBytes is the device memory of the projections and the lm_head:
// what one decode step reads.
func weightBytes(t *testing.T, w *llama.Weights) int {
	size := func(m kernels.Matrix) int {
		d, ok := m.(*cuda.Matrix)
		if !ok {
			t.Fatalf("weight %T is not on the device", m)
		}
		return d.Bytes()
	}
	n := size(w.LMHead)
	for i := range w.Layers {
		for _, l := range w.Layers[i].Projections() {
			n += size(l.W)
		}
	}
	return n
}

// TestGraphReplay: a chain of decode-shaped ops (NF4 GEMV, RMSNorm) run
// eagerly and as a captured CUDA graph give the same bits, and the graph's
// time per op shows what the launch gaps cost.
func TestGraphReplay(t *testing.T) {
	b := gpu(t)
	rng := rand.New(rand.NewPCG(77, 7))
	const dim, links = 2048, 100
	w, err := b.Upload(kerneltest.NF4(rng, dim, dim, kernels.NF4Code))
	if err != nil {
		t.Fatal(err)
	}
	defer b.FreeMatrix(w)
	x, _ := b.Alloc(dim)
	y, _ := b.Alloc(dim)
	nw, _ := b.Alloc(dim)
	defer func() { b.Free(x); b.Free(y); b.Free(nw) }()
	x0 := kerneltest.Vec(rng, dim)
	b.Write(nw, kerneltest.Vec(rng, dim))
	chain := func() {
		for range links {
			b.MatMul(y, x, w, 1)
			b.RMSNorm(x, y, nw, 1e-5)
		}
	}
	run := func(step func()) ([]float32, time.Duration) {
		best := time.Duration(math.MaxInt64)
		out := make([]float32, dim)
		for range 5 {
			b.Write(x, x0)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			s := time.Now()
			step()
			b.Read(out, x)
			best = min(best, time.Since(s))
		}
		return out, best
	}
	eager, te := run(chain)
	g, err := b.Capture(chain)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy()
	replay, tg := run(g.Launch)
	for i := range eager {
		if math.Float32bits(eager[i]) != math.Float32bits(replay[i]) {
			t.Fatalf("graph replay differs from eager ops at [%d]: %v vs %v", i, replay[i], eager[i])
		}
	}
	ops := float64(2 * links)
	report("eager_us_per_op", "%.2f", te.Seconds()*1e6/ops)
	report("graph_us_per_op", "%.2f", tg.Seconds()*1e6/ops)
}

func TestCopyBandwidth(t *testing.T) {
	g := gpu(t)
	bw, err := g.CopyBandwidth(1<<30, 20)
	if err != nil {
		t.Fatal(err)
	}
	report("d2d_copy_GB_s", "%.0f", bw/1e9)
}
