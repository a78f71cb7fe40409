package llama

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
)

// Whole-model figures on a model directory, to set beside llama.cpp on a
// GGUF of the same weights (scripts/peer_llamacpp.py runs both in one go):
//
//	PARROT_BENCH_MODEL=/tmp/m1b go test ./runtime/llama -run '^$' -bench '^BenchmarkPeer$' -benchtime 2x
//
// Without PARROT_BENCH_MODEL they skip. Other knobs: PARROT_BENCH_THREADS
// (default: all CPUs), PARROT_BENCH_PP (prompt lengths, default "128,512"),
// PARROT_BENCH_TG (decode steps, default 64), PARROT_BENCH_PROMPT (tokens
// before the decode, default 8), PARROT_BENCH_QUANT (nf4 or none, as
// LoadOptions.Quantize). Each sub-benchmark reports tok/s over all its
// iterations and best_tok/s of the fastest one (the machine may be shared;
// llama.cpp's figure is a best-of too). Decode reports the bytes of
// weights one step streams over its time against the streaming-read
// bandwidth measured by the same backend in the same process.

// peerEnv reads an integer knob.
func peerEnv(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		tb.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return v
}

// peerLoad loads $PARROT_BENCH_MODEL on a CPU backend of
// $PARROT_BENCH_THREADS threads, or skips. With int8, the backend's NF4
// products take int8 activations in decode and prefill, set before the
// weights are uploaded, as serve's --nf4-decode and --nf4-prefill int8
// (the default) set them (on a VNNI CPU the weights become panels).
func peerLoad(tb testing.TB, int8 bool) (*Loaded, *cpu.Backend) {
	dir := os.Getenv("PARROT_BENCH_MODEL")
	if dir == "" {
		tb.Skip("PARROT_BENCH_MODEL is not set")
	}
	be := cpu.New(peerEnv(tb, "PARROT_BENCH_THREADS", 0))
	tb.Cleanup(func() { be.Close() })
	be.SetInt8Activations(int8)
	be.SetInt8Prefill(int8)
	start := time.Now()
	l, err := Load(dir, LoadOptions{Backend: be, Quantize: os.Getenv("PARROT_BENCH_QUANT")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("loaded %s in %s", dir, time.Since(start).Round(time.Millisecond))
	// The KV cache as serve's --kv-cache-dtype auto keeps it (bfloat16 for a
	// 16-bit checkpoint), or as $PARROT_BENCH_KV says.
	switch kv := cmp.Or(os.Getenv("PARROT_BENCH_KV"), "auto"); kv {
	case "auto":
		be.SetKVBF16(l.Model.Config.DType == "bfloat16" || l.Model.Config.DType == "float16")
	case "bfloat16", "float32":
		be.SetKVBF16(kv == "bfloat16")
	default:
		tb.Fatalf("PARROT_BENCH_KV=%q: want auto, bfloat16 or float32", kv)
	}
	tb.Logf("KV cache in bfloat16: %v", be.KVInBF16())
	return l, be
}

// peerTokens are n ordinary token ids (below the special tokens) from a
// fixed stream.
func peerTokens(c *Config, n int) []int32 {
	limit := c.Vocab
	if c.BOS > 0 {
		limit = int(c.BOS)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(limit))
	}
	return ids
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

// timed runs one iteration of f per b.N, and reports tok/s (tokens per
// iteration over the mean) and best_tok/s (over the fastest iteration).
func timed(b *testing.B, tokens int, f func() error) (best float64) {
	b.ResetTimer()
	best = math.Inf(1)
	var total float64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start).Seconds()
		total += d
		best = min(best, d)
	}
	b.ReportMetric(float64(tokens*b.N)/total, "tok/s")
	b.ReportMetric(float64(tokens)/best, "best_tok/s")
	return best
}

// BenchmarkPeer times prompt processing and decode on $PARROT_BENCH_MODEL
// in serve's two NF4 modes (int8, the default, then float32), the model
// loaded once per mode as serve loads it, beside a bandwidth probe.
func BenchmarkPeer(b *testing.B) {
	var pps []int
	for _, s := range strings.Split(cmp.Or(os.Getenv("PARROT_BENCH_PP"), "128,512"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("PARROT_BENCH_PP=%q: want positive integers", os.Getenv("PARROT_BENCH_PP"))
		}
		pps = append(pps, n)
	}
	tg := peerEnv(b, "PARROT_BENCH_TG", 64)
	prompt := max(1, peerEnv(b, "PARROT_BENCH_PROMPT", 8))
	maxLen := prompt + tg
	for _, n := range pps {
		maxLen = max(maxLen, n)
	}
	bw := 0.0
	for _, mode := range []string{"int8", "float32"} {
		l, be := peerLoad(b, mode == "int8")
		if bw == 0 {
			bw = cpu.MeasureBandwidth(be, 256<<20, 3)
			b.Run("bandwidth", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					bw = max(bw, cpu.MeasureBandwidth(be, 256<<20, 1))
				}
				b.ReportMetric(bw, "memGB/s")
			})
		}
		peerRuns(b, l.Model, be, mode, pps, tg, prompt, maxLen, bw)
		be.Close()
	}
}

