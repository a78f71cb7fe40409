package main

// A GGUF v3 writer and the ggml tensor encodings it needs, written from the
// format's documentation: ggml's docs/gguf.md (file layout, metadata value
// types, alignment) and ggml/src/ggml-common.h (block_q4_0, block_q8_0),
// with the rounding of ggml/src/ggml-quants.c's quantize_row_q4_0_ref and
// quantize_row_q8_0_ref, so that a file written here is what llama.cpp's
// own tools would have written for the same floats.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// ggmlType is a tensor's element encoding (ggml.h enum ggml_type).
type ggmlType uint32

const (
	typeF32  ggmlType = 0
	typeF16  ggmlType = 1
	typeQ4_0 ggmlType = 2
	typeQ8_0 ggmlType = 8
)

// qk is the block length of Q4_0 and Q8_0 (ggml-common.h QK4_0, QK8_0).
const qk = 32

func (t ggmlType) String() string {
	switch t {
	case typeF32:
		return "F32"
	case typeF16:
		return "F16"
	case typeQ4_0:
		return "Q4_0"
	case typeQ8_0:
		return "Q8_0"
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// parseGGMLType reads a --gguf flag value.
func parseGGMLType(s string) (ggmlType, error) {
	switch s {
	case "f32":
		return typeF32, nil
	case "f16":
		return typeF16, nil
	case "q4_0":
		return typeQ4_0, nil
	case "q8_0":
		return typeQ8_0, nil
	}
	return 0, fmt.Errorf("unknown GGUF tensor type %q (want q4_0, q8_0, f16 or f32)", s)
}

// rowBytes is the encoded size of a row of n elements: block types need n
// to be a multiple of their block length.
func (t ggmlType) rowBytes(n int) (int, error) {
	switch t {
	case typeF32:
		return 4 * n, nil
	case typeF16:
		return 2 * n, nil
	case typeQ4_0, typeQ8_0:
		if n%qk != 0 {
			return 0, fmt.Errorf("%s needs rows of a multiple of %d elements, got %d", t, qk, n)
		}
		per := 2 + qk/2 // block_q4_0: ggml_half d; uint8_t qs[QK4_0/2]
		if t == typeQ8_0 {
			per = 2 + qk // block_q8_0: ggml_half d; int8_t qs[QK8_0]
		}
		return n / qk * per, nil
	}
	return 0, fmt.Errorf("no encoder for %s", t)
}

// encodeRow appends the encoding of x (one row, or several rows laid end to
// end, each a multiple of the block length for block types) to dst.
func (t ggmlType) encodeRow(dst []byte, x []float32) []byte {
	switch t {
	case typeF32:
		for _, v := range x {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
		}
	case typeF16:
		for _, v := range x {
			dst = binary.LittleEndian.AppendUint16(dst, f32ToF16(v))
		}
	case typeQ4_0:
		for i := 0; i < len(x); i += qk {
			dst = appendQ4_0(dst, x[i:i+qk])
		}
	case typeQ8_0:
		for i := 0; i < len(x); i += qk {
			dst = appendQ8_0(dst, x[i:i+qk])
		}
	}
	return dst
}

// appendQ4_0 appends one block_q4_0 (ggml-common.h) of 32 floats, rounded
// as quantize_row_q4_0_ref does: the scale is the element of largest
// magnitude, sign kept, divided by -8 (so that element maps to code 0 and
// the other side of zero gets the 8th step only up to 7); each code is
// (int8)(x/d + 8.5), which truncates toward zero a value that is never
// negative, clamped to 15. Element j goes to the low nibble of byte j,
// element j+16 to its high nibble. The block is d as fp16 (little-endian)
// then the 16 bytes.
func appendQ4_0(dst []byte, x []float32) []byte {
	var amax, vmax float32
	for _, v := range x[:qk] {
		if a := float32(math.Abs(float64(v))); amax < a {
			amax, vmax = a, v
		}
	}
	d := vmax / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	dst = binary.LittleEndian.AppendUint16(dst, f32ToF16(d))
	code := func(v float32) byte {
		// The product is rounded to float32 before the +8.5, as in C
		// where x0 = x*id is a float variable.
		p := float32(v * id)
		return byte(min(15, int8(p+8.5)))
	}
	for j := range qk / 2 {
		dst = append(dst, code(x[j])|code(x[j+qk/2])<<4)
	}
	return dst
}

// appendQ8_0 appends one block_q8_0 (ggml-common.h): d = absmax/127 as
// fp16, then roundf(x/d) as int8 (quantize_row_q8_0_ref; roundf rounds
// half away from zero, as math.Round does).
func appendQ8_0(dst []byte, x []float32) []byte {
	var amax float32
	for _, v := range x[:qk] {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	dst = binary.LittleEndian.AppendUint16(dst, f32ToF16(d))
	for _, v := range x[:qk] {
		dst = append(dst, byte(int8(math.Round(float64(float32(v*id))))))
	}
	return dst
}

// f32ToF16 rounds a float32 to the nearest IEEE 754 half, ties to even
// (what F16C's vcvtps2ph and ggml's scalar GGML_FP32_TO_FP16 do): overflow
// goes to infinity, small values to subnormals or zero, NaN stays NaN.
func f32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xFF
	mant := b & 0x7FFFFF
	switch {
	case exp == 0xFF: // inf or NaN (keep NaN quiet and non-zero)
		if mant != 0 {
			return sign | 0x7E00
		}
		return sign | 0x7C00
	case exp == 0 && mant == 0:
		return sign
	}
	e := exp - 127 + 15 // the half's biased exponent
	if e >= 0x1F {
		return sign | 0x7C00
	}
	// The significand with its implicit bit (a float32 subnormal has none,
	// and is far below the half's range anyway).
	m := mant
	if exp != 0 {
		m |= 1 << 23
	}
	// Bits to drop: 13 for a normal half, more for a subnormal one.
	shift := 13
	if e <= 0 {
		shift += 1 - e
		e = 0
		if shift > 24 {
			return sign // below half the smallest subnormal
		}
	}
	q := m >> shift
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	if e == 0 {
		// Subnormal: q may have rounded up into the smallest normal, which
		// the encoding expresses by itself (exponent field 1, mantissa 0).
		return sign | uint16(q)
	}
	// Normal: q holds the implicit bit at 1<<10; rounding may carry into the
	// exponent, which the addition handles (and reaches infinity at 0x7C00).
	return sign | (uint16(e<<10) + uint16(q) - 1<<10)
}

// ggufValueType is a metadata value's type (docs/gguf.md gguf_metadata_value_type).
type ggufValueType uint32

const (
	gguftUint32  ggufValueType = 4
	gguftInt32   ggufValueType = 5
	gguftFloat32 ggufValueType = 6
	gguftBool    ggufValueType = 7
	gguftString  ggufValueType = 8
	gguftArray   ggufValueType = 9
	gguftUint64  ggufValueType = 10
)

// ggufKV is one metadata pair. Value is a uint32, int32, uint64, float32,
// bool, string, []string or []int32.
type ggufKV struct {
	Key   string
	Value any
}

// ggufTensor is one tensor: Dims innermost first (ggml's ne: a [rows, cols]
// matrix is {cols, rows}), and Write produces exactly Size bytes.
type ggufTensor struct {
	Name  string
	Dims  []uint64
	Type  ggmlType
	Size  int64
	Write func(w io.Writer) error
}

// ggufAlignment is where tensor data starts and each tensor is placed:
// GGUF_DEFAULT_ALIGNMENT, and written as general.alignment as well.
const ggufAlignment = 32

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// writeGGUF writes a GGUF v3 file (docs/gguf.md): the header (magic
// "GGUF", version 3, tensor count, metadata count), the metadata pairs, the
// tensor infos (name, dims, type, offset from the start of the data
// section), padding to the alignment, then each tensor's data, each padded
// to the alignment. Data is streamed; the file appears at path only once
// complete.
func writeGGUF(path string, kvs []ggufKV, tensors []ggufTensor) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	cw := &countWriter{w: bufio.NewWriterSize(f, 1<<20)}
	e := &ggufEncoder{w: cw}
	e.raw([]byte("GGUF"))
	e.u32(3)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		if err := e.value(kv.Value); err != nil {
			return fmt.Errorf("gguf: %s: %w", kv.Key, err)
		}
	}
	var off int64
	for _, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(off))
		off = alignUp(off+t.Size, ggufAlignment)
	}
	e.pad()
	if e.err != nil {
		return e.err
	}
	for _, t := range tensors {
		start := cw.n
		if err := t.Write(cw); err != nil {
			return fmt.Errorf("gguf: %s: %w", t.Name, err)
		}
		if got := cw.n - start; got != t.Size {
			return fmt.Errorf("gguf: %s: wrote %d bytes, want %d", t.Name, got, t.Size)
		}
		e.pad()
		if e.err != nil {
			return e.err
		}
	}
	if err := cw.w.(*bufio.Writer).Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ggufEncoder writes little-endian GGUF primitives, keeping the first error.
