package cuda

// Tests of the backend's host logic that run on any machine (no GPU, no
// cuda tag): weight layouts, kernel choice, argument packing, the PTX
// signature parser, and every op's launches on a fake device, checked
// against the committed PTX.

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

func TestLayoutOf(t *testing.T) {
	for _, c := range []struct {
		w                        kernels.Matrix
		kind                     matKind
		dataBytes, scale, code   int
		wantTotalAtLeast, groups int
	}{
		{&kernels.F32Matrix{Rows: 3, Cols: 5, Data: make([]float32, 15)}, kindF32, 60, 0, 0, 60, 0},
		{&kernels.NF4Matrix{Rows: 3, Cols: 5}, kindNF4, 8, 1, 16, 8 + 4 + 64, 0},
		{&kernels.NF4Matrix{Rows: 2048, Cols: 2048}, kindNF4, 2048 * 1024, 2048 * 2048 / 64, 16, 0, 256},
		{&kernels.NF4Matrix{Rows: 7, Cols: 100}, kindNF4, 350, 11, 16, 0, 12},
		{&kernels.BF16Matrix{Rows: 4, Cols: 9}, kindBF16, 72, 0, 0, 72, 1},
		{&kernels.Q8Matrix{Rows: 5, Cols: 64}, kindQ8, 320, 10, 0, 360, 8},
	} {
		l, err := layoutOf(c.w)
		if err != nil {
			t.Fatal(err)
		}
		if l.kind != c.kind || l.dataBytes != c.dataBytes || l.scaleLen != c.scale || l.codeLen != c.code || l.groups != c.groups {
			t.Errorf("%T %v: layout %+v", c.w, c.kind, l)
		}
		// Parts aligned, in order, not overlapping, inside the total.
		end := l.data + l.dataBytes
		for _, p := range [][2]int{{l.scale, 4 * l.scaleLen}, {l.code, 4 * l.codeLen}} {
			if p[1] == 0 {
				continue
			}
			if p[0]%weightAlign != 0 || p[0] < end {
				t.Errorf("%T: part at %d (previous ends at %d)", c.w, p[0], end)
			}
			end = p[0] + p[1]
		}
		if l.data != 0 || l.total < end || l.total%weightAlign != 0 || l.total < c.wantTotalAtLeast {
			t.Errorf("%T: total %d for parts ending at %d", c.w, l.total, end)
		}
	}
	if _, err := layoutOf(badMatrix{}); err == nil {
		t.Error("layoutOf of an unknown matrix type: no error")
	}
}

type badMatrix struct{}

func (badMatrix) Shape() (int, int) { return 1, 1 }

func TestChooseMatMul(t *testing.T) {
	const sms = 132
	for _, c := range []struct {
		T, rows, cols int
		x             uintptr
		want          matmulVariant
	}{
		{1, 2048, 2048, 0x1000, gemv8R4},
		{8, 128256, 2048, 0x1000, gemv8R4},
		{1, 512, 2048, 0x1000, gemv8R1},  // k_proj: 128 blocks of 4 would idle half the SMs
		{1, 2048, 2048, 0x1004, gemvAny}, // x at an odd float
		{3, 100, 100, 0x1000, gemvAny},   // cols % 8 != 0
		{9, 2048, 2048, 0x1000, gemmTiled},
		{512, 5, 3, 0x1004, gemmTiled},
	} {
		if got := chooseMatMul(c.T, c.rows, c.cols, c.x, sms); got != c.want {
			t.Errorf("chooseMatMul(%d, %d, %d, %#x) = %d, want %d", c.T, c.rows, c.cols, c.x, got, c.want)
		}
	}
	if g := matmulGrid(gemmTiled, 130, 65); g != (dim3{2, 3, 1}) {
		t.Errorf("gemm grid %v", g)
	}
	if g := matmulGrid(gemv8R4, 1, 2049); g.x != 513 {
		t.Errorf("gemv8 r4 grid %v", g)
	}
	if g := strideGrid(1 << 30); g.x != maxGrid {
		t.Errorf("stride grid %v", g)
	}
	if g := strideGrid(1); g.x != 1 {
		t.Errorf("stride grid of 1: %v", g)
	}
}

