package kernels_test

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/ref"
)

func TestBF16Conversion(t *testing.T) {
	cases := []struct {
		f    uint32 // float32 bits
		want uint16
	}{
		{0x3F800000, 0x3F80}, // 1
		{0xBF800000, 0xBF80}, // -1
		{0x3F808000, 0x3F80}, // tie, rounds to the even 0x3F80
		{0x3F818000, 0x3F82}, // tie, rounds to the even 0x3F82
		{0x3F808001, 0x3F81}, // above the tie
		{0x3F807FFF, 0x3F80}, // below the tie
		{0x7F7FFFFF, 0x7F80}, // max float32 rounds to +Inf
		{0x7F800000, 0x7F80}, // +Inf
		{0x00000001, 0x0000}, // smallest subnormal rounds to 0
		{0x80000000, 0x8000}, // -0
	}
	for _, c := range cases {
		f := math.Float32frombits(c.f)
		if got := kernels.F32ToBF16(f); got != c.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	if h := kernels.F32ToBF16(float32(math.NaN())); !math.IsNaN(float64(kernels.BF16ToF32(h))) {
		t.Errorf("NaN became %#04x", h)
	}
	if h := kernels.F32ToBF16(-float32(math.NaN())); !math.IsNaN(float64(kernels.BF16ToF32(h))) || h&0x8000 == 0 {
		t.Errorf("-NaN became %#04x", h)
	}
	// Widening is exact and round-trips every bit pattern but NaNs.
	for h := 0; h < 1<<16; h++ {
		f := kernels.BF16ToF32(uint16(h))
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x", h, math.Float32bits(f))
		}
		if f == f && kernels.F32ToBF16(f) != uint16(h) {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, kernels.F32ToBF16(f))
		}
	}
}

