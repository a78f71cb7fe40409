// Package kerneltest is the acceptance suite every kernels.Backend must pass
// (after llama.cpp's test-backend-ops): each op runs on the backend under
// test and on kernels/ref, the specification, over a table of shapes (odd
// sizes, partial NF4 blocks, batches, grouped-query attention, paged KV
// caches), and the results are compared.
//
// Everything the backend touches goes through its Memory: inputs are
// allocated with Alloc/AllocInt and written with Write/WriteInt, weights go
// through Upload, results come back with Read/ReadInt, so the suite runs
// unchanged on a device backend. The reference runs on host copies of the
// same inputs. Every output is poisoned before the op (a NaN with a payload,
// inside the output and in padding on both sides of it), and the padding is
// read back to check that the op wrote nothing outside its output.
//
// Tolerances come from float32 rounding: a backend may sum in any order, and
// reordering a float32 sum of terms a_i changes it by at most about
// n·2⁻²⁴·Σ|a_i|, so sums are checked against 1e-5·Σ|a_i| (computed by the
// reference on |W| and |x|). Elementwise ops are checked to a few ulp.
//
// Run runs the whole suite; RunLoRA and RunTrain run the parts for the
// optional kernels.LoRABackend and kernels.TrainBackend (Run calls them, and
// they skip, saying why, a backend without the interface). The helpers
// (Vec, NF4, F32, BF16, Q8, MatMulMismatch) serve fuzz tests.
package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// SumTol is the tolerance of a reduction relative to Σ|terms|.
const SumTol = 1e-5

// sentinelBits (a NaN with a payload) poisons every output and the padding
// around it, which no op may touch.
const sentinelBits = 0x7fc0beef

// rb is the specification, run on host copies.
var rb = ref.Backend{}

func hb(v []float32) kernels.Buf  { return kernels.HostBuf(v) }
func hi(v []int32) kernels.IntBuf { return kernels.HostIntBuf(v) }
func sentinel() float32           { return math.Float32frombits(sentinelBits) }
func isSentinel(v float32) bool   { return math.Float32bits(v) == sentinelBits }
func clone[T any](v []T) []T      { return append([]T(nil), v...) }

// Run runs the acceptance suite on b: its Memory, every op of
// kernels.Backend, and (RunLoRA, RunTrain) the optional LoRA and training
// ops. The KV ops (RunKV) run on bfloat16 layers when b keeps its KV cache
// in bfloat16 (kernels.KVStorage). The BF16 and Q8 weight kinds are skipped, saying so, for a backend
// that does not support them (kernels.CheckMatrix).
func Run(t *testing.T, b kernels.Backend) {
	t.Run("Memory", func(t *testing.T) { testMemory(t, b) })
	t.Run("Upload", func(t *testing.T) { testUpload(t, b) })
	t.Run("MatMulNF4", func(t *testing.T) { testMatMul(t, b, true) })
	t.Run("MatMulF32", func(t *testing.T) { testMatMul(t, b, false) })
	t.Run("MatMulBF16", func(t *testing.T) { testMatMulBF16Q8(t, b, false) })
	t.Run("MatMulQ8", func(t *testing.T) { testMatMulBF16Q8(t, b, true) })
	t.Run("EmbedBF16Q8", func(t *testing.T) { testEmbedBF16Q8(t, b) })
	t.Run("Embed", func(t *testing.T) { testEmbed(t, b) })
	t.Run("RMSNorm", func(t *testing.T) { testRMSNorm(t, b) })
	t.Run("RoPE", func(t *testing.T) { testRoPE(t, b) })
	RunKV(t, b)
	t.Run("GatherRows", func(t *testing.T) { testGatherRows(t, b) })
	t.Run("SiLUMul", func(t *testing.T) { testSiLUMul(t, b) })
	t.Run("Add", func(t *testing.T) { testAdd(t, b) })
	t.Run("LoRA", func(t *testing.T) { RunLoRA(t, b) })
	t.Run("Train", func(t *testing.T) { RunTrain(t, b) })
}

