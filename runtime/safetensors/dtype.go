// Package safetensors reads and writes the Hugging Face safetensors format:
// an 8-byte little-endian header length N, N bytes of JSON header, then the
// raw little-endian tensor data, row-major.
//
// Open maps a file read-only and validates its header completely before any
// tensor is handed out; Write produces the same bytes as the reference
// (Rust/Python) `safetensors` library for the same tensors and metadata.
package safetensors

// DType is a safetensors element type, spelled as in the header ("F32", "BF16", ...).
type DType string

const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

// Size is the size of one element in bytes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E5M2, F8E4M3:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// Valid reports whether d is a dtype this package knows.
func (d DType) Valid() bool { return d.Size() != 0 }

// rank is the position of d in the Rust crate's `Dtype` enum, which is
// declared in increasing alignment; the writer orders tensors by it.
func (d DType) rank() int {
	switch d {
	case BOOL:
		return 0
	case U8:
		return 1
	case I8:
		return 2
	case F8E5M2:
		return 3
	case F8E4M3:
		return 4
	case I16:
		return 5
	case U16:
		return 6
	case F16:
		return 7
	case BF16:
		return 8
	case I32:
		return 9
	case U32:
		return 10
	case F32:
		return 11
	case F64:
		return 12
	case I64:
		return 13
	case U64:
		return 14
	}
	return -1
}
