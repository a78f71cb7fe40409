package cpu

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
)

// Decode streams every weight once per step, so the NF4 benchmarks report
// the weight bytes read per second and that rate as a fraction of a plain
// streaming read measured in the same process (frac_of_bw): the
// bandwidth floor of a step is bytes/bandwidth.

// probeBytes is the size of the streaming-read buffer: far beyond any cache.
const probeBytes = 256 << 20

// bandwidth is the best of a few streaming reads, measured once per process
// so that every benchmark divides by the same number.
var bandwidth = sync.OnceValue(func() float64 {
	b := New(0)
	defer b.Close()
	return MeasureBandwidth(b, probeBytes, 5) * 1e9
})

func BenchmarkMemBandwidth(bb *testing.B) {
	b := New(0)
	defer b.Close()
	j := newSumJob(b, probeBytes)
	bb.SetBytes(probeBytes)
	bb.ResetTimer()
	for bb.Loop() {
		b.pool.parallel(j, len(j.data), 1<<18)
	}
	bb.ReportMetric(float64(probeBytes)*float64(bb.N)/bb.Elapsed().Seconds()/1e9, "GB/s")
}

// nf4Copies returns enough copies of a random rows×cols NF4 matrix to
// exceed the last-level cache, so that every call reads from memory as a
// real model's weights do.
func nf4Copies(rows, cols int) []*kernels.NF4Matrix {
	rng := rand.New(rand.NewPCG(1, 2))
	one := kerneltest.NF4(rng, rows, cols, kernels.NF4Code)
	size := nf4Bytes(one)
	ws := []*kernels.NF4Matrix{one}
	for total := size; total < 128<<20; total += size {
		c := *one
		c.Packed = append([]byte(nil), one.Packed...)
		c.Absmax = append([]float32(nil), one.Absmax...)
		ws = append(ws, &c)
	}
	return ws
}

func nf4Bytes(m *kernels.NF4Matrix) int { return len(m.Packed) + 4*len(m.Absmax) }

