package llama

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
)

// llama32_1B is the Llama-3.2-1B architecture.
func llama32_1B() *Config {
	c, err := ParseConfig([]byte(llama32Config))
	if err != nil {
		panic(err)
	}
	return c
}

// randomWeights builds NF4 weights of the given shape without touching disk:
// decode speed depends on bytes read, not on the values.
func randomWeights(c *Config) *Weights {
	rng := rand.New(rand.NewPCG(1, 2))
	nf4 := func(rows, cols int) *kernels.NF4Matrix {
		n := rows * cols
		m := &kernels.NF4Matrix{Rows: rows, Cols: cols, Packed: make([]byte, (n+1)/2),
			Absmax: make([]float32, (n+kernels.NF4BlockSize-1)/kernels.NF4BlockSize), Code: kernels.NF4Code}
		for i := range m.Packed {
			m.Packed[i] = byte(rng.Uint32())
		}
		for i := range m.Absmax {
			m.Absmax[i] = 0.02 + 0.01*rng.Float32()
		}
		return m
	}
	ones := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	w := &Weights{Norm: kernels.HostBuf(ones(c.Hidden)), Layers: make([]Layer, c.Layers)}
	// bf16, as a real checkpoint stores the (tied) embedding.
	emb := make([]uint16, c.Vocab*c.Hidden)
	for i := range emb {
		emb[i] = kernels.F32ToBF16(float32(rng.NormFloat64() * 0.02))
	}
	w.Embed = &kernels.BF16Matrix{Rows: c.Vocab, Cols: c.Hidden, Data: emb}
	w.LMHead = w.Embed
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	lin := func(out, in int) *Linear { return &Linear{W: nf4(out, in), In: in, Out: out} }
	for i := range w.Layers {
		w.Layers[i] = Layer{AttnNorm: kernels.HostBuf(ones(c.Hidden)), MLPNorm: kernels.HostBuf(ones(c.Hidden)),
			Q: lin(q, c.Hidden), K: lin(kv, c.Hidden), V: lin(kv, c.Hidden), O: lin(c.Hidden, q),
			Gate: lin(c.Intermediate, c.Hidden), Up: lin(c.Intermediate, c.Hidden), Down: lin(c.Hidden, c.Intermediate)}
	}
	return w
}

// weightBytes is what one decode step must read: every projection's packed
// nibbles and scales, plus the lm_head.
func weightBytes(w *Weights) int64 {
	var n int64
	size := func(m kernels.Matrix) int64 {
		n, ok := kernels.MatrixBytes(m)
		if !ok {
			panic(fmt.Sprintf("unknown matrix %T", m))
		}
		return n
	}
	for i := range w.Layers {
		for _, l := range w.Layers[i].Projections() {
			n += size(l.W)
		}
	}
	return n + size(w.LMHead)
}

// BenchmarkDecodeStep1B times one decode step of a Llama-3.2-1B-shaped NF4
// model at a context of 128 tokens, for batch sizes 1 and 8, with the tied
// bf16 lm_head and with an 8-bit copy of it, with the NF4 products in
// float32 and with int8 activations, and reports the
// bytes of weights read per step over the time as GB/s and as a fraction of
// the streaming-read bandwidth measured in the same run.
func BenchmarkDecodeStep1B(b *testing.B) {
	c := llama32_1B()
	w := randomWeights(c)
	be := cpu.New(0)
	defer be.Close()
	m := mustModel(b, c, w, be)
	bw := cpu.MeasureBandwidth(be, 256<<20, 3)
	bf16Head := w.LMHead
	if err := w.QuantizeLMHead(); err != nil {
		b.Fatal(err)
	}
	q8Head := w.LMHead
	for _, head := range []struct {
		name string
		m    kernels.Matrix
	}{{"bf16", bf16Head}, {"q8", q8Head}} {
		w.LMHead = head.m
		bytes := weightBytes(w)
		for _, run := range []struct {
			batch int
			nf4   string
		}{{1, "float32"}, {1, "int8"}, {8, "float32"}, {8, "int8"}} {
			batch := run.batch
			b.Run(fmt.Sprintf("lm_head=%s/batch=%d/nf4=%s", head.name, batch, run.nf4), func(b *testing.B) {
				be.SetInt8Activations(run.nf4 == "int8")
				caches := sharedCaches(b, m, batch, 512)
				for s := range caches {
					var pre Batch
					for p := range 128 {
						pre.Add(int32(p), int32(p), caches[s], false)
					}
					pre.Logits[len(pre.Logits)-1] = true
					if _, err := m.Forward(&pre); err != nil {
						b.Fatal(err)
					}
				}
				var step Batch
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					step.Reset()
					for _, cache := range caches {
						cache.Truncate(128)
						step.Add(42, 128, cache, true)
					}
					if _, err := m.Forward(&step); err != nil {
						b.Fatal(err)
					}
				}
				perStep := time.Since(start).Seconds() / float64(b.N)
				gbs := float64(bytes) / perStep / 1e9
				b.ReportMetric(float64(batch)/perStep, "tok/s")
				b.ReportMetric(gbs, "weightGB/s")
				b.ReportMetric(bw, "memGB/s")
				b.ReportMetric(gbs/bw, "frac_of_bw")
			})
		}
	}
}
