package safetensors

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// f16Ref evaluates a half from its fields in float64: the IEEE 754 definition.
func f16Ref(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10)&0x1F, float64(h&0x3FF)
	switch e {
	case 0:
		return sign * math.Ldexp(m/1024, -14)
	case 31:
		if m == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+m/1024, e-15)
}

func TestF16ToFloat32Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got, want := F16ToFloat32(h), f16Ref(h)
		if math.IsNaN(want) {
			// NaN keeps sign and payload: bits = sign | exp all ones | payload<<13.
			wantBits := uint32(h&0x8000)<<16 | 0x7F800000 | uint32(h&0x3FF)<<13
			if math.Float32bits(got) != wantBits {
				t.Fatalf("%#04x: bits %#08x, want %#08x", h, math.Float32bits(got), wantBits)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("%#04x: %v, want %v", h, got, want)
		}
	}
	// Landmarks: 1, the largest half, the smallest subnormal, -inf.
	for h, want := range map[uint16]float32{0x3C00: 1, 0x7BFF: 65504, 0x0001: 5.960464477539063e-08, 0xFC00: float32(math.Inf(-1))} {
		if got := F16ToFloat32(h); got != want {
			t.Errorf("%#04x: %v, want %v", h, got, want)
		}
	}
}

// bf16Ref rounds to nearest, ties to even, by comparing the two candidate
// bfloat16 values in float64.
func bf16Ref(f float32) uint16 {
	if f != f {
		return 0x7FC0
	}
	lo := uint16(math.Float32bits(f) >> 16)
	hi := lo + 1
	dl := math.Abs(float64(f) - float64(BF16ToFloat32(lo)))
	dh := math.Abs(float64(f) - float64(BF16ToFloat32(hi))) // hi may be inf: then dh = +Inf
	if math.IsInf(float64(BF16ToFloat32(hi)), 0) && !math.IsInf(float64(f), 0) {
		// Past the largest finite bfloat16, rounding goes to inf exactly when
		// f is at least halfway to the next (unrepresentable) power of two.
		next := float64(BF16ToFloat32(lo)) + (float64(BF16ToFloat32(lo)) - float64(BF16ToFloat32(lo-1)))
		dh = math.Abs(next - float64(f))
	}
	switch {
	case dl < dh:
		return lo
	case dh < dl:
		return hi
	case lo&1 == 0:
		return lo
	}
	return hi
}

func TestFloat32ToBF16(t *testing.T) {
	check := func(f float32) {
		if got, want := Float32ToBF16(f), bf16Ref(f); got != want {
			t.Fatalf("%v (%#08x): %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(r.Uint32())
		if f != f {
			continue
		}
		check(f)
		// Exact ties and their neighbours: low 16 bits 0x8000 ± 1.
		b := math.Float32bits(f) &^ 0xFFFF
		for _, low := range []uint32{0x7FFF, 0x8000, 0x8001} {
			check(math.Float32frombits(b | low))
		}
	}
	for f, want := range map[float32]uint16{
		1: 0x3F80, 1 + 1.0/256: 0x3F80, 1 + 3.0/256: 0x3F82, -2: 0xC000,
		math.MaxFloat32: 0x7F80, float32(math.NaN()): 0x7FC0, 1e-40: 0x0001,
	} {
		if got := Float32ToBF16(f); got != want {
			t.Errorf("%v: %#04x, want %#04x", f, got, want)
		}
	}
	// Widening is exact and round-trips.
	for i := 0; i < 1<<16; i++ {
		if v := BF16ToFloat32(uint16(i)); v == v && Float32ToBF16(v) != uint16(i) {
			t.Fatalf("%#04x does not round-trip", i)
		}
	}
}

func TestToFloat32(t *testing.T) {
	vals := []float32{0, -1.5, 3.25, 65504}
	f32 := Tensor{Name: "f", DType: F32, Shape: []int{2, 2}, Data: f32bytes(vals...)}
	var bf, hf []byte
	for _, v := range vals {
		bf = binary.LittleEndian.AppendUint16(bf, Float32ToBF16(v))
	}
	for _, h := range []uint16{0x0000, 0xBE00, 0x4280, 0x7BFF} { // the same values as halves
		hf = binary.LittleEndian.AppendUint16(hf, h)
	}
	for _, tn := range []Tensor{f32, {Name: "h", DType: F16, Shape: []int{4}, Data: hf}} {
		got, err := ToFloat32(tn)
		if err != nil {
			t.Fatal(err)
		}
		for i := range vals {
			if got[i] != vals[i] {
				t.Errorf("%s[%d] = %v, want %v", tn.DType, i, got[i], vals[i])
			}
		}
	}
	got, err := ToFloat32(Tensor{Name: "b", DType: BF16, Shape: []int{4}, Data: bf})
	if err != nil || got[1] != -1.5 || got[3] != 65536 { // 65504 rounds to 65536 in bfloat16
		t.Errorf("bf16: %v %v", got, err)
	}
	for _, bad := range []Tensor{
		{Name: "u", DType: U8, Shape: []int{1}, Data: []byte{1}},
		{Name: "short", DType: F32, Shape: []int{2}, Data: make([]byte, 4)},
	} {
		if _, err := ToFloat32(bad); err == nil {
			t.Errorf("%s: no error", bad.Name)
		}
	}
}