func BenchmarkNF4MatVec(bb *testing.B) {
	bw := bandwidth()
	shapes := [][2]int{{2048, 2048}, {8192, 2048}, {2048, 8192}}
	for _, s := range shapes {
		ws := nf4Copies(s[0], s[1])
		for _, c := range []struct {
			T                  int
			int8, avx2, panels bool // avx2: the AVX2 int8 kernels on a CPU with VNNI ones; panels: as Upload repacks
		}{{1, false, false, false}, {1, true, false, false}, {1, true, true, false}, {1, true, false, true},
			{8, false, false, false}, {8, true, false, false}, {8, true, true, false}, {8, true, false, true}} {
			T := c.T
			name := fmt.Sprintf("%dx%d/T=%d", s[0], s[1], T)
			if c.int8 {
				name += "/int8"
			}
			if c.avx2 || c.panels {
				if !haveVNNI() {
					continue
				}
				name += map[bool]string{true: "/avx2", false: "/panels"}[c.avx2]
			}
			bb.Run(name, func(bb *testing.B) {
				b := New(0)
				defer b.Close()
				b.vnni = b.vnni && !c.avx2
				b.SetInt8Activations(c.int8)
				b.SetInt8Prefill(c.panels)
				mats := make([]kernels.Matrix, len(ws))
				for i, w := range ws {
					mats[i], _ = b.Upload(w)
				}
				rng := rand.New(rand.NewPCG(3, 4))
				x := kernels.HostBuf(kerneltest.Vec(rng, T*s[1]))
				y := kernels.HostBuf(make([]float32, T*s[0]))
				bb.SetBytes(int64(nf4Bytes(ws[0])))
				i := 0
				for bb.Loop() {
					b.MatMul(y, x, mats[i%len(mats)], T)
					i++
				}
				gbs := float64(nf4Bytes(ws[0])) * float64(bb.N) / bb.Elapsed().Seconds() / 1e9
				bb.ReportMetric(gbs, "GB/s")
				bb.ReportMetric(gbs*1e9/bw, "frac_of_bw")
				bb.ReportMetric(float64(T*bb.N)/bb.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}

// BenchmarkF32MatMul is a prefill-shaped product: 128 tokens through a
// 2048×2048 float32 weight (and, for comparison, through the same NF4 one).
//
// The last two cases are the prefill of a long prompt through
// Llama-3.2-1B's MLP shapes: x no longer fits in cache, so the blocking
// over tokens decides the speed.
func BenchmarkF32MatMul(bb *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	cases := []struct {
		T int
		w kernels.Matrix
	}{
		{128, kerneltest.F32(rng, 2048, 2048)},
		{128, kerneltest.NF4(rng, 2048, 2048, kernels.NF4Code)},
		{512, kerneltest.NF4(rng, 8192, 2048, kernels.NF4Code)},
		{512, kerneltest.NF4(rng, 2048, 8192, kernels.NF4Code)},
	}
	for _, c := range cases {
		T, w := c.T, c.w
		rows, cols := w.Shape()
		x := kernels.HostBuf(kerneltest.Vec(rng, T*cols))
		y := kernels.HostBuf(make([]float32, T*rows))
		bb.Run(fmt.Sprintf("%T/T=%d/%dx%d", w, T, rows, cols), func(bb *testing.B) {
			b := New(0)
			defer b.Close()
			for bb.Loop() {
				b.MatMul(y, x, w, T)
			}
			bb.ReportMetric(2*float64(T*rows*cols)*float64(bb.N)/bb.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkGemmKernel times the packed GEMM's micro-kernel alone on one
// goroutine, 6 tokens × 16 rows × 256 columns in L1: the compute ceiling
// of prefill, to set beside the core's FMA peak (2 FMA units × 8 lanes × 2
// FLOP per cycle on AVX2 cores with two FMA ports).
func BenchmarkGemmKernel(bb *testing.B) {
	if !haveSIMD() {
		bb.Skip("no AVX2/FMA")
	}
	const k = gemmKC
	rng := rand.New(rand.NewPCG(9, 10))
	x := kerneltest.Vec(rng, gemmMR*k)
	p := kerneltest.Vec(rng, gemmNR*k)
	y := make([]float32, gemmMR*gemmNR)
	for bb.Loop() {
		gemm6x16(y, gemmNR, x, k, p, k, false, true)
	}
	bb.ReportMetric(2*gemmMR*gemmNR*k*float64(bb.N)/bb.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkNF4Kernel times the inner loops alone on one goroutine, on a
// 2048-column row that stays in L1: the compute ceiling of each version, to
// set beside the memory floor (MB/s of packed weights and scales). "go" is
// the pure Go loop, "avx2" the natural-order assembly (rows that straddle
// blocks), "planes" the assembly used when Cols%64 == 0.
func BenchmarkNF4Kernel(bb *testing.B) {
	const cols = 2048
	rng := rand.New(rand.NewPCG(7, 8))
	m := kerneltest.NF4(rng, 1, cols, kernels.NF4Code)
	x := kerneltest.Vec(rng, cols)
	dst := make([]float32, cols)
	var j nf4Job
	j.setCode(&m.Code)
	versions := []string{"go"}
	if haveSIMD() {
		versions = append(versions, "avx2", "planes")
	}
	if haveSIMD() {
		c := newInt8Code(&m.Code)
		xq, xd := make([]int8, cols), make([]float32, cols/blockElems)
		quantizeInt8Planes(xq, xd, x, c.scale, false)
		xq4, xd4 := make([]int8, 4*cols), make([]float32, 4*cols/blockElems)
		quantizeInt8Planes(xq4, xd4, append(append(append(append([]float32(nil), x...), x...), x...), x...), c.scale, false)
		bb.Run("dot4tokens/int8", func(bb *testing.B) {
			bb.SetBytes(4 * int64(nf4Bytes(m))) // per token, as if each read its row
			var out [4]float32
			for bb.Loop() {
				dotNF4Int8x4TokAVX2(&out, &c.tbl, m.Packed, m.Absmax, xq4, xd4, cols)
			}
		})
		bb.Run("dot/int8", func(bb *testing.B) {
			bb.SetBytes(int64(nf4Bytes(m)))
			var s float32
			for bb.Loop() {
				s += dotNF4Int8AVX2(&c.tbl, m.Packed, m.Absmax, xq, xd)
			}
			_ = s
		})
	}
	for _, v := range versions {
		bb.Run("dot/"+v, func(bb *testing.B) {
			bb.SetBytes(int64(nf4Bytes(m)))
			var s float32
			for bb.Loop() {
				if v == "planes" {
					s += dotNF4PlanesAVX2(&j.planeT, m.Packed, m.Absmax, x)
				} else {
					s += dotNF4(m, &j.lut, 0, cols, x, v == "avx2")
				}
			}
			_ = s
		})
		bb.Run("dequant/"+v, func(bb *testing.B) {
			bb.SetBytes(int64(nf4Bytes(m)))
			for bb.Loop() {
				if v == "planes" {
					dequantNF4PlanesAVX2(dst, &j.planeT, m.Packed, m.Absmax)
				} else {
					dequantNF4(dst, m, &j.lut, 0, cols, v == "avx2")
				}
			}
		})
	}
}

// BenchmarkAttention is PagedAttention on Llama-3.2-1B's heads (32 query,
// 8 KV, dim 64): decode steps of many sequences, one token each, and a
// prefill of one sequence, in blocks of 16. Each sequence's blocks are in
// order in the cache (as the unpaged cache laid a sequence out), or, with
// "shuffled", drawn at random from it (as a long-running paged cache ends
// up), which costs the hardware prefetcher its long strides.
func BenchmarkAttention(bb *testing.B) {
	const nHeads, nKV, hd, bs = 32, 8, 64, 16
	for _, c := range []struct {
		name         string
		seqs, ctx, T int // T new tokens at the end of each sequence of ctx positions
		shuffled     bool
	}{
		{"decode/16x1024", 16, 1024, 1, false},
		{"decode/64x512", 64, 512, 1, false},
		{"prefill/1x512", 1, 512, 512, false},
		{"decode/16x1024/shuffled", 16, 1024, 1, true},
		{"decode/64x512/shuffled", 64, 512, 1, true},
		{"prefill/1x512/shuffled", 1, 512, 512, true},
	} {
		for _, bf16 := range []bool{false, true} {
			name := c.name
			if bf16 {
				name += "/bf16"
			}
			bb.Run(name, func(bb *testing.B) {
				b := New(0)
				defer b.Close()
				rng := rand.New(rand.NewPCG(11, 12))
				kvDim := nKV * hd
				maxBlocks := c.ctx / bs
				numBlocks := c.seqs * maxBlocks
				K, V := kerneltest.Vec(rng, numBlocks*bs*kvDim), kerneltest.Vec(rng, numBlocks*bs*kvDim)
				tables := make([]int32, numBlocks)
				for i := range tables {
					tables[i] = int32(i)
				}
				if c.shuffled {
					rng.Shuffle(numBlocks, func(i, j int) { tables[i], tables[j] = tables[j], tables[i] })
				}
				var seq, pos []int32
				for s := 0; s < c.seqs; s++ {
					for i := 0; i < c.T; i++ {
						seq, pos = append(seq, int32(s)), append(pos, int32(c.ctx-c.T+i))
					}
				}
				meta := kernels.AttnMeta{Seq: kernels.HostIntBuf(seq), Pos: kernels.HostIntBuf(pos), BlockTables: kernels.HostIntBuf(tables),
					MaxBlocks: maxBlocks, BlockSize: bs, MaxLen: c.ctx}
				n := len(pos)
				q := kernels.HostBuf(kerneltest.Vec(rng, n*nHeads*hd))
				out := kernels.HostBuf(make([]float32, n*nHeads*hd))
				kv := kernels.KVLayer{K: kernels.HostBuf(K), V: kernels.HostBuf(V)}
				if bf16 {
					kv = kernels.KVLayer{K16: make([]uint16, len(K)), V16: make([]uint16, len(V))}
					for i := range K {
						kv.K16[i], kv.V16[i] = kernels.F32ToBF16(K[i]), kernels.F32ToBF16(V[i])
					}
				}
				for bb.Loop() {
					b.PagedAttention(out, q, kv, meta, nHeads, nKV, hd)
				}
			})
		}
	}
}