func TestAttnSplits(t *testing.T) {
	const sms = 132
	for _, c := range []struct{ T, heads, maxLen, S int }{
		{1, 32, 100, 1},   // short context: one warp per row
		{1, 32, 4096, 16}, // batch-1 decode at 4k: ~4 warps per SM
		{1, 1, 201, 7},    // kerneltest's longest single row
		{64, 32, 4096, 1}, // the grid is full already
		{3, 8, 130, 5},    // splits of at least 32 positions
		{1, 32, 0, 1},     // MaxLen unset
	} {
		S, L := attnSplits(c.T, c.heads, c.maxLen, sms)
		if S != c.S {
			t.Errorf("attnSplits(%d, %d, %d) = %d splits of %d, want %d", c.T, c.heads, c.maxLen, S, L, c.S)
		}
		if S > 1 && (L%32 != 0 || S*L < c.maxLen || (S-1)*L >= c.maxLen) {
			t.Errorf("attnSplits(%d, %d, %d): %d splits of %d do not tile the context", c.T, c.heads, c.maxLen, S, L)
		}
	}
}

func TestArgs(t *testing.T) {
	if a := argInt(-1); a.v != 0xffffffff || a.t != 'i' {
		t.Errorf("argInt(-1) = %+v", a)
	}
	if a := argF32(1.5); a.v != uint64(math.Float32bits(1.5)) || a.t != 'f' {
		t.Errorf("argF32 = %+v", a)
	}
	if a := argPtr(0xdeadbeef00); a.v != 0xdeadbeef00 || a.t != 'p' {
		t.Errorf("argPtr = %+v", a)
	}
	defer func() {
		if recover() == nil {
			t.Error("argInt(1<<31): no panic")
		}
	}()
	argInt(1 << 31)
}

func TestPTXSignatures(t *testing.T) {
	src := `
.visible .entry foo(
	.param .u64 foo_param_0,
	.param .u32 foo_param_1,
	.param .f32 foo_param_2
)
{
}
.visible .entry bar(

)
`
	sigs, err := ptxSignatures(src)
	if err != nil {
		t.Fatal(err)
	}
	if sigs["foo"] != "pif" || len(sigs) != 2 {
		t.Errorf("signatures %q", sigs)
	}
	if _, err := ptxSignatures(".visible .entry x(\n\t.param .b8 x_param_0[16]\n)\n"); err == nil {
		t.Error("struct parameter: no error")
	}
}

// committedPTX reads the signatures of every kernel in ptx/.
func committedPTX(t *testing.T) map[string]string {
	files, err := filepath.Glob("ptx/*.ptx")
	if err != nil || len(files) == 0 {
		t.Fatalf("no PTX in ptx/: %v", err)
	}
	all := map[string]string{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sigs, err := ptxSignatures(string(src))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for k, v := range sigs {
			all[k] = v
		}
	}
	return all
}

// Every .cu source has its committed .ptx (go generate ./kernels/cuda).
func TestPTXCommitted(t *testing.T) {
	srcs, _ := filepath.Glob("src/*.cu")
	for _, s := range srcs {
		p := filepath.Join("ptx", strings.TrimSuffix(filepath.Base(s), ".cu")+".ptx")
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s has no %s: run go generate ./kernels/cuda", s, p)
		}
	}
}

// fakeDev stands in for the GPU: it checks every launch against the
// committed PTX (the kernel exists, the arguments have its parameter
// types, the geometry is legal) and records it.
type fakeDev struct {
	t        *testing.T
	sigs     map[string]string
	launches []launch
	next     uintptr
}

type launch struct {
	name         string
	grid, block  dim3
	shmem        int
	args         []arg
	inside, dies bool
}

func (f *fakeDev) enter(string) func() { return func() {} }
func (f *fakeDev) numSMs() int         { return 132 }
func (f *fakeDev) scratchBuf(int) uintptr {
	return 0x7f0000000000
}

func (f *fakeDev) launch(name string, grid, block dim3, shmem int, args ...arg) {
	f.t.Helper()
	sig, ok := f.sigs[name]
	if !ok {
		f.t.Fatalf("launch of %s: no such kernel in ptx/", name)
	}
	if !sigMatches(sig, args) {
		f.t.Fatalf("launch of %s (%s) with arguments (%s)", name, sig, argTypes(args))
	}
	threads := block.x * max(block.y, 1) * max(block.z, 1)
	if grid.x <= 0 || grid.x > math.MaxInt32 || grid.y > 65535 || grid.z > 65535 || threads <= 0 || threads > 1024 || threads%32 != 0 {
		f.t.Fatalf("launch of %s: grid %v block %v", name, grid, block)
	}
	if shmem < 0 || shmem > 48<<10 {
		f.t.Fatalf("launch of %s: %d bytes of dynamic shared memory", name, shmem)
	}
	f.launches = append(f.launches, launch{name: name, grid: grid, block: block, shmem: shmem, args: args})
}

