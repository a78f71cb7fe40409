package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// variants are the backends under test: pure Go and (where the CPU has it)
// AVX2, each with one worker and with more workers than this machine's cores,
// so that work is really split and handed out.
func variants(t testing.TB) []*Backend {
	var bs []*Backend
	for _, simd := range []bool{false, true} {
		if simd && !haveSIMD() {
			t.Log("no AVX2/FMA here (or purego build): assembly kernels not tested")
			continue
		}
		for _, threads := range []int{1, 3} {
			b := newBackend(threads, simd)
			t.Cleanup(b.Close)
			bs = append(bs, b)
		}
	}
	return bs
}

func TestAgainstRef(t *testing.T) {
	for _, b := range variants(t) {
		t.Run(fmt.Sprintf("%s-%d", b.Name(), b.Threads()), func(t *testing.T) {
			kerneltest.Run(t, b)
		})
	}
}

// TestLoRAFloat32Storage runs the LoRA suite on float32 slots (the default,
// bfloat16, runs in TestAgainstRef).
func TestLoRAFloat32Storage(t *testing.T) {
	for _, b := range variants(t) {
		b.SetLoRAFloat32(true)
		if b.LoRAInBF16() {
			t.Fatal("SetLoRAFloat32(true) left bfloat16 storage")
		}
		t.Run(fmt.Sprintf("%s-%d", b.Name(), b.Threads()), func(t *testing.T) {
			kerneltest.RunLoRA(t, b)
		})
	}
}

// TestKVBF16 runs the KV ops on bfloat16 caches (float32, the default,
// runs in TestAgainstRef).
func TestKVBF16(t *testing.T) {
	for _, b := range variants(t) {
		b.SetKVBF16(true)
		if kernels.KVBytesPerValue(b) != 2 {
			t.Fatal("SetKVBF16(true) left float32 storage")
		}
		t.Run(fmt.Sprintf("%s-%d", b.Name(), b.Threads()), func(t *testing.T) {
			kerneltest.RunKV(t, b)
		})
	}
}

// FuzzMatMulNF4 compares NF4 MatMul with ref on random shapes and contents.
// The seed corpus runs with plain go test; go test -fuzz FuzzMatMulNF4
// explores further.
func FuzzMatMulNF4(f *testing.F) {
	f.Add(uint8(1), uint16(64), uint8(1), uint64(1))
	f.Add(uint8(3), uint16(172), uint8(3), uint64(2))
	f.Add(uint8(7), uint16(33), uint8(7), uint64(3))
	f.Add(uint8(40), uint16(999), uint8(2), uint64(4))
	f.Add(uint8(2), uint16(1), uint8(9), uint64(5))
	bs := variants(f)
	f.Fuzz(func(t *testing.T, rows uint8, cols uint16, T uint8, seed uint64) {
		r, c, n := 1+int(rows)%48, 1+int(cols)%1200, 1+int(T)%10
		rng := rand.New(rand.NewPCG(seed, 99))
		w := kerneltest.NF4(rng, r, c, kernels.NF4Code)
		x := kerneltest.Vec(rng, n*c)
		for _, b := range bs {
			if msg := kerneltest.MatMulMismatch(b, w, x, n); msg != "" {
				t.Fatalf("%s [%d,%d] T=%d: %s", b.Name(), r, c, n, msg)
			}
		}
	})
}

func TestExpf(t *testing.T) {
	for x := float32(-87.3); x < 88.7; x += 0.0137 {
		want := math.Exp(float64(x))
		if got := float64(expf(x)); math.Abs(got-want) > 3e-7*want {
			t.Fatalf("expf(%v) = %v, want %v", x, got, want)
		}
	}
	if got := expf(88.72); math.IsInf(float64(got), 0) || got < 3.3e38 {
		t.Errorf("expf(88.72) = %v, want finite ≈ 3.4e38", got)
	}
	if !math.IsInf(float64(expf(89)), 1) || expf(-90) != 0 || expf(float32(math.Inf(-1))) != 0 {
		t.Errorf("expf out of range: %v %v", expf(89), expf(-90))
	}
	if nan := float32(math.NaN()); !math.IsNaN(float64(expf(nan))) {
		t.Errorf("expf(NaN) = %v", expf(nan))
	}
}