// RunKV checks WriteKV and PagedAttention against ref, in the KV storage b
// chooses (float32 in its memory, or bfloat16).
func RunKV(t *testing.T, b kernels.Backend) {
	t.Run("WriteKV", func(t *testing.T) { testWriteKV(t, b) })
	t.Run("PagedAttention", func(t *testing.T) { testPagedAttention(t, b) })
}

// ---- backend memory ----

// mem allocates a test's buffers in the backend under test and frees them
// when the test ends (or at reset, between cases).
type mem struct {
	t    testing.TB
	b    kernels.Backend
	bufs []kernels.Buf
	ints []kernels.IntBuf
}

func newMem(t testing.TB, b kernels.Backend) *mem {
	m := &mem{t: t, b: b}
	t.Cleanup(m.reset)
	return m
}

// reset frees every allocation made so far.
func (m *mem) reset() {
	for _, x := range m.bufs {
		m.b.Free(x)
	}
	for _, x := range m.ints {
		m.b.FreeInt(x)
	}
	m.bufs, m.ints = m.bufs[:0], m.ints[:0]
}

func (m *mem) alloc(n int) kernels.Buf {
	m.t.Helper()
	x, err := m.b.Alloc(n)
	if err != nil {
		m.t.Fatalf("Alloc(%d): %v", n, err)
	}
	if x.Len() != n {
		m.t.Fatalf("Alloc(%d) returned %d floats", n, x.Len())
	}
	m.bufs = append(m.bufs, x)
	return x
}

func (m *mem) allocInt(n int) kernels.IntBuf {
	m.t.Helper()
	x, err := m.b.AllocInt(n)
	if err != nil {
		m.t.Fatalf("AllocInt(%d): %v", n, err)
	}
	if x.Len() != n {
		m.t.Fatalf("AllocInt(%d) returned %d values", n, x.Len())
	}
	m.ints = append(m.ints, x)
	return x
}

// in copies v into backend memory, at an odd offset of a larger
// allocation so that kernels cannot rely on alignment.
func (m *mem) in(v []float32) kernels.Buf {
	m.t.Helper()
	x := m.alloc(len(v)+1).Slice(1, len(v)+1)
	m.b.Write(x, v)
	return x
}

// inInts copies v into backend memory.
func (m *mem) inInts(v []int32) kernels.IntBuf {
	m.t.Helper()
	x := m.allocInt(len(v)+1).Slice(1, len(v)+1)
	m.b.WriteInt(x, v)
	return x
}

// upload returns the backend's copy of w.
func (m *mem) upload(w kernels.Matrix) kernels.Matrix {
	m.t.Helper()
	u, err := m.b.Upload(w)
	if err != nil {
		m.t.Fatalf("Upload(%T): %v", w, err)
	}
	return u
}

// outBuf is an op's output of n floats inside an allocation of n+4: one
// poisoned float before it, three after.
type outBuf struct {
	all kernels.Buf
	n   int
}

// buf is the output itself, at an odd offset of its allocation.
func (o outBuf) buf() kernels.Buf { return o.all.Slice(1, 1+o.n) }

// out returns a poisoned output of n floats.
func (m *mem) out(n int) outBuf {
	m.t.Helper()
	return m.outWith(nil, n)
}

// outWith returns an output of n floats that starts as v (an op that
// accumulates, or works in place), the rest of it and the padding poisoned.
func (m *mem) outWith(v []float32, n int) outBuf {
	m.t.Helper()
	o := outBuf{all: m.alloc(n + 4), n: n}
	host := make([]float32, n+4)
	for i := range host {
		host[i] = sentinel()
	}
	copy(host[1:], v)
	m.b.Write(o.all, host)
	return o
}

// read returns the n floats of o, failing the test when the op wrote into
// the padding around them.
func (m *mem) read(what string, o outBuf) []float32 {
	m.t.Helper()
	all := make([]float32, o.all.Len())
	m.b.Read(all, o.all)
	if !isSentinel(all[0]) {
		m.t.Fatalf("%s: wrote before its output", what)
	}
	for i := 1 + o.n; i < len(all); i++ {
		if !isSentinel(all[i]) {
			m.t.Fatalf("%s: wrote past its output, at [%d] of %d", what, i-1, o.n)
		}
	}
	return all[1 : 1+o.n]
}