// buf and ibuf are fake device buffers at distinct addresses.
func (f *fakeDev) buf(n int) kernels.Buf {
	f.next += 1 << 20
	return kernels.DeviceBuf(f.next, n)
}

func (f *fakeDev) ibuf(n int) kernels.IntBuf {
	f.next += 1 << 20
	return kernels.DeviceIntBuf(f.next, n)
}

func (f *fakeDev) last() launch {
	f.t.Helper()
	if len(f.launches) == 0 {
		f.t.Fatal("no launch")
	}
	return f.launches[len(f.launches)-1]
}

func newFake(t *testing.T) (*engine, *fakeDev) {
	f := &fakeDev{t: t, sigs: committedPTX(t), next: 0x100000000}
	return &engine{dev: f}, f
}

func (e *engine) fakeMatrix(t *testing.T, w kernels.Matrix, base uintptr) *Matrix {
	l, err := layoutOf(w)
	if err != nil {
		t.Fatal(err)
	}
	return &Matrix{lay: l, base: base, owner: e}
}

func wantArgs(t *testing.T, l launch, want ...uint64) {
	t.Helper()
	for i, w := range want {
		if l.args[i].v != w {
			t.Errorf("%s: argument %d = %#x, want %#x", l.name, i, l.args[i].v, w)
		}
	}
}