// The hot path must not allocate: decode calls these ops thousands of times
// per second.
func TestNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	hb := kernels.HostBuf
	for _, b := range variants(t) {
		nf4 := kerneltest.NF4(rng, 256, 300, kernels.NF4Code)
		f32 := kerneltest.F32(rng, 256, 300)
		x := hb(kerneltest.Vec(rng, 5*300))
		y := hb(make([]float32, 5*300))
		q := hb(kerneltest.Vec(rng, 5*8*16))
		// Five tokens of two sequences, positions 35..39, in blocks of 16.
		kv := kernels.KVLayer{K: hb(kerneltest.Vec(rng, 48*2*16)), V: hb(kerneltest.Vec(rng, 48*2*16))}
		kv16 := kernels.KVLayer{K16: make([]uint16, 48*2*16), V16: make([]uint16, 48*2*16)}
		meta := kernels.AttnMeta{
			Seq: kernels.HostIntBuf([]int32{0, 1, 0, 1, 1}), Pos: kernels.HostIntBuf([]int32{35, 36, 37, 38, 39}),
			BlockTables: kernels.HostIntBuf([]int32{2, 0, 1, 1, 2, 0}), MaxBlocks: 3, BlockSize: 16, MaxLen: 40,
		}
		pos := kernels.HostIntBuf([]int32{1, 2, 3, 4, 5})
		slots := kernels.HostIntBuf([]int32{40, 7, 13})
		ids := kernels.HostIntBuf([]int32{5, 6, 7})
		rows := kernels.HostIntBuf([]int32{4, 0, 4})
		inv := hb(kerneltest.Vec(rng, 8))
		lora, err := kernels.NewLoRAStack(b, 3, 16, 300, 256)
		if err != nil {
			t.Fatal(err)
		}
		z := hb(make([]float32, 5*16))
		loraSlots := kernels.HostIntBuf([]int32{2, -1, 0, 2, 1})
		ops := map[string]func(){
			"MatMulNF4 T=1":      func() { b.MatMul(y, x, nf4, 1) },
			"MatMulNF4 T=5":      func() { b.MatMul(y, x, nf4, 5) },
			"MatMulF32 T=5":      func() { b.MatMul(y, x, f32, 5) },
			"PagedAttention":     func() { b.PagedAttention(y.Slice(0, q.Len()), q, kv, meta, 8, 2, 16) },
			"WriteKV":            func() { b.WriteKV(kv, q, q, slots, 2*16) },
			"PagedAttentionBF16": func() { b.PagedAttention(y.Slice(0, q.Len()), q, kv16, meta, 8, 2, 16) },
			"WriteKVBF16":        func() { b.WriteKV(kv16, q, q, slots, 2*16) },
			"GatherRows":         func() { b.GatherRows(y.Slice(0, 3*300), x, rows, 300) },
			"RoPE":               func() { b.RoPE(q, pos, 8, 16, inv) },
			"RMSNorm":            func() { b.RMSNorm(y, x, x.Slice(0, 300), 1e-5) },
			"SiLUMul":            func() { b.SiLUMul(y, x, x) },
			"Add":                func() { b.Add(y, x) },
			"EmbedNF4":           func() { b.Embed(y.Slice(0, 3*300), nf4, ids) },
			"LoRAShrink":         func() { b.LoRAShrink(z, x, lora, loraSlots) },
			"LoRAExpand":         func() { b.LoRAExpand(y.Slice(0, 5*256), z, lora, loraSlots) },
		}
		for name, op := range ops {
			op() // grows scratch space once
			if a := testing.AllocsPerRun(20, op); a != 0 {
				t.Errorf("%s %s: %v allocations per call", b.Name(), name, a)
			}
		}
	}
}

func TestCloseAndCheck(t *testing.T) {
	b := New(0)
	if b.Threads() < 1 {
		t.Fatalf("Threads() = %d", b.Threads())
	}
	rng := rand.New(rand.NewPCG(2, 2))
	w := kerneltest.NF4(rng, 70, 100, kernels.NF4Code)
	if err := kernels.CheckMatrix(b, w); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b.Close()
	// After Close ops run on the caller and give the same answers.
	if msg := kerneltest.MatMulMismatch(b, w, kerneltest.Vec(rng, 2*100), 2); msg != "" {
		t.Fatal(msg)
	}
}