type ggufEncoder struct {
	w   *countWriter
	err error
	buf [8]byte
}

func (e *ggufEncoder) raw(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}

func (e *ggufEncoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.raw(e.buf[:4])
}

func (e *ggufEncoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.raw(e.buf[:8])
}

// str is a gguf_string_t: uint64 length, then the UTF-8 bytes, no NUL.
func (e *ggufEncoder) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}

// pad writes zeros up to the next multiple of the alignment.
func (e *ggufEncoder) pad() {
	n := alignUp(e.w.n, ggufAlignment) - e.w.n
	e.raw(make([]byte, n))
}

// value writes a value's type then the value; arrays as element type,
// uint64 count, elements.
func (e *ggufEncoder) value(v any) error {
	switch v := v.(type) {
	case uint32:
		e.u32(uint32(gguftUint32))
		e.u32(v)
	case int32:
		e.u32(uint32(gguftInt32))
		e.u32(uint32(v))
	case uint64:
		e.u32(uint32(gguftUint64))
		e.u64(v)
	case float32:
		e.u32(uint32(gguftFloat32))
		e.u32(math.Float32bits(v))
	case bool:
		e.u32(uint32(gguftBool))
		b := byte(0)
		if v {
			b = 1
		}
		e.raw([]byte{b})
	case string:
		e.u32(uint32(gguftString))
		e.str(v)
	case []string:
		e.u32(uint32(gguftArray))
		e.u32(uint32(gguftString))
		e.u64(uint64(len(v)))
		for _, s := range v {
			e.str(s)
		}
	case []int32:
		e.u32(uint32(gguftArray))
		e.u32(uint32(gguftInt32))
		e.u64(uint64(len(v)))
		for _, x := range v {
			e.u32(uint32(x))
		}
	default:
		return errors.New("unsupported metadata value type")
	}
	return nil
}