// TestOpsLaunch runs every op on the fake device and checks which kernels
// it launches, with what arguments, and that together they launch every
// kernel in the PTX.
func TestOpsLaunch(t *testing.T) {
	e, f := newFake(t)
	const base = 0x200000000
	kinds := []kernels.Matrix{
		&kernels.F32Matrix{Rows: 96, Cols: 64},
		&kernels.NF4Matrix{Rows: 96, Cols: 64},
		&kernels.BF16Matrix{Rows: 96, Cols: 64},
		&kernels.Q8Matrix{Rows: 96, Cols: 64},
	}
	for _, w := range kinds {
		m := e.fakeMatrix(t, w, base)
		k := m.Kind()
		for _, c := range []struct {
			T       int
			aligned bool
			kernel  string
		}{
			{1, true, "matmul_gemv8_" + k + "_r1"},
			{8, false, "matmul_gemv_" + k},
			{40, true, "matmul_gemm_" + k},
		} {
			x, y := f.buf(c.T*64+1), f.buf(c.T*96)
			if !c.aligned {
				x = x.Slice(1, x.Len())
			}
			e.MatMul(y, x, m, c.T)
			l := f.last()
			if l.name != c.kernel {
				t.Errorf("%s MatMul T=%d: %s, want %s", k, c.T, l.name, c.kernel)
			}
			d, s, cd := m.args()
			wantArgs(t, l, uint64(y.Device()), uint64(x.Device()), d.v, s.v, cd.v, 96, 64, uint64(c.T))
		}
		big := e.fakeMatrix(t, w, base)
		big.lay.rows = 4096
		e.MatMul(f.buf(4096), f.buf(64), big, 1)
		if l := f.last(); l.name != "matmul_gemv8_"+k+"_r4" || l.grid.x != 1024 {
			t.Errorf("%s MatMul of 4096 rows: %s grid %v", k, l.name, l.grid)
		}
		dx, dy := f.buf(5*64), f.buf(5*96)
		e.MatMulT(dx, dy, m, 5)
		if l := f.last(); l.name != "matmul_t_"+k || l.grid != (dim3{1, 1, 1}) {
			t.Errorf("%s MatMulT: %s grid %v", k, l.name, l.grid)
		}
		out, ids := f.buf(3*64), f.ibuf(3)
		e.Embed(out, m, ids)
		l := f.last()
		if l.name != "embed_"+k {
			t.Errorf("%s Embed: %s", k, l.name)
		}
		wantArgs(t, l, uint64(out.Device()))
		if l.args[4].v != uint64(ids.Device()) {
			t.Errorf("%s Embed: ids argument %#x", k, l.args[4].v)
		}
	}
	// With tensor cores, the GEMMs take the 3xTF32 kernels, 4 warps each.
	e.tensorCores = true
	for _, w := range kinds {
		m := e.fakeMatrix(t, w, base)
		e.MatMul(f.buf(40*96), f.buf(40*64), m, 40)
		if l := f.last(); l.name != "matmul_tc_"+m.Kind() || l.block.x != tcThreads || l.grid != (dim3{2, 1, 1}) {
			t.Errorf("tensor-core MatMul: %s block %v grid %v", l.name, l.block, l.grid)
		}
		e.MatMulT(f.buf(40*64), f.buf(40*96), m, 40)
		if l := f.last(); l.name != "matmul_t_tc_"+m.Kind() || l.block.x != tcThreads || l.grid != (dim3{1, 1, 1}) {
			t.Errorf("tensor-core MatMulT: %s block %v grid %v", l.name, l.block, l.grid)
		}
		e.MatMul(f.buf(96), f.buf(64), m, 1) // decode keeps the GEMV
		if l := f.last(); !strings.HasPrefix(l.name, "matmul_gemv") {
			t.Errorf("tensor-core engine, T=1: %s", l.name)
		}
	}
	e.tensorCores = false

	// NF4 carries its absmax and code book; f32 neither.
	nf4 := e.fakeMatrix(t, kinds[1], base)
	if _, s, c := nf4.args(); s.v == 0 || c.v == 0 || s.v == c.v {
		t.Errorf("nf4 args %v %v", s, c)
	}
	if _, s, c := e.fakeMatrix(t, kinds[0], base).args(); s.v != 0 || c.v != 0 {
		t.Errorf("f32 args %v %v", s, c)
	}

	T, n := 3, 64
	x, w := f.buf(T*n), f.buf(n)
	e.RMSNorm(x, x, w, 1e-5)
	if l := f.last(); l.name != "rmsnorm" || l.grid.x != T || l.args[3].v != uint64(n) {
		t.Errorf("RMSNorm: %+v", l)
	}
	e.RMSNormBackward(f.buf(T*n), f.buf(T*n), x, w, 1e-5)
	pos, inv := f.ibuf(T), f.buf(32)
	e.RoPE(f.buf(T*4*64), pos, 4, 64, inv)
	if l := f.last(); l.args[6].v != uint64(math.Float32bits(1)) {
		t.Errorf("RoPE sign %#x", l.args[6].v)
	}
	e.RoPEBackward(f.buf(T*4*64), pos, 4, 64, inv)
	if l := f.last(); l.name != "rope" || l.args[6].v != uint64(math.Float32bits(-1)) {
		t.Errorf("RoPEBackward: %s sign %#x", l.name, l.args[6].v)
	}
	kv := kernels.KVLayer{K: f.buf(100 * 128), V: f.buf(100 * 128)}
	e.WriteKV(kv, f.buf(T*128), f.buf(T*128), f.ibuf(T), 128)
	meta := kernels.AttnMeta{Seq: f.ibuf(T), Pos: f.ibuf(T), BlockTables: f.ibuf(8), MaxBlocks: 4, BlockSize: 16, MaxLen: 40}
	e.PagedAttention(f.buf(T*8*64), f.buf(T*8*64), kv, meta, 8, 2, 64)
	if l := f.last(); l.name != "paged_attention" || l.grid.x != (T*8+attnWarps-1)/attnWarps || l.shmem != 4*attnWarps*64 {
		t.Errorf("PagedAttention: %+v", l)
	}
	long := meta
	long.MaxLen = 1000
	out := f.buf(T * 8 * 64)
	e.PagedAttention(out, f.buf(T*8*64), kv, long, 8, 2, 64)
	S, _ := attnSplits(T, 8, 1000, f.numSMs())
	split, comb := f.launches[len(f.launches)-2], f.last()
	if split.name != "paged_attention_split" || split.grid.x != (T*8*S+attnWarps-1)/attnWarps || split.args[0].v != comb.args[1].v ||
		comb.name != "paged_attention_combine" || comb.args[0].v != uint64(out.Device()) || comb.args[7].v != uint64(S) {
		t.Errorf("flash-decoding launches: %+v then %+v", split, comb)
	}
	e.GatherRows(f.buf(2*50), f.buf(T*50), f.ibuf(2), 50)
	e.SiLUMul(f.buf(100), f.buf(100), f.buf(100))
	e.Add(f.buf(100), f.buf(100))
	s := &kernels.LoRAStack{Slots: 2, MaxRank: 8, In: 64, Out: 96, A: f.buf(2 * 8 * 64), B: f.buf(2 * 96 * 8)}
	e.LoRAShrink(f.buf(T*8), f.buf(T*64), s, f.ibuf(T))
	e.LoRAExpand(f.buf(T*96), f.buf(T*8), s, f.ibuf(T))
	if l := f.last(); l.args[7].v != uint64(math.Float32bits(1)) {
		t.Errorf("LoRAExpand scale %#x", l.args[7].v)
	}
	B, S := 2, 5
	N := B * S
	e.AttentionForwardTrain(f.buf(N*8*16), f.buf(N*8), f.buf(N*8*16), f.buf(N*2*16), f.buf(N*2*16), B, S, 8, 2, 16)
	e.AttentionBackward(f.buf(N*8*16), f.buf(N*2*16), f.buf(N*2*16), f.buf(N*8*16), f.buf(N*8*16), f.buf(N*8), f.buf(N*8*16), f.buf(N*2*16), f.buf(N*2*16), B, S, 8, 2, 16)
	if l := f.last(); l.name != "attention_backward_dkdv" || l.grid.x != (N*2+attnWarps-1)/attnWarps {
		t.Errorf("AttentionBackward: %s grid %v", l.name, l.grid)
	}
	e.SiLUMulBackward(f.buf(100), f.buf(100), f.buf(100), f.buf(100), f.buf(100))
	e.CrossEntropy(f.buf(T), f.buf(T*37), f.buf(T*37), f.ibuf(T), 0.5)
	if l := f.last(); l.grid.x != T || l.args[4].v != 37 {
		t.Errorf("CrossEntropy: %+v", l)
	}
	e.LoRAForward(f.buf(T*96), f.buf(T*8), f.buf(T*64), f.buf(8*64), f.buf(96*8), T, 64, 96, 8, 2)
	if l := f.last(); l.name != "lora_expand" || l.args[3].v != 0 || l.args[7].v != uint64(math.Float32bits(2)) {
		t.Errorf("LoRAForward expand: %+v", l)
	}
	e.LoRABackward(f.buf(8*64), f.buf(96*8), f.buf(T*64), f.buf(T*64), f.buf(T*8), f.buf(T*96), f.buf(8*64), f.buf(96*8), T, 64, 96, 8, 2)

	// Every kernel of the PTX is launched by some op.
	used := map[string]bool{}
	for _, l := range f.launches {
		used[l.name] = true
	}
	for name := range f.sigs {
		if !used[name] && !strings.HasPrefix(name, "matmul_gemv8_") {
			t.Errorf("kernel %s is never launched", name)
		}
	}
	for k := kindF32; k <= kindQ8; k++ {
		for v := gemv8R1; v <= gemmTiled; v++ {
			if _, ok := f.sigs[matmulNames[k][v]]; !ok {
				t.Errorf("no kernel %s in ptx/", matmulNames[k][v])
			}
		}
	}
}