func TestBadShapesPanic(t *testing.T) {
	b := newBackend(2, false)
	defer b.Close()
	hb, hi := kernels.HostBuf, kernels.HostIntBuf
	f := func(n int) kernels.Buf { return hb(make([]float32, n)) }
	w := &kernels.F32Matrix{Rows: 2, Cols: 3, Data: make([]float32, 6)}
	// One token at position 1 of a sequence in blocks of 2, K/V rows of 4.
	meta := func(pos int32, tables []int32, maxLen int) kernels.AttnMeta {
		return kernels.AttnMeta{Seq: hi([]int32{0}), Pos: hi([]int32{pos}), BlockTables: hi(tables), MaxBlocks: len(tables), BlockSize: 2, MaxLen: maxLen}
	}
	kv := kernels.KVLayer{K: f(2 * 2 * 4), V: f(2 * 2 * 4)} // 2 blocks
	cases := map[string]func(){
		"short x":        func() { b.MatMul(f(2), f(2), w, 1) },
		"short y":        func() { b.MatMul(f(1), f(3), w, 1) },
		"bad id":         func() { b.Embed(f(3), w, hi([]int32{2})) },
		"heads":          func() { b.PagedAttention(kernels.Buf{}, kernels.Buf{}, kernels.KVLayer{}, kernels.AttnMeta{}, 3, 2, 4) },
		"short K":        func() { b.PagedAttention(f(4), f(4), kernels.KVLayer{}, meta(1, []int32{0}, 2), 1, 1, 4) },
		"block id":       func() { b.PagedAttention(f(4), f(4), kv, meta(1, []int32{2}, 2), 1, 1, 4) },
		"negative block": func() { b.PagedAttention(f(4), f(4), kv, meta(1, []int32{-1}, 2), 1, 1, 4) },
		"past the table": func() { b.PagedAttention(f(4), f(4), kv, meta(2, []int32{0}, 3), 1, 1, 4) },
		"past MaxLen":    func() { b.PagedAttention(f(4), f(4), kv, meta(1, []int32{0}, 1), 1, 1, 4) },
		"position -2":    func() { b.PagedAttention(f(4), f(4), kv, meta(-2, []int32{0}, 1), 1, 1, 4) },
		"bad sequence": func() {
			m := meta(1, []int32{0}, 2)
			m.Seq = hi([]int32{1})
			b.PagedAttention(f(4), f(4), kv, m, 1, 1, 4)
		},
		"short out":      func() { b.PagedAttention(f(3), f(4), kv, meta(1, []int32{0}, 2), 1, 1, 4) },
		"slot":           func() { b.WriteKV(kv, f(4), f(4), hi([]int32{4}), 4) },
		"negative slot":  func() { b.WriteKV(kv, f(4), f(4), hi([]int32{-1}), 4) },
		"short k":        func() { b.WriteKV(kv, f(3), f(4), hi([]int32{0}), 4) },
		"gather row":     func() { b.GatherRows(f(4), f(8), hi([]int32{2}), 4) },
		"short gather":   func() { b.GatherRows(f(3), f(8), hi([]int32{1}), 4) },
		"lora slot":      func() { s, _ := kernels.NewLoRAStack(b, 1, 2, 3, 4); b.LoRAShrink(f(2), f(3), s, hi([]int32{1})) },
		"unsupported":    func() { b.MatMul(f(1), f(1), other{}, 1) },
		"short packed":   func() { b.MatMul(f(1), f(64), &kernels.NF4Matrix{Rows: 1, Cols: 64}, 1) },
		"device buf":     func() { b.Add(kernels.DeviceBuf(4096, 2), f(2)) },
		"device int buf": func() { b.Embed(f(3), w, kernels.DeviceIntBuf(4096, 1)) },
		"device KV": func() {
			b.WriteKV(kernels.KVLayer{K: kernels.DeviceBuf(4096, 16), V: f(16)}, f(4), f(4), hi([]int32{0}), 4)
		},
		"device LoRA": func() {
			b.LoRAExpand(f(4), f(2), &kernels.LoRAStack{Slots: 1, MaxRank: 2, In: 3, Out: 4, A: f(6), B: kernels.DeviceBuf(4096, 8)}, hi([]int32{0}))
		},
		"short write":      func() { b.Write(f(2), make([]float32, 3)) },
		"short read":       func() { b.Read(make([]float32, 3), f(2)) },
		"short int write":  func() { b.WriteInt(hi(make([]int32, 1)), make([]int32, 2)) },
		"device int write": func() { b.WriteInt(kernels.DeviceIntBuf(4096, 2), make([]int32, 2)) },
	}
	for name, f := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

type other struct{}

func (other) Shape() (int, int) { return 1, 1 }

// The planes kernels emit weights in permuteBlocks order: permuting the
// natural dequantization must give exactly their output, and the dot must
// match the natural one.
func TestPlanesOrder(t *testing.T) {
	if !haveSIMD() {
		t.Skip("no AVX2/FMA here (or purego build)")
	}
	rng := rand.New(rand.NewPCG(4, 4))
	m := kerneltest.NF4(rng, 3, 128, kernels.NF4Code)
	var j nf4Job
	j.setCode(&m.Code)
	n := m.Rows * m.Cols
	natural := make([]float32, n)
	dequantNF4(natural, m, &j.lut, 0, n, false)
	want := make([]float32, n)
	permuteBlocks(want, natural)
	got := make([]float32, n)
	dequantNF4PlanesAVX2(got, &j.planeT, m.Packed, m.Absmax)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("planes dequant [%d] = %v, want %v", i, got[i], want[i])
		}
	}
	x := kerneltest.Vec(rng, n)
	xp := make([]float32, n)
	permuteBlocks(xp, x)
	d0 := dotNF4(m, &j.lut, 0, n, x, false)
	d1 := dotNF4PlanesAVX2(&j.planeT, m.Packed, m.Absmax, xp)
	if math.Abs(float64(d0-d1)) > 1e-4 {
		t.Fatalf("planes dot = %v, want %v", d1, d0)
	}
}

