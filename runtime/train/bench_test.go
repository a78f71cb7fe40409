package train

import (
	"fmt"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/testmodel"
)

// peakMemory samples the Go heap every 50 ms while f runs and returns the
// largest in-use heap (HeapInuse: object bytes plus the unused tail of
// in-use spans) and total memory mapped by the runtime (Sys) seen. It reads
// runtime/metrics, which, unlike ReadMemStats, does not stop the world.
func peakMemory(f func()) (heapInuse, sys uint64) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/total:bytes"},
	}
	var mu sync.Mutex
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		metrics.Read(samples)
		heapInuse = max(heapInuse, samples[0].Value.Uint64()+samples[1].Value.Uint64())
		sys = max(sys, samples[2].Value.Uint64())
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	sample()
	return heapInuse, sys
}

// randomExamples are n sequences of seqLen random tokens, loss on all of them.
func randomExamples(n, seqLen, vocab int, seed uint64) []Example {
	s := splitmix{state: seed}
	exs := make([]Example, n)
	for i := range exs {
		ids := make([]int32, seqLen)
		for j := range ids {
			ids[j] = int32(s.next() % uint64(vocab))
		}
		exs[i] = Example{Input: ids, Labels: ids}
	}
	return exs
}

// benchSteps runs b.N optimizer steps and reports training throughput and
// memory.
func benchSteps(b *testing.B, tr *Trainer, micro [][]Example) {
	b.Helper()
	tokens := 0
	for _, exs := range micro {
		for _, ex := range exs {
			tokens += len(ex.Input)
		}
	}
	var last StepStats
	b.ResetTimer()
	start := time.Now()
	heap, sys := peakMemory(func() {
		for i := 0; i < b.N; i++ {
			st, err := tr.Step(micro)
			if err != nil {
				b.Fatal(err)
			}
			last = st
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	base, training := tr.MemoryStats()
	b.ReportMetric(float64(tokens*b.N)/elapsed.Seconds(), "tokens/s")
	b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(sys)/(1<<20), "peak-sys-MiB")
	b.ReportMetric(float64(base)/(1<<20), "base-MiB")
	b.ReportMetric(float64(training)/(1<<20), "training-MiB")
	b.Logf("loss %.4f, grad norm %.4f", last.Loss, last.GradNorm)
}

// BenchmarkTrainStepTiny: stories260K (5 layers, hidden 64), NF4, LoRA r=16
// on all projections, adamw_8bit; one step = 4 micro-batches of 2 × 128 tokens.
func BenchmarkTrainStepTiny(b *testing.B) {
	be := cpu.New(0)
	defer be.Close()
	l, err := llama.Load("../../testdata/stories260K", llama.LoadOptions{Quantize: llama.QuantNF4, Backend: be})
	if err != nil {
		b.Fatal(err)
	}
	tr, err := New(l.Model, Options{Rank: 16, Alpha: 16, LearningRate: 2e-4, WarmupSteps: 5, TotalSteps: 1000,
		WeightDecay: 0.01, Optim: AdamW8bit, MaxGradNorm: 1, Seed: 3407})
	if err != nil {
		b.Fatal(err)
	}
	micro := make([][]Example, 4)
	for i := range micro {
		micro[i] = randomExamples(2, 128, l.Model.Config.Vocab, uint64(i))
	}
	benchSteps(b, tr, micro)
}

// llama1B builds a Llama-3.2-1B-shaped model in memory: NF4 projections
// with random codes and scales, a random float32 tied embedding. The
// weights are noise; only the shapes and the work matter.
func llama1B(be kernels.Backend, layers int) *llama.Model {
	o := testmodel.Llama32_1B()
	cfg := &llama.Config{Hidden: o.Hidden, Intermediate: o.Intermediate, Layers: layers, Heads: o.Heads,
		KVHeads: o.KVHeads, HeadDim: o.HeadDim, Vocab: o.Vocab, MaxPos: o.MaxPos, NormEps: 1e-5,
		RopeTheta: o.RopeTheta, TiedEmbed: true, BOS: -1, Pad: -1,
		Rope: llama.RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPosition: 8192}}
	s := splitmix{state: 1}
	uniform := func(v []float32, scale float32) {
		for i := range v {
			v[i] = scale * (2*float32(s.next()>>40)/(1<<24) - 1)
		}
	}
	ones := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	nf4 := func(rows, cols int) *kernels.NF4Matrix {
		n := rows * cols
		m := &kernels.NF4Matrix{Rows: rows, Cols: cols, Packed: make([]byte, n/2),
			Absmax: make([]float32, n/kernels.NF4BlockSize), Code: kernels.NF4Code}
		for i := 0; i < len(m.Packed); i += 8 {
			x := s.next()
			for j := 0; j < 8 && i+j < len(m.Packed); j++ {
				m.Packed[i+j] = byte(x >> (8 * j))
			}
		}
		uniform(m.Absmax, 0.05)
		return m
	}
	H, Q, K, I := cfg.Hidden, cfg.Heads*cfg.HeadDim, cfg.KVHeads*cfg.HeadDim, cfg.Intermediate
	embed := &kernels.F32Matrix{Rows: cfg.Vocab, Cols: H, Data: make([]float32, cfg.Vocab*H)}
	uniform(embed.Data, 0.05)
	w := &llama.Weights{Embed: embed, LMHead: embed, Norm: kernels.HostBuf(ones(H)), Layers: make([]llama.Layer, layers)}
	shapes := [numProj][2]int{{Q, H}, {K, H}, {K, H}, {H, Q}, {I, H}, {I, H}, {H, I}}
	for l := range w.Layers {
		ly := &w.Layers[l]
		ly.AttnNorm, ly.MLPNorm = kernels.HostBuf(ones(H)), kernels.HostBuf(ones(H))
		lins := []**llama.Linear{&ly.Q, &ly.K, &ly.V, &ly.O, &ly.Gate, &ly.Up, &ly.Down}
		for j, name := range llama.ProjectionNames {
			out, in := shapes[j][0], shapes[j][1]
			*lins[j] = &llama.Linear{Name: fmt.Sprintf("model.layers.%d.%s", l, name), In: in, Out: out, W: nf4(out, in)}
		}
	}
	m, err := llama.NewModel(cfg, w, be)
	if err != nil {
		panic(err)
	}
	return m
}

// BenchmarkTrainStep1B: a Llama-3.2-1B-shaped NF4 model, LoRA r=16 on all
// seven projections, adamw_8bit, gradient checkpointing; one step = one
// micro-batch of 2 × 256 tokens. Run with -benchtime=1x (a step takes
// minutes on two cores).
func BenchmarkTrainStep1B(b *testing.B) {
	be := cpu.New(0)
	defer be.Close()
	m := llama1B(be, 16)
	tr, err := New(m, Options{Rank: 16, Alpha: 16, LearningRate: 2e-4, WarmupSteps: 5, TotalSteps: 1000,
		WeightDecay: 0.01, Optim: AdamW8bit, MaxGradNorm: 1, Seed: 3407, GradientCheckpointing: true})
	if err != nil {
		b.Fatal(err)
	}
	benchSteps(b, tr, [][]Example{randomExamples(2, 256, m.Config.Vocab, 1)})
}

// BenchmarkTrainStep1BTwoLayers is BenchmarkTrainStep1B with 2 of the 16
// layers (the lm_head and embedding at full size), for quicker profiling.
func BenchmarkTrainStep1BTwoLayers(b *testing.B) {
	be := cpu.New(0)
	defer be.Close()
	m := llama1B(be, 2)
	tr, err := New(m, Options{Rank: 16, Alpha: 16, LearningRate: 2e-4, WarmupSteps: 5, TotalSteps: 1000,
		WeightDecay: 0.01, Optim: AdamW8bit, MaxGradNorm: 1, Seed: 3407, GradientCheckpointing: true})
	if err != nil {
		b.Fatal(err)
	}
	benchSteps(b, tr, [][]Example{randomExamples(2, 256, m.Config.Vocab, 1)})
}