// peerRuns is BenchmarkPeer's sub-benchmarks for one mode.
func peerRuns(b *testing.B, m *Model, be *cpu.Backend, mode string, pps []int, tg, prompt, maxLen int, bw float64) {
	c := m.Config
	cache := sharedCaches(b, m, 1, maxLen)[0]

	// Prompt processing: n tokens in one batch from an empty cache, logits
	// of the last one only, as llama.cpp evaluates a prompt.
	for _, n := range pps {
		b.Run(fmt.Sprintf("pp%d/nf4=%s", n, mode), func(b *testing.B) {
			ids := peerTokens(c, n)
			var batch Batch
			timed(b, n, func() error {
				cache.Truncate(0)
				batch.Reset()
				for p, id := range ids {
					batch.Add(id, int32(p), cache, p == n-1)
				}
				_, err := m.Forward(&batch)
				return err
			})
		})
	}

	// Decode: after a prompt of `prompt` tokens, tg greedy steps of one
	// token each (logits read back and argmax taken every step).
	decode := func(b *testing.B) {
		if tg == 0 {
			b.Skip("PARROT_BENCH_TG=0")
		}
		cache.Truncate(0)
		var batch Batch
		for p, id := range peerTokens(c, prompt) {
			batch.Add(id, int32(p), cache, p == prompt-1)
		}
		logits, err := m.Forward(&batch)
		if err != nil {
			b.Fatal(err)
		}
		first := argmax(logits)
		bytes := weightBytes(m.Weights)
		best := timed(b, tg, func() error {
			cache.Truncate(prompt)
			next := first
			for s := range tg {
				batch.Reset()
				batch.Add(next, int32(prompt+s), cache, true)
				logits, err := m.Forward(&batch)
				if err != nil {
					return err
				}
				next = argmax(logits)
			}
			return nil
		})
		gbs := float64(bytes) * float64(tg) / best / 1e9
		b.ReportMetric(float64(bytes), "weightB/tok")
		b.ReportMetric(bw, "memGB/s")
		b.ReportMetric(gbs/bw, "best_frac_of_bw")
	}
	// The lm_head as loaded (bf16 for a bf16 checkpoint), then its 8-bit
	// copy (serve --lm-head-8bit), then in NF4 (serve --lm-head-4bit, as
	// llama.cpp's pure Q4_0 file has it), each uploaded as serve's are.
	run := func(head string) {
		b.Run(fmt.Sprintf("tg%d/lm_head=%s/nf4=%s", tg, head, mode), decode)
	}
	orig, origEmbed := m.Weights.LMHead, m.Weights.Embed
	upload := func() {
		var err error
		if m.Weights.LMHead, err = be.Upload(m.Weights.LMHead); err != nil {
			b.Fatal(err)
		}
		if m.Weights.Embed == m.Weights.LMHead {
			return
		}
		if m.Weights.Embed, err = be.Upload(m.Weights.Embed); err != nil {
			b.Fatal(err)
		}
	}
	if _, ok := orig.(*kernels.Q8Matrix); !ok {
		head := "f32"
		rows, cols := orig.Shape()
		if n, _ := kernels.MatrixBytes(orig); n == 2*int64(rows)*int64(cols) {
			head = "bf16" // as loaded, or its panels
		}
		run(head)
		if err := m.Weights.QuantizeLMHead(); err != nil {
			b.Fatal(err)
		}
		upload()
	}
	run("q8")
	m.Weights.LMHead, m.Weights.Embed = orig, origEmbed
	if err := m.Weights.QuantizeLMHeadNF4(); err == nil {
		upload()
		run("nf4")
	}
	m.Weights.LMHead, m.Weights.Embed = orig, origEmbed
}

// TestPeerGreedy prints the greedy continuation of the ids in
// $PARROT_PEER_GREEDY (comma-separated) by the model in
// $PARROT_BENCH_MODEL, $PARROT_PEER_GREEDY_N tokens (default 16), as a line
// "PEER_GREEDY id,id,...", and the 10 likeliest first tokens with their
// probabilities (softmax in float64 of the float32 logits) as "PEER_TOP
// id:p,...": scripts/peer_llamacpp.py compares both with llama.cpp's on the
// GGUF of the same weights.
func TestPeerGreedy(t *testing.T) {
	spec := os.Getenv("PARROT_PEER_GREEDY")
	if spec == "" {
		t.Skip("PARROT_PEER_GREEDY is not set")
	}
	l, _ := peerLoad(t, false)
	m := l.Model
	var ids []int32
	for _, s := range strings.Split(spec, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("PARROT_PEER_GREEDY=%q: %v", spec, err)
		}
		ids = append(ids, int32(v))
	}
	n := peerEnv(t, "PARROT_PEER_GREEDY_N", 16)
	cache := sharedCaches(t, m, 1, len(ids)+n)[0]
	var batch Batch
	for p, id := range ids {
		batch.Add(id, int32(p), cache, p == len(ids)-1)
	}
	var out []string
	for s := 0; s < n; s++ {
		logits, err := m.Forward(&batch)
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			fmt.Printf("PEER_TOP %s\n", topProbs(logits, 10))
		}
		next := argmax(logits)
		out = append(out, strconv.Itoa(int(next)))
		batch.Reset()
		batch.Add(next, int32(len(ids)+s), cache, true)
	}
	fmt.Printf("PEER_GREEDY %s\n", strings.Join(out, ","))
}

// topProbs formats the k likeliest ids of softmax(logits) as "id:p,...".
func topProbs(logits []float32, k int) string {
	hi := float64(logits[argmax(logits)])
	var z float64
	for _, x := range logits {
		z += math.Exp(float64(x) - hi)
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(logits[b], logits[a]) })
	var parts []string
	for _, i := range idx[:min(k, len(idx))] {
		parts = append(parts, fmt.Sprintf("%d:%.9g", i, math.Exp(float64(logits[i])-hi)/z))
	}
	return strings.Join(parts, ",")
}