// Ops may be called from several goroutines at once; they take turns.
func TestConcurrentCallers(t *testing.T) {
	b := newBackend(2, haveSIMD())
	defer b.Close()
	rng := rand.New(rand.NewPCG(6, 6))
	w := kerneltest.NF4(rng, 200, 128, kernels.NF4Code)
	done := make(chan string)
	for g := 0; g < 4; g++ {
		x := kerneltest.Vec(rng, (g+1)*128)
		go func() {
			msg := ""
			for i := 0; i < 5 && msg == ""; i++ {
				msg = kerneltest.MatMulMismatch(b, w, x, g+1)
			}
			done <- msg
		}()
	}
	for g := 0; g < 4; g++ {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
}

// panicJob panics on one item, whichever goroutine runs it.
type panicJob struct{ at int }

func (j panicJob) run(_, lo, hi int) {
	if lo <= j.at && j.at < hi {
		panic("kernel bug")
	}
}

// A panic on a helper goroutine reaches the caller of parallel (where the
// engine recovers it), and the pool keeps working afterwards.
func TestPoolPanicReachesTheCaller(t *testing.T) {
	p := newPool(3)
	defer p.close()
	for _, at := range []int{0, 99, 500, 999} {
		func() {
			defer func() {
				if r := recover(); r != "kernel bug" {
					t.Errorf("item %d: recovered %v, want the kernel's panic", at, r)
				}
			}()
			p.parallel(panicJob{at}, 1000, 10)
		}()
	}
	var sum atomic.Int64
	p.parallel(countJob{&sum}, 1000, 10)
	if sum.Load() != 1000 {
		t.Errorf("after the panics the pool ran %d of 1000 items", sum.Load())
	}
}

type countJob struct{ n *atomic.Int64 }

func (j countJob) run(_, lo, hi int) { j.n.Add(int64(hi - lo)) }

// Jobs of every width, back to back (helpers spinning, some of them left
// out of a job and lagging behind it) and after pauses (helpers parked),
// each run exactly once per item.
func TestPoolJobsOfEveryWidth(t *testing.T) {
	p := newPool(3)
	defer p.close()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		n, grain := 1+rng.IntN(60), 1+rng.IntN(12)
		var sum atomic.Int64
		p.parallel(countJob{&sum}, n, grain)
		if sum.Load() != int64(n) {
			t.Fatalf("job %d: %d items of %d run", i, sum.Load(), n)
		}
		if i%500 == 0 {
			time.Sleep(time.Millisecond) // let the helpers go idle
		}
	}
}

// Closing a pool whose helpers spin (right after a job) or are parked (after
// a pause) ends them, and later jobs still run every item, on the caller.
func TestPoolCloseSpinningAndParked(t *testing.T) {
	for _, pause := range []time.Duration{0, 2 * time.Millisecond} {
		p := newPool(2)
		var sum atomic.Int64
		p.parallel(countJob{&sum}, 100, 7)
		time.Sleep(pause)
		p.close()
		p.close() // twice is harmless
		p.parallel(countJob{&sum}, 100, 7)
		if sum.Load() != 200 {
			t.Errorf("pause %v: %d items of 200 run", pause, sum.Load())
		}
	}
}

