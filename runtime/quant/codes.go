// Package quant is bitsandbytes-compatible quantization (bitsandbytes
// functional.py quantize_4bit / dequantize_4bit, quantize_blockwise): NF4
// with blocks of 64 and double quantization of the scales, the 8-bit
// blockwise dynamic quantization that double quantization and the 8-bit
// optimizer use, and reading/writing the tensors of a bnb 4-bit checkpoint.
//
// Quantization follows bitsandbytes' default (pure PyTorch) backend as
// re-implemented by testdata/gen_nf4_golden.py, bit for bit; see QuantizeNF4.
package quant

//go:generate go run ./internal/gencodes

// SignedDynamicMap is bitsandbytes' create_dynamic_map(signed=True): 256
// sorted float32 values from -0.99296875 to 1 (index 127 is 0). It is the
// nested_quant_map of double quantization and the code of Adam's first moment.
func SignedDynamicMap() [256]float32 { return dynamicSigned }

// UnsignedDynamicMap is create_dynamic_map(signed=False): 256 sorted values
// from 0 to 1, the code of Adam's second moment.
func UnsignedDynamicMap() [256]float32 { return dynamicUnsigned }

// FP4Code is bitsandbytes' FP4 code book, indexed by code (not sorted).
func FP4Code() [16]float32 { return fp4Code }
