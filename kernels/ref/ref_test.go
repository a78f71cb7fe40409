package ref

import (
	"math"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

func near(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > tol*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func hb(v []float32) kernels.Buf  { return kernels.HostBuf(v) }
func hi(v []int32) kernels.IntBuf { return kernels.HostIntBuf(v) }

func fill[T any](n int, v T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// A 2x64 NF4 matrix: row 0 is byte 0xF7 repeated (nibbles 15,7 → 1.0, 0.0)
// scaled by 2, row 1 is 0x0F (nibbles 0,15 → -1.0, 1.0) scaled by 0.5.
func TestNF4MatMulHandChecked(t *testing.T) {
	m := &kernels.NF4Matrix{
		Rows: 2, Cols: 64,
		Packed: append(fill(32, byte(0xF7)), fill(32, byte(0x0F))...),
		Absmax: []float32{2, 0.5},
		Code:   kernels.NF4Code,
	}
	if err := kernels.CheckMatrix(New(), m); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 2*64) // token 0: 1..64, token 1: ones
	for c := 0; c < 64; c++ {
		x[c] = float32(c + 1)
		x[64+c] = 1
	}
	y := make([]float32, 2*2)
	New().MatMul(hb(y), hb(x), m, 2)
	// Row 0 picks the odd values 1,3,...,63 (sum 1024) times 2; row 1 sums
	// (x[2j+1]-x[2j]) = 32 ones times 0.5.
	near(t, "y", y, []float32{2048, 16, 64, 0}, 0)

	d := Dequantize(m)
	for c := 0; c < 64; c++ {
		want0, want1 := float32(2), float32(-0.5)
		if c%2 == 1 {
			want0, want1 = 0, 0.5
		}
		if d.Data[c] != want0 || d.Data[64+c] != want1 {
			t.Fatalf("dequantized col %d = %v, %v; want %v, %v", c, d.Data[c], d.Data[64+c], want0, want1)
		}
	}
}

// A [2,96] matrix has 3 blocks: row 0 = block 0 and half of block 1, row 1 =
// the other half of block 1 and block 2.
func TestNF4StraddlingBlocks(t *testing.T) {
	m := &kernels.NF4Matrix{
		Rows: 2, Cols: 96,
		Packed: fill(96, byte(0xFF)), // every code 15 = 1.0
		Absmax: []float32{1, 2, 3},
		Code:   kernels.NF4Code,
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, 2)
	New().MatMul(hb(y), hb(fill(96, float32(1))), m, 1)
	near(t, "y", y, []float32{64*1 + 32*2, 32*2 + 64*3}, 0)

	out := make([]float32, 2*96)
	New().Embed(hb(out), m, hi([]int32{1, 0}))
	for c := 0; c < 96; c++ {
		want1, want0 := float32(2), float32(1)
		if c >= 32 {
			want1 = 3
		}
		if c >= 64 {
			want0 = 2
		}
		if out[c] != want1 || out[96+c] != want0 {
			t.Fatalf("embed col %d = %v, %v; want %v, %v", c, out[c], out[96+c], want1, want0)
		}
	}
}

// With an odd element count the last low nibble is padding.
func TestNF4OddCount(t *testing.T) {
	m := &kernels.NF4Matrix{Rows: 1, Cols: 3, Packed: []byte{0x8F, 0x0A}, Absmax: []float32{4}, Code: kernels.NF4Code}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	d := Dequantize(m)
	near(t, "w", d.Data, []float32{4 * kernels.NF4Code[8], 4 * kernels.NF4Code[15], 4 * kernels.NF4Code[0]}, 0)
}

func TestF32MatMulAndEmbed(t *testing.T) {
	w := &kernels.F32Matrix{Rows: 3, Cols: 2, Data: []float32{1, 2, 3, 4, 5, 6}}
	y := make([]float32, 2*3)
	New().MatMul(hb(y), hb([]float32{1, 1, 2, -1}), w, 2)
	near(t, "y", y, []float32{3, 7, 11, 0, 2, 4}, 0)
	out := make([]float32, 2*2)
	New().Embed(hb(out), w, hi([]int32{2, 0}))
	near(t, "embed", out, []float32{5, 6, 1, 2}, 0)
}

func TestRMSNorm(t *testing.T) {
	out := make([]float32, 4)
	New().RMSNorm(hb(out), hb([]float32{3, 4, 0, 2}), hb([]float32{1, 2}), 0)
	r0 := float32(math.Sqrt(12.5))
	r1 := float32(math.Sqrt(2))
	near(t, "out", out, []float32{3 / r0, 2 * 4 / r0, 0, 2 * 2 / r1}, 1e-6)
}

func TestRoPE(t *testing.T) {
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8} // 2 heads of dim 4
	x0 := append([]float32(nil), x...)
	New().RoPE(hb(x), hi([]int32{0}), 2, 4, hb([]float32{1, 0.5}))
	near(t, "pos 0", x, x0, 0)

	// Angle π/2 on pair 0 (x[0],x[2]) → (-x[2], x[0]); angle 0 on pair 1.
	x = []float32{1, 2, 3, 4}
	New().RoPE(hb(x), hi([]int32{1}), 1, 4, hb([]float32{math.Pi / 2, 0}))
	near(t, "pos 1", x, []float32{-3, 2, 1, 4}, 1e-6)
}

// oneSeq is the metadata of tokens of one sequence at positions pos, its
// positions in blocks table of blockSize.
func oneSeq(pos []int32, table []int32, blockSize int) kernels.AttnMeta {
	maxLen := 0
	for _, p := range pos {
		maxLen = max(maxLen, int(p)+1)
	}
	return kernels.AttnMeta{Seq: hi(make([]int32, len(pos))), Pos: hi(pos), BlockTables: hi(table),
		MaxBlocks: len(table), BlockSize: blockSize, MaxLen: maxLen}
}

func TestPagedAttention(t *testing.T) {
	// Position 0: every head returns its KV group's V row, whatever q is.
	const hd = 2
	q := []float32{1, 2, 3, 4, 5, 6, 7, 8} // 4 heads
	k := []float32{9, 9, 9, 9}             // 2 KV heads
	v := []float32{10, 11, 12, 13}
	out := make([]float32, 8)
	New().PagedAttention(hb(out), hb(q), kernels.KVLayer{K: hb(k), V: hb(v)}, oneSeq([]int32{0}, []int32{0}, 1), 4, 2, hd)
	near(t, "len 1", out, []float32{10, 11, 10, 11, 12, 13, 12, 13}, 0)

	// Scores 0 and ln 3 → weights 1/4, 3/4.
	s := float32(math.Sqrt(hd) * math.Log(3))
	k = []float32{0, 0, s, 0}
	v = []float32{4, 0, 0, 8}
	out = make([]float32, 2)
	New().PagedAttention(hb(out), hb([]float32{1, 0}), kernels.KVLayer{K: hb(k), V: hb(v)}, oneSeq([]int32{1}, []int32{0}, 2), 1, 1, hd)
	near(t, "len 2", out, []float32{1, 6}, 1e-6)

	// The same two positions in blocks of one, stored in reverse order
	// behind two unused rows: the block table finds them.
	kr := []float32{7, 7, 7, 7, s, 0, 0, 0}
	vr := []float32{7, 7, 7, 7, 0, 8, 4, 0}
	out = make([]float32, 2)
	New().PagedAttention(hb(out), hb([]float32{1, 0}), kernels.KVLayer{K: hb(kr), V: hb(vr)}, oneSeq([]int32{1}, []int32{3, 2}, 1), 1, 1, hd)
	near(t, "len 2 paged", out, []float32{1, 6}, 1e-6)

	// Huge scores stay finite because the max is subtracted.
	New().PagedAttention(hb(out), hb([]float32{1e4, 0}), kernels.KVLayer{K: hb([]float32{1, 0, 1.01, 0}), V: hb(v)}, oneSeq([]int32{1}, []int32{0}, 2), 1, 1, hd)
	for _, o := range out {
		if math.IsNaN(float64(o)) || math.IsInf(float64(o), 0) {
			t.Fatalf("attention with large scores = %v", out)
		}
	}
	near(t, "large", out, []float32{0, 8}, 1e-6)

	// Position -1 attends nothing: zeros.
	out = []float32{5, 5}
	New().PagedAttention(hb(out), hb([]float32{1, 0}), kernels.KVLayer{K: hb(k), V: hb(v)}, oneSeq([]int32{-1}, []int32{0}, 2), 1, 1, hd)
	near(t, "pos -1", out, []float32{0, 0}, 0)
}

// KVRow: position p is row table[p/blockSize]*blockSize + p%blockSize.
func TestKVRow(t *testing.T) {
	m := kernels.AttnMeta{MaxBlocks: 3, BlockSize: 4}
	tables := []int32{5, 2, 9, 0, 7, 1} // two sequences
	for _, c := range []struct{ seq, p, want int }{
		{0, 0, 20}, {0, 3, 23}, {0, 4, 8}, {0, 9, 37}, {1, 0, 0}, {1, 6, 30}, {1, 11, 7},
	} {
		if got := KVRow(m, tables, c.seq, c.p); got != c.want {
			t.Errorf("KVRow(seq %d, pos %d) = %d, want %d", c.seq, c.p, got, c.want)
		}
	}
}

func TestWriteKVGatherRows(t *testing.T) {
	K, V := make([]float32, 4*2), make([]float32, 4*2) // 4 rows of kvDim 2
	k := []float32{1, 2, 3, 4}
	v := []float32{5, 6, 7, 8}
	New().WriteKV(kernels.KVLayer{K: hb(K), V: hb(V)}, hb(k), hb(v), hi([]int32{3, 0}), 2)
	near(t, "K", K, []float32{3, 4, 0, 0, 0, 0, 1, 2}, 0)
	near(t, "V", V, []float32{7, 8, 0, 0, 0, 0, 5, 6}, 0)

	dst := make([]float32, 3*2)
	New().GatherRows(hb(dst), hb(K), hi([]int32{3, 3, 0}), 2)
	near(t, "gathered", dst, []float32{1, 2, 1, 2, 3, 4}, 0)
}

func TestMemory(t *testing.T) {
	var m kernels.Memory = New()
	b, err := m.Alloc(5)
	if err != nil || b.Len() != 5 {
		t.Fatalf("Alloc(5) = %v, %v", b.Len(), err)
	}
	m.Write(b.Slice(1, 4), []float32{1, 2})
	got := make([]float32, 5)
	m.Read(got, b)
	near(t, "written", got, []float32{0, 1, 2, 0, 0}, 0)
	ib, err := m.AllocInt(3)
	if err != nil {
		t.Fatal(err)
	}
	m.WriteInt(ib.Slice(2, 3), []int32{7})
	gi := make([]int32, 2)
	m.ReadInt(gi, ib.Slice(1, 3))
	if gi[0] != 0 || gi[1] != 7 {
		t.Fatalf("ReadInt = %v", gi)
	}
	if _, err := m.Upload(otherMatrix{}); err == nil {
		t.Fatal("Upload of an unsupported matrix: no error")
	}
	for name, f := range map[string]func(){
		"long write": func() { m.Write(b, make([]float32, 6)) },
		"long read":  func() { m.Read(make([]float32, 6), b) },
		"device buf": func() { New().Add(kernels.DeviceBuf(64, 2), hb([]float32{1, 2})) },
		"device ints": func() {
			New().Embed(hb(got), &kernels.F32Matrix{Rows: 1, Cols: 1, Data: []float32{1}}, kernels.DeviceIntBuf(64, 1))
		},
	} {
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

func TestSiLUMulAdd(t *testing.T) {
	out := make([]float32, 3)
	New().SiLUMul(hb(out), hb([]float32{0, 1, -1}), hb([]float32{5, 2, 3}))
	near(t, "silu", out, []float32{0, 2 * 0.7310585786, 3 * -0.2689414214}, 1e-6)
	dst := []float32{1, 2}
	New().Add(hb(dst), hb([]float32{0.5, -2}))
	near(t, "add", dst, []float32{1.5, 0}, 0)
}

func TestCheckMatrix(t *testing.T) {
	b := New()
	bad := []kernels.Matrix{
		nil,
		&kernels.F32Matrix{Rows: 2, Cols: 2, Data: make([]float32, 3)},
		&kernels.NF4Matrix{Rows: 1, Cols: 64, Packed: make([]byte, 32)},
		otherMatrix{},
	}
	for _, w := range bad {
		if err := kernels.CheckMatrix(b, w); err == nil {
			t.Errorf("CheckMatrix(%T) = nil, want error", w)
		}
	}
}

type otherMatrix struct{}

func (otherMatrix) Shape() (int, int) { return 1, 1 }