// TestF32BatchInvariant: with AVX2, float32 products take the packed GEMM
// at every batch size, so each token's outputs are bit-for-bit those it
// gets alone (the engine's tests compare batched streams with solo runs
// exactly); partial groups of tokens and rows, and several column passes,
// included.
func TestF32BatchInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	const rows, cols, T = 70, 600, 13
	w := kerneltest.F32(rng, rows, cols)
	x := kerneltest.Vec(rng, T*cols)
	for _, b := range variants(t) {
		if !b.simd {
			continue
		}
		all := make([]float32, T*rows)
		b.MatMul(kernels.HostBuf(all), kernels.HostBuf(x), w, T)
		one := make([]float32, rows)
		for tok := range T {
			b.MatMul(kernels.HostBuf(one), kernels.HostBuf(x[tok*cols:(tok+1)*cols]), w, 1)
			for r, v := range one {
				if got := all[tok*rows+r]; math.Float32bits(got) != math.Float32bits(v) {
					t.Fatalf("%s-%d: token %d row %d: %v in a batch of %d, %v alone", b.Name(), b.Threads(), tok, r, got, T, v)
				}
			}
		}
	}
}

// TestGemmPacked runs the packed GEMM on its own, with the pure Go
// micro-kernel and packing as well as the assembly, on shapes that leave
// partial panels, partial groups of tokens and a short last column pass,
// against ref within kerneltest.SumTol of Σ|terms|.
func TestGemmPacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	for _, s := range [][3]int{{1, 1, 1}, {7, 17, 9}, {13, 33, 300}, {6, 16, 256}, {20, 64, 520}} {
		T, rows, cols := s[0], s[1], s[2]
		w := kerneltest.F32(rng, rows, cols)
		x := kerneltest.Vec(rng, T*cols)
		want, bound := make([]float32, T*rows), make([]float32, T*rows)
		var rb ref.Backend
		rb.MatMul(kernels.HostBuf(want), kernels.HostBuf(x), w, T)
		rb.MatMul(kernels.HostBuf(bound), kernels.HostBuf(absVec(x)), &kernels.F32Matrix{Rows: rows, Cols: cols, Data: absVec(w.Data)}, T)
		for _, simd := range []bool{false, true} {
			if simd && !haveSIMD() {
				continue
			}
			var g gemmBuf
			g.reserve(rows)
			got := make([]float32, T*rows)
			gemmPacked(got, rows, x, cols, T, &f32Job{m: w}, 0, rows, cols, &g, simd, false)
			for i := range got {
				if d := math.Abs(float64(got[i] - want[i])); !(d <= kerneltest.SumTol*float64(bound[i])) {
					t.Fatalf("simd=%v [%d,%d] T=%d: y[%d] = %v, want %v", simd, rows, cols, T, i, got[i], want[i])
				}
			}
		}
	}
}

func absVec(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(math.Abs(float64(x)))
	}
	return out
}

// axpyRows and axpyRowsBF16 add each row exactly as one axpy per row does
// (attention's value rows and LoRA's expand rely on it: their float32
// results must not depend on which kernel ran), on every width and both
// kernel sets.
func TestAxpyRowsMatchAxpy(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, simd := range simdModes() {
		for _, n := range []int{1, 5, 8, 13, 40, 64, 100} {
			for _, k := range []int{1, 3, 16} {
				ld := n + rng.IntN(5)
				rows := kerneltest.Vec(rng, (k-1)*ld+n)
				rows16 := make([]uint16, len(rows))
				wide := make([]float32, len(rows))
				for i, v := range rows {
					rows16[i] = kernels.F32ToBF16(v)
					wide[i] = kernels.BF16ToF32(rows16[i])
				}
				z, y0 := kerneltest.Vec(rng, k), kerneltest.Vec(rng, n)
				for _, bf16 := range []bool{false, true} {
					src := rows
					if bf16 {
						src = wide
					}
					want := slices.Clone(y0)
					for r, zr := range z {
						axpy(want, zr, src[r*ld:][:n], simd)
					}
					got := slices.Clone(y0)
					if bf16 {
						axpyRowsBF16(got, z, rows16, ld, simd)
					} else {
						axpyRows(got, z, rows, ld, simd)
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("simd %v bf16 %v n %d k %d: y[%d] = %v, axpy per row %v", simd, bf16, n, k, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}
