package ref

import (
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

// A [2,3] bfloat16 matrix, rows (1, -2, 0.5) and (1.0078125, 3, -0.25):
// 0x3F81 is the bfloat16 just above 1 (7 mantissa bits).
func TestBF16HandChecked(t *testing.T) {
	m := &kernels.BF16Matrix{Rows: 2, Cols: 3, Data: []uint16{0x3F80, 0xC000, 0x3F00, 0x3F81, 0x4040, 0xBE80}}
	if err := kernels.CheckMatrix(New(), m); err != nil {
		t.Fatal(err)
	}
	x := []float32{1, 2, 4, 2, 0, -8} // [T=2, 3]
	y := make([]float32, 4)
	New().MatMul(hb(y), hb(x), m, 2)
	// t0: 1-4+2, 1.0078125+6-1; t1: 2-4, 2.015625+2.
	near(t, "y", y, []float32{-1, 6.0078125, -2, 4.015625}, 0)

	out := make([]float32, 3*3)
	New().Embed(hb(out), m, hi([]int32{1, 0, 1}))
	near(t, "embed", out, []float32{1.0078125, 3, -0.25, 1, -2, 0.5, 1.0078125, 3, -0.25}, 0)
}

// A [2,64] Q8 matrix (two blocks per row) with power-of-two scales, so every
// product is exact:
//
//	block 0: q = i-16 (i < 32), scale 2     block 1: q = 127, scale 0.125
//	block 2: q = -1, scale 3                block 3: q = +100,-100,..., scale 0.0625
func TestQ8HandChecked(t *testing.T) {
	m := &kernels.Q8Matrix{Rows: 2, Cols: 64, Q: make([]int8, 128), Scale: []float32{2, 0.125, 3, 0.0625}}
	for i := 0; i < 32; i++ {
		m.Q[i] = int8(i - 16)
		m.Q[32+i] = 127
		m.Q[64+i] = -1
		m.Q[96+i] = 100
		if i%2 == 1 {
			m.Q[96+i] = -100
		}
	}
	if err := kernels.CheckMatrix(New(), m); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 2*64) // token 0: ones, token 1: x[c] = c
	for c := 0; c < 64; c++ {
		x[c], x[64+c] = 1, float32(c)
	}
	y := make([]float32, 4)
	New().MatMul(hb(y), hb(x), m, 2)
	// Row 0: t0 2·Σ(i-16) + 32·127·0.125 = -32 + 508;
	//        t1 2·Σ(i-16)·i + 15.875·Σ_{32..63} c = 4960 + 24130.
	// Row 1: t0 -3·32 + 0; t1 -3·Σ_{0..31} c + 6.25·(32-33+34-...-63) = -1488 - 100.
	near(t, "y", y, []float32{476, -96, 29090, -1588}, 0)

	out := make([]float32, 64)
	New().Embed(hb(out), m, hi([]int32{1}))
	for c := 0; c < 64; c++ {
		want := float32(-3)
		if c >= 32 {
			want = 6.25
			if c%2 == 1 {
				want = -6.25
			}
		}
		if out[c] != want {
			t.Fatalf("embed[%d] = %v, want %v", c, out[c], want)
		}
	}
}

// onlyBackend hides ref's SupportsMatrix: CheckMatrix must then accept
// only the original two kinds.
type onlyBackend struct{ kernels.Backend }

func TestCheckMatrixBF16Q8(t *testing.T) {
	bad := map[string]struct {
		w    kernels.Matrix
		want string
	}{
		"bf16 short":      {&kernels.BF16Matrix{Rows: 2, Cols: 3, Data: make([]uint16, 5)}, "data has 5 elements, want 6"},
		"bf16 shape":      {&kernels.BF16Matrix{Rows: 0, Cols: 3}, "bad shape"},
		"bf16 nil":        {(*kernels.BF16Matrix)(nil), "nil"},
		"q8 cols":         {&kernels.Q8Matrix{Rows: 1, Cols: 48, Q: make([]int8, 48), Scale: make([]float32, 1)}, "not a multiple of the block size 32"},
		"q8 short q":      {&kernels.Q8Matrix{Rows: 2, Cols: 32, Q: make([]int8, 63), Scale: make([]float32, 2)}, "q has 63 elements, want 64"},
		"q8 short scale":  {&kernels.Q8Matrix{Rows: 2, Cols: 32, Q: make([]int8, 64), Scale: make([]float32, 1)}, "scale has 1 blocks, want 2"},
		"q8 nil":          {(*kernels.Q8Matrix)(nil), "nil"},
		"no capabilities": {&kernels.BF16Matrix{Rows: 1, Cols: 1, Data: make([]uint16, 1)}, "does not support"},
	}
	for name, c := range bad {
		var b kernels.Backend = New()
		if name == "no capabilities" {
			b = onlyBackend{New()}
		}
		err := kernels.CheckMatrix(b, c.w)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
	good := []kernels.Matrix{
		&kernels.BF16Matrix{Rows: 1, Cols: 3, Data: make([]uint16, 3)},
		&kernels.Q8Matrix{Rows: 3, Cols: 64, Q: make([]int8, 192), Scale: make([]float32, 6)},
	}
	for _, w := range good {
		if err := kernels.CheckMatrix(New(), w); err != nil {
			t.Errorf("%T: %v", w, err)
		}
	}
	if err := kernels.CheckMatrix(onlyBackend{New()}, &kernels.F32Matrix{Rows: 1, Cols: 1, Data: []float32{1}}); err != nil {
		t.Errorf("F32 without capabilities: %v", err)
	}
}