// readBuf reads a whole Buf (an input the op may not change, or a cache).
func (m *mem) readBuf(x kernels.Buf) []float32 {
	v := make([]float32, x.Len())
	m.b.Read(v, x)
	return v
}

// ---- random inputs and weights ----

// Vec returns n normally distributed floats that start at an odd offset of
// a larger allocation, so that kernels cannot rely on alignment.
func Vec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n+1)[1:]
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// NF4 returns a rows×cols NF4 matrix with random nibbles, scales in
// [0.01, 2) and code book code.
func NF4(rng *rand.Rand, rows, cols int, code [16]float32) *kernels.NF4Matrix {
	n := rows * cols
	m := &kernels.NF4Matrix{
		Rows: rows, Cols: cols,
		Packed: make([]byte, (n+1)/2),
		Absmax: make([]float32, (n+kernels.NF4BlockSize-1)/kernels.NF4BlockSize),
		Code:   code,
	}
	for i := range m.Packed {
		m.Packed[i] = byte(rng.UintN(256))
	}
	for i := range m.Absmax {
		m.Absmax[i] = 0.01 + 1.99*rng.Float32()
	}
	return m
}

// F32 returns a rows×cols matrix of normally distributed floats.
func F32(rng *rand.Rand, rows, cols int) *kernels.F32Matrix {
	return &kernels.F32Matrix{Rows: rows, Cols: cols, Data: Vec(rng, rows*cols)}
}

func abs(v []float32) []float32 {
	a := make([]float32, len(v))
	for i, x := range v {
		a[i] = float32(math.Abs(float64(x)))
	}
	return a
}

// absMatrix returns |W|.
func absMatrix(w kernels.Matrix) kernels.Matrix {
	switch m := w.(type) {
	case *kernels.F32Matrix:
		return &kernels.F32Matrix{Rows: m.Rows, Cols: m.Cols, Data: abs(m.Data)}
	case *kernels.NF4Matrix:
		a := *m
		copy(a.Code[:], abs(m.Code[:]))
		a.Absmax = abs(m.Absmax)
		return &a
	case *kernels.BF16Matrix, *kernels.Q8Matrix:
		return absDense(m)
	}
	panic(fmt.Sprintf("kerneltest: matrix type %T", w))
}

// MatMulMismatch runs MatMul on b (x and y in b's memory, w through
// b.Upload) and on ref, and describes the first element that differs by
// more than SumTol·Σ_c|W[r,c]·x[t,c]|, or a write outside y, or returns "".
// It may be called from several goroutines at once.
func MatMulMismatch(b kernels.Backend, w kernels.Matrix, x []float32, T int) string {
	rows, _ := w.Shape()
	n := T * rows
	dw, err := b.Upload(w)
	if err != nil {
		return fmt.Sprintf("Upload(%T): %v", w, err)
	}
	xb, err := b.Alloc(len(x) + 1)
	if err != nil {
		return fmt.Sprintf("Alloc: %v", err)
	}
	defer b.Free(xb)
	yb, err := b.Alloc(n + 4)
	if err != nil {
		return fmt.Sprintf("Alloc: %v", err)
	}
	defer b.Free(yb)
	b.Write(xb.Slice(1, len(x)+1), x)
	all := make([]float32, n+4)
	for i := range all {
		all[i] = sentinel()
	}
	b.Write(yb, all)
	b.MatMul(yb.Slice(1, 1+n), xb.Slice(1, len(x)+1), dw, T)
	b.Read(all, yb)
	got := all[1 : 1+n]
	want := make([]float32, n)
	rb.MatMul(hb(want), hb(x), w, T)
	bound := make([]float32, n)
	rb.MatMul(hb(bound), hb(abs(x)), absMatrix(w), T)
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= SumTol*float64(bound[i])) {
			return fmt.Sprintf("y[t=%d,r=%d] = %v, want %v (Σ|terms| %v)", i/rows, i%rows, got[i], want[i], bound[i])
		}
	}
	if !isSentinel(all[0]) {
		return "wrote before y"
	}
	for i := 1 + n; i < len(all); i++ {
		if !isSentinel(all[i]) {
			return fmt.Sprintf("wrote past y[%d]", n)
		}
	}
	return ""
}