// One block with absmax 127 has scale 1, so q = round(x), half away from zero.
func TestQuantizeQ8HandChecked(t *testing.T) {
	w := make([]float32, 64)
	copy(w, []float32{127, -63.5, 0.5, -0.5, 2.4, -2.6, 126.5, 0.49})
	// Block 1 (w[32:]) is all zero.
	m, err := kernels.QuantizeQ8(w, 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	wantQ := []int8{127, -64, 1, -1, 2, -3, 127, 0}
	for i, q := range wantQ {
		if m.Q[i] != q {
			t.Errorf("q[%d] = %d, want %d", i, m.Q[i], q)
		}
	}
	for i := len(wantQ); i < 64; i++ {
		if m.Q[i] != 0 {
			t.Errorf("q[%d] = %d, want 0", i, m.Q[i])
		}
	}
	if m.Scale[0] != 1 || m.Scale[1] != 0 {
		t.Errorf("scales %v, want [1 0]", m.Scale)
	}
	// Negative absmax: block of -2.54 and 1 → scale 0.02, q -127 and round(50.0...) = 50.
	m, err = kernels.QuantizeQ8(append([]float32{-2.54, 1}, make([]float32, 30)...), 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	if m.Scale[0] != float32(2.54)/127 || m.Q[0] != -127 || m.Q[1] != 50 {
		t.Errorf("scale %v q %v, want %v, [-127 50 ...]", m.Scale[0], m.Q[:2], float32(2.54)/127)
	}
}

func TestQuantizeQ8Errors(t *testing.T) {
	nan := make([]float32, 64)
	nan[32+5] = float32(math.NaN())
	cases := []struct {
		name       string
		w          []float32
		rows, cols int
		want       string
	}{
		{"cols", make([]float32, 40), 1, 40, "not a multiple of the block size 32"},
		{"short", make([]float32, 63), 2, 32, "weight has 63 elements, want 64"},
		{"shape", nil, 0, 32, "bad shape"},
		{"nan", nan, 2, 32, "weight [1,5] is NaN"},
	}
	for _, c := range cases {
		if _, err := kernels.QuantizeQ8(c.w, c.rows, c.cols); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	inf := make([]uint16, 64)
	inf[3] = 0xFF80 // -Inf
	if _, err := kernels.QuantizeQ8BF16(inf, 1, 64); err == nil || !strings.Contains(err.Error(), "weight [0,3] is -Inf") {
		t.Errorf("bf16 -Inf: err = %v", err)
	}
}

// QuantizeQ8BF16 is QuantizeQ8 of the widened values.
func TestQuantizeQ8BF16(t *testing.T) {
	h := make([]uint16, 3*64)
	f := make([]float32, len(h))
	for i := range h {
		h[i] = uint16(0x3A00+(97*i)%0x0A00) | uint16(i%2)<<15 // magnitudes 2⁻¹¹..2⁹, both signs
		f[i] = kernels.BF16ToF32(h[i])
	}
	a, err := kernels.QuantizeQ8BF16(h, 3, 64)
	if err != nil {
		t.Fatal(err)
	}
	b, err := kernels.QuantizeQ8(f, 3, 64)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Q {
		if a.Q[i] != b.Q[i] {
			t.Fatalf("q[%d] = %d, want %d", i, a.Q[i], b.Q[i])
		}
	}
	for i := range a.Scale {
		if a.Scale[i] != b.Scale[i] {
			t.Fatalf("scale[%d] = %v, want %v", i, a.Scale[i], b.Scale[i])
		}
	}
}

// checkRoundTrip asserts |x - deq| <= scale/2 for every element, up to
// float32 rounding: x/scale and q·scale each round once (2⁻²⁴ relative,
// taken as 2⁻²³·(|x|+|deq|)), and a block whose scale is subnormal loses up
// to 127 half-ulps of 2⁻¹⁴⁹ in its scale (the 2⁻¹⁴² term).
func checkRoundTrip(t *testing.T, w []float32, rows, cols int) {
	t.Helper()
	m, err := kernels.QuantizeQ8(w, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	if err := kernels.CheckMatrix(ref.New(), m); err != nil {
		t.Fatal(err)
	}
	for i, x := range w {
		deq := ref.Q8Element(m, i)
		scale := m.Scale[i/kernels.Q8BlockSize]
		if m.Q[i] < -127 {
			t.Fatalf("q[%d] = %d", i, m.Q[i])
		}
		d, a := math.Abs(float64(x)-float64(deq)), math.Abs(float64(x))+math.Abs(float64(deq))
		if !(d <= float64(scale)/2+0x1p-23*a+0x1p-142) {
			t.Fatalf("w[%d] = %v (%#08x) dequantizes to %v (q %d, scale %v): error %v > scale/2",
				i, x, math.Float32bits(x), deq, m.Q[i], scale, d)
		}
	}
}

func FuzzQuantizeQ8(f *testing.F) {
	seed := func(vals ...float32) []byte {
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b
	}
	f.Add(seed(1, -2, 3.5, 0.001, 127, -0.5))
	f.Add(seed(1e-40, -3e-39, 1e-45, 0))                     // subnormal scales
	f.Add(seed(3.4e38, -3.4e38, 1e30, -1))                   // near overflow
	f.Add(seed(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) // a row spanning two blocks
	f.Fuzz(func(t *testing.T, data []byte) {
		n := len(data) / 4
		cols := kernels.Q8BlockSize * (1 + n/kernels.Q8BlockSize%3)
		rows := max(1, (n+cols-1)/cols)
		w := make([]float32, rows*cols)
		for i := 0; i < n && i < len(w); i++ {
			v := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				v = float32(i) // QuantizeQ8 rejects these (tested above)
			}
			w[i] = v
		}
		checkRoundTrip(t, w, rows, cols)
	})
}

// BenchmarkQuantizeQ8BF16 is the load-time cost of quantizing a bf16
// weight (per element: ns/op ÷ 2048·2048).
func BenchmarkQuantizeQ8BF16(b *testing.B) {
	const rows, cols = 2048, 2048
	h := make([]uint16, rows*cols)
	for i := range h {
		h[i] = kernels.F32ToBF16(float32(i%977-488) / 4096)
	}
	b.SetBytes(2 * rows * cols)
	for b.Loop() {
		if _, err := kernels.QuantizeQ8BF16(h, rows, cols); err != nil {
			b.Fatal(err)
		}
	}
}
