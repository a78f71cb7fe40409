package adapters

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/kvpool"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/testmodel"
)

// randomNF4 is a [rows, cols] NF4 weight with random codes and block scales
// around 0.02. Codes repeat with a period of 1 MiB: their values do not
// change the cost of a matmul, and filling 0.5 GB with fresh random bytes
// would dominate the benchmark's setup.
func randomNF4(noise []byte, rows, cols int) *kernels.NF4Matrix {
	n := rows * cols
	m := &kernels.NF4Matrix{Rows: rows, Cols: cols, Code: kernels.NF4Code,
		Packed: make([]byte, (n+1)/2), Absmax: make([]float32, (n+kernels.NF4BlockSize-1)/kernels.NF4BlockSize)}
	for i := 0; i < len(m.Packed); i += len(noise) {
		copy(m.Packed[i:], noise)
	}
	for i := range m.Absmax {
		m.Absmax[i] = 0.01 + 0.02*float32(noise[i%len(noise)])/255
	}
	return m
}

// randomModel builds a model of the given shape in memory, with NF4
// projections and a tied bfloat16 embedding, as llama.Load holds a
// bnb-4bit checkpoint (no file is read or written).
func randomModel(b *testing.B, o testmodel.Options, be kernels.Backend) *llama.Model {
	b.Helper()
	data, err := json.Marshal(testmodel.Config(o))
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := llama.ParseConfig(data)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ones := func(n int) kernels.Buf {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return kernels.HostBuf(v)
	}
	noise := make([]byte, 1<<20)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	embed := &kernels.BF16Matrix{Rows: cfg.Vocab, Cols: cfg.Hidden, Data: make([]uint16, cfg.Vocab*cfg.Hidden)}
	for i := range embed.Data {
		embed.Data[i] = kernels.F32ToBF16((float32(noise[i%len(noise)]) - 127.5) / 2550) // ±0.05
	}
	w := &llama.Weights{Embed: embed, LMHead: embed, Norm: ones(cfg.Hidden), Layers: make([]llama.Layer, cfg.Layers)}
	for i := range w.Layers {
		l := &w.Layers[i]
		l.AttnNorm, l.MLPNorm = ones(cfg.Hidden), ones(cfg.Hidden)
		dst := []**llama.Linear{&l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down}
		for j, p := range llama.ProjectionNames {
			out, in, _ := projectionShape(cfg, p)
			*dst[j] = &llama.Linear{Name: fmt.Sprintf("model.layers.%d.%s", i, p), In: in, Out: out, W: randomNF4(noise, out, in)}
		}
	}
	m, err := llama.NewModel(cfg, w, be)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkMixedAdapterDecode: decode throughput of 8 concurrent streams on
// the Llama-3.2-1B-shaped NF4 model, each on its own rank-16 adapter over
// all seven projections (one batch mixing 8 slots), against the same 8
// streams on the base model, on one adapter (8 tokens of one slot), and one
// stream alone, with serve's defaults (int8 activations, bfloat16 slots).
// Each iteration runs one decode step of each. Reports base_tok/s,
// lora_tok/s (8 adapters), one_tok/s (one adapter), solo_tok/s (1 stream),
// lora/base and base/solo (what 8 streams gain over one).
func BenchmarkMixedAdapterDecode(b *testing.B) {
	const streams, rank, ctxLen = 8, 16, 128
	be := cpu.New(0)
	defer be.Close()
	be.SetInt8Activations(true) // before the weights are uploaded, as serve sets them
	be.SetInt8Prefill(true)
	m := randomModel(b, testmodel.Llama32_1B(), be)
	ls, err := m.EnableLoRA(streams, rank)
	if err != nil {
		b.Fatal(err)
	}
	for s := range streams {
		if err := install(ls, s, randomAdapter(m.Config, rank, 32, uint64(s+1), 0.02, nil)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d adapters resident: %.0f MB of LoRA slots", streams, float64(SlotBytes(m, rank)*streams)/1e6)

	type phase struct {
		caches []*llama.KVCache
		slots  []int32
		last   []int32
		spent  time.Duration
	}
	newPhase := func(streams int, slotOf func(stream int) int32) *phase {
		p := &phase{}
		pool, err := kvpool.New(be, m.KVShape(), kvpool.DefaultBlockSize, streams*ctxLen/kvpool.DefaultBlockSize)
		if err != nil {
			b.Fatal(err)
		}
		for s := range streams {
			p.caches = append(p.caches, llama.NewSeqCache(pool, ctxLen))
			p.slots = append(p.slots, slotOf(s))
			p.last = append(p.last, int32(128000)) // BOS
		}
		return p
	}
	var batch llama.Batch
	step := func(p *phase) {
		if p.caches[0].Len() == ctxLen {
			for _, c := range p.caches {
				c.Truncate(0) // keep the attention span (and its cost) bounded
			}
		}
		batch.Reset()
		for s, c := range p.caches {
			batch.AddWithAdapter(p.last[s], int32(c.Len()), c, true, p.slots[s])
		}
		start := time.Now()
		logits, err := m.Forward(&batch)
		p.spent += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		for s := range p.caches { // greedy, cheap: the model is random anyway
			row := logits[s*m.Config.Vocab:][:m.Config.Vocab]
			best := 0
			for i, v := range row {
				if v > row[best] {
					best = i
				}
			}
			p.last[s] = int32(best)
		}
	}
	base := newPhase(streams, func(int) int32 { return -1 })
	lora := newPhase(streams, func(s int) int32 { return int32(s) })
	one := newPhase(streams, func(int) int32 { return 0 })
	solo := newPhase(1, func(int) int32 { return -1 })
	phases := []*phase{base, lora, one, solo}
	for _, p := range phases {
		step(p) // warm up buffers
		p.spent = 0
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range phases {
			step(p)
		}
	}
	b.StopTimer()
	baseTPS := float64(streams*b.N) / base.spent.Seconds()
	loraTPS := float64(streams*b.N) / lora.spent.Seconds()
	b.ReportMetric(baseTPS, "base_tok/s")
	b.ReportMetric(loraTPS, "lora_tok/s")
	soloTPS := float64(b.N) / solo.spent.Seconds()
	b.ReportMetric(float64(streams*b.N)/one.spent.Seconds(), "one_tok/s")
	b.ReportMetric(soloTPS, "solo_tok/s")
	b.ReportMetric(baseTPS/soloTPS, "base/solo")
	b.ReportMetric(loraTPS/baseTPS, "lora/base")
}