// TestOpsRefuse: host memory, foreign weights and short buffers panic
// before anything is launched; empty ops launch nothing.
func TestOpsRefuse(t *testing.T) {
	e, f := newFake(t)
	m := e.fakeMatrix(t, &kernels.F32Matrix{Rows: 4, Cols: 8}, 0x1000)
	other := &engine{dev: f}
	for name, fn := range map[string]func(){
		"host buffer": func() { e.Add(kernels.HostBuf(make([]float32, 4)), f.buf(4)) },
		"host weight": func() {
			e.MatMul(f.buf(4), f.buf(8), &kernels.F32Matrix{Rows: 4, Cols: 8, Data: make([]float32, 32)}, 1)
		},
		"foreign": func() {
			e.MatMul(f.buf(4), f.buf(8), other.fakeMatrix(t, &kernels.F32Matrix{Rows: 4, Cols: 8}, 0x1000), 1)
		},
		"short x": func() { e.MatMul(f.buf(4), f.buf(7), m, 1) },
		"short y": func() { e.MatMul(f.buf(7), f.buf(16), m, 2) },
		"headDim": func() {
			e.PagedAttention(f.buf(512), f.buf(512), kernels.KVLayer{}, kernels.AttnMeta{Pos: f.ibuf(1), Seq: f.ibuf(1)}, 1, 1, 512)
		},
		"groups":       func() { e.AttentionForwardTrain(f.buf(99), f.buf(9), f.buf(99), f.buf(99), f.buf(99), 1, 1, 3, 2, 8) },
		"short labels": func() { e.CrossEntropy(f.buf(1), f.buf(4), f.buf(8), f.ibuf(2), 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
	if len(f.launches) != 0 {
		t.Errorf("refused ops launched %d kernels", len(f.launches))
	}
	e.MatMul(f.buf(0), f.buf(0), m, 0)
	e.Add(f.buf(0), f.buf(0))
	e.CrossEntropy(f.buf(0), f.buf(0), f.buf(0), f.ibuf(0), 1)
	e.LoRAShrink(f.buf(0), f.buf(0), &kernels.LoRAStack{MaxRank: 4}, f.ibuf(0))
	if len(f.launches) != 0 {
		t.Errorf("empty ops launched %d kernels", len(f.launches))
	}
}