// ---- comparisons ----

func exact(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// bitsEqual compares float32 bit patterns (NaN payloads, signed zeros).
func bitsEqual(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %#x, want %#x", what, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
		}
	}
}

// near checks |got-want| <= rtol·|want| + atol elementwise.
func near(t *testing.T, what string, got, want []float32, rtol, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if !(math.Abs(g-w) <= rtol*math.Abs(w)+atol) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// ---- Memory ----

// testMemory: Alloc zeroes, Write/Read and WriteInt/ReadInt round trips
// are bit exact (NaN payloads, -0 and infinities included), short writes
// and reads touch only their prefix, and Slice views address the right
// part of their allocation, for reading, writing and nested slicing.
func testMemory(t *testing.T, b kernels.Backend) {
	m := newMem(t, b)
	rng := rand.New(rand.NewPCG(31, 32))
	for _, n := range []int{0, 1, 7, 1000, 70000} {
		x := m.alloc(n)
		got := m.readBuf(x)
		for i, v := range got {
			if math.Float32bits(v) != 0 {
				t.Fatalf("Alloc(%d)[%d] = %v, want 0", n, i, v)
			}
		}
		xi := m.allocInt(n)
		gi := make([]int32, n)
		b.ReadInt(gi, xi)
		for i, v := range gi {
			if v != 0 {
				t.Fatalf("AllocInt(%d)[%d] = %d, want 0", n, i, v)
			}
		}
		// Round trips, bit for bit.
		v := Vec(rng, n)
		special := []uint32{0x80000000, 0x7f800000, 0xff800000, sentinelBits, 0x7fa00001, 1}
		for i := 0; i < n && i < len(special); i++ {
			v[i] = math.Float32frombits(special[i])
		}
		b.Write(x, v)
		bitsEqual(t, fmt.Sprintf("Write/Read of %d floats", n), m.readBuf(x), v)
		iv := make([]int32, n)
		for i := range iv {
			iv[i] = int32(rng.Uint32())
		}
		b.WriteInt(xi, iv)
		b.ReadInt(gi, xi)
		for i := range iv {
			if gi[i] != iv[i] {
				t.Fatalf("WriteInt/ReadInt of %d values: [%d] = %d, want %d", n, i, gi[i], iv[i])
			}
		}
		if n < 7 {
			continue
		}
		cur := clone(v) // what x holds
		// A short write changes only its prefix; a short read reads one.
		short := Vec(rng, n/2)
		b.Write(x, short)
		copy(cur, short)
		bitsEqual(t, "short write", m.readBuf(x), cur)
		part := make([]float32, n/3)
		b.Read(part, x)
		bitsEqual(t, "short read", part, short[:n/3])
		// Slice views, for writing and reading, nested too.
		lo, hi := n/5, n-n/4
		w := Vec(rng, hi-lo)
		b.Write(x.Slice(lo, hi), w)
		copy(cur[lo:hi], w)
		bitsEqual(t, fmt.Sprintf("write to Slice(%d, %d) of %d", lo, hi, n), m.readBuf(x), cur)
		bitsEqual(t, "read of a Slice", m.readBuf(x.Slice(lo+1, hi)), cur[lo+1:hi])
		bitsEqual(t, "read of a nested Slice", m.readBuf(x.Slice(lo, hi).Slice(2, 5)), cur[lo+2:lo+5])
		if x.Slice(lo, hi).Slice(2, 5).Len() != 3 || x.Slice(3, 3).Len() != 0 {
			t.Fatal("Slice lengths")
		}
		b.Write(x.Slice(lo, hi).Slice(1, 3), []float32{-1, -2})
		cur[lo+1], cur[lo+2] = -1, -2
		bitsEqual(t, "write to a nested Slice", m.readBuf(x), cur)

		wi := make([]int32, hi-lo)
		for i := range wi {
			wi[i] = int32(i) - 5
		}
		b.WriteInt(xi.Slice(lo, hi), wi)
		copy(iv[lo:hi], wi)
		b.ReadInt(gi, xi)
		for i := range gi {
			if gi[i] != iv[i] {
				t.Fatalf("WriteInt to Slice(%d, %d): [%d] = %d, want %d", lo, hi, i, gi[i], iv[i])
			}
		}
		gs := make([]int32, 3)
		b.ReadInt(gs, xi.Slice(lo, hi).Slice(2, 5))
		for i := range gs {
			if gs[i] != wi[2+i] {
				t.Fatalf("ReadInt of a nested Slice: [%d] = %d, want %d", i, gs[i], wi[2+i])
			}
		}
		b.WriteInt(xi.Slice(lo, hi).Slice(1, 2), []int32{99})
		iv[lo+1] = 99
		b.ReadInt(gi, xi)
		for i := range gi {
			if gi[i] != iv[i] {
				t.Fatalf("WriteInt to a nested Slice: [%d] = %d, want %d", i, gi[i], iv[i])
			}
		}
	}
	// Freed memory can be allocated again.
	for range 3 {
		m.reset()
		x := m.alloc(1 << 16)
		b.Write(x, make([]float32, 1<<16))
	}
}

// testUpload: an uploaded weight keeps its shape, and Upload refuses a
// weight whose buffers do not match its shape (as kernels.CheckMatrix).
func testUpload(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, w := range []kernels.Matrix{F32(rng, 3, 5), NF4(rng, 4, 100, kernels.NF4Code)} {
		u, err := b.Upload(w)
		if err != nil {
			t.Fatalf("Upload(%T): %v", w, err)
		}
		r0, c0 := w.Shape()
		if r, c := u.Shape(); r != r0 || c != c0 {
			t.Fatalf("Upload(%T) has shape [%d,%d], want [%d,%d]", w, r, c, r0, c0)
		}
	}
	bad := []kernels.Matrix{
		&kernels.F32Matrix{Rows: 2, Cols: 2, Data: make([]float32, 3)},
		&kernels.NF4Matrix{Rows: 1, Cols: 64, Packed: make([]byte, 32)},
	}
	for _, w := range bad {
		if _, err := b.Upload(w); err == nil {
			t.Errorf("Upload of a malformed %T: no error", w)
		}
	}
}

// ---- forward ops ----

// fp4 is a code book that is not value-sorted, to catch a backend that
// ignores NF4Matrix.Code.
var fp4 = [16]float32{0, 0.0052083, 0.6666667, 1, 0.3333333, 0.5, 0.1666667, 0.25,
	0, -0.0052083, -0.6666667, -1, -0.3333333, -0.5, -0.1666667, -0.25}

func testMatMul(t *testing.T, b kernels.Backend, nf4 bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	type shape struct{ rows, cols int }
	var shapes []shape
	for _, rows := range []int{1, 2, 3, 5, 17, 33} {
		for _, cols := range []int{1, 2, 3, 31, 63, 64, 65, 96, 127, 128, 172, 200, 256, 300, 520} {
			shapes = append(shapes, shape{rows, cols})
		}
	}
	// Large enough to be split across workers.
	shapes = append(shapes, shape{1100, 96}, shape{300, 2048}, shape{97, 1000}, shape{64, 172})
	for _, s := range shapes {
		var w kernels.Matrix
		if nf4 {
			code := kernels.NF4Code
			if s.rows%2 == 0 {
				code = fp4
			}
			w = NF4(rng, s.rows, s.cols, code)
		} else {
			w = F32(rng, s.rows, s.cols)
		}
		// Past 8 tokens the batch is prefill-sized: 13 and 32 leave partial
		// groups of tokens for a backend that blocks them.
		for _, T := range []int{1, 2, 3, 4, 5, 7, 8, 9, 13, 32} {
			if s.rows*s.cols*T > 1<<21 && T > 3 {
				continue // keeps the reference quick
			}
			if msg := MatMulMismatch(b, w, Vec(rng, T*s.cols), T); msg != "" {
				t.Fatalf("[%d,%d] T=%d: %s", s.rows, s.cols, T, msg)
			}
		}
	}
}

func testEmbed(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := newMem(t, b)
	for _, s := range [][2]int{{1, 1}, {5, 3}, {7, 64}, {11, 100}, {40, 172}} {
		vocab, dim := s[0], s[1]
		ids := make([]int32, 9)
		for i := range ids {
			ids[i] = int32(rng.IntN(vocab))
		}
		for _, w := range []kernels.Matrix{F32(rng, vocab, dim), NF4(rng, vocab, dim, kernels.NF4Code)} {
			what := fmt.Sprintf("embed %T [%d,%d]", w, vocab, dim)
			got := m.out(len(ids) * dim)
			b.Embed(got.buf(), m.upload(w), m.inInts(ids))
			want := make([]float32, len(ids)*dim)
			rb.Embed(hb(want), w, hi(ids))
			exact(t, what, m.read(what, got), want)
			m.reset()
		}
	}
}

func testRMSNorm(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(5, 6))
	m := newMem(t, b)
	for _, dim := range []int{1, 3, 64, 2048, 5000} {
		for _, T := range []int{1, 3, 7, 40} {
			x, w := Vec(rng, T*dim), Vec(rng, dim)
			want := make([]float32, T*dim)
			rb.RMSNorm(hb(want), hb(x), hb(w), 1e-5)
			what := fmt.Sprintf("rmsnorm dim %d T %d", dim, T)
			got, wb := m.out(T*dim), m.in(w)
			b.RMSNorm(got.buf(), m.in(x), wb, 1e-5)
			near(t, what, m.read(what, got), want, 1e-5, 1e-30)
			inPlace := m.outWith(x, T*dim)
			b.RMSNorm(inPlace.buf(), inPlace.buf(), wb, 1e-5)
			near(t, what+" in place", m.read(what+" in place", inPlace), want, 1e-5, 1e-30)
			m.reset()
		}
	}
}

