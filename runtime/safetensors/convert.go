package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// ToFloat32 decodes an F32, F16 or BF16 tensor into a new float32 slice.
// All three conversions are exact.
func ToFloat32(t Tensor) ([]float32, error) {
	n := t.NumElements()
	if size := t.DType.Size(); size == 0 || len(t.Data) != n*size {
		return nil, fmt.Errorf("safetensors: tensor %q: %d bytes do not hold %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
	}
	out := make([]float32, n)
	d := t.Data
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	default:
		return nil, fmt.Errorf("safetensors: tensor %q: cannot convert %s to float32", t.Name, t.DType)
	}
	return out, nil
}

// BF16ToFloat32 widens a bfloat16 (the top 16 bits of a float32).
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBF16 rounds to the nearest bfloat16, ties to even, as torch's
// c10::BFloat16 does; every NaN becomes the quiet NaN 0x7FC0.
func Float32ToBF16(f float32) uint16 {
	if f != f {
		return 0x7FC0
	}
	b := math.Float32bits(f)
	return uint16((b + 0x7FFF + (b>>16)&1) >> 16)
}

// F16ToFloat32 widens an IEEE 754 half (1 sign, 5 exponent, 10 mantissa bits),
// subnormals, infinities and NaN payloads included.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1F
	mant := uint32(h) & 0x3FF
	switch {
	case exp == 0x1F: // inf or NaN: keep the payload
		return math.Float32frombits(sign | 0xFF<<23 | mant<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	default: // zero or subnormal: mant * 2^-24, exact in float32
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
}