func testRoPE(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(7, 8))
	m := newMem(t, b)
	for _, nHeads := range []int{1, 3, 8, 32} {
		for _, hd := range []int{2, 8, 64} {
			for _, T := range []int{1, 3, 7, 64} {
				pos := make([]int32, T)
				for i := range pos {
					pos[i] = int32(rng.IntN(10000))
				}
				invFreq := make([]float32, hd/2)
				for i := range invFreq {
					invFreq[i] = float32(math.Pow(10000, -2*float64(i)/float64(hd)))
				}
				x := Vec(rng, T*nHeads*hd)
				want := clone(x)
				rb.RoPE(hb(want), hi(pos), nHeads, hd, hb(invFreq))
				got := m.outWith(x, len(x))
				b.RoPE(got.buf(), m.inInts(pos), nHeads, hd, m.in(invFreq))
				// Each output is x0·cos ± x1·sin: a few ulp of |x0|+|x1| ≤ 2·max|x|.
				what := fmt.Sprintf("rope heads %d dim %d T %d", nHeads, hd, T)
				near(t, what, m.read(what, got), want, 1e-6, 1e-6)
				m.reset()
			}
		}
	}
}

func testSiLUMul(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(11, 12))
	m := newMem(t, b)
	for _, n := range []int{1, 7, 1000, 50000} {
		gate, up := Vec(rng, n), Vec(rng, n)
		for i := range gate {
			gate[i] *= 8
		}
		gate[0] = -100 // exp overflow side
		if n > 1 {
			gate[1] = 100
		}
		want := make([]float32, n)
		rb.SiLUMul(hb(want), hb(gate), hb(up))
		what := fmt.Sprintf("silumul n %d", n)
		got, ub := m.out(n), m.in(up)
		b.SiLUMul(got.buf(), m.in(gate), ub)
		near(t, what, m.read(what, got), want, 1e-6, 1e-30)
		inPlace := m.outWith(gate, n)
		b.SiLUMul(inPlace.buf(), inPlace.buf(), ub)
		near(t, what+" in place", m.read(what+" in place", inPlace), want, 1e-6, 1e-30)
		m.reset()
	}
}

func testAdd(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(13, 14))
	m := newMem(t, b)
	for _, n := range []int{0, 1, 7, 1000, 50000} {
		dst, src := Vec(rng, n), Vec(rng, n)
		want := clone(dst)
		rb.Add(hb(want), hb(src))
		got := m.outWith(dst, n)
		b.Add(got.buf(), m.in(src))
		what := fmt.Sprintf("add n %d", n)
		exact(t, what, m.read(what, got), want)
		m.reset()
	}
}
