package kernels

import "math"

// Int8 activations for NF4 weights (llama.cpp's IQ4_NL × Q8_0 scheme on
// bitsandbytes blocks): the 16 codes become int8 and each 64-element block of
// an activation row is quantized to int8 with one scale, so that a block's
// dot product is an integer sum. These two functions are the rule every
// backend's int8 path follows; kernels/ref.MatMulNF4Int8 is the product.

// Int8Code returns the code book as int8, q[i] = round(127·code[i]/c), and
// the scale c/127 that maps q back (c = max|code|; a code book of zeros
// gives scale 0).
func Int8Code(code *[16]float32) (q [16]int8, scale float32) {
	var c float32
	for _, v := range code {
		c = max(c, float32(math.Abs(float64(v))))
	}
	if c == 0 {
		return q, 0
	}
	for i, v := range code {
		q[i] = int8(math.Round(float64(127 * v / c)))
	}
	return q, c / 127
}

// QuantizeBlocksInt8 quantizes x (a multiple of 64 long) per 64-element
// block: d[b] = max|x| / 127 and q[i] = round(x[i]/d[b]) in [-127, 127]
// (ggml-quants.c quantize_row_q8_0_ref, with 64-element blocks). q [len(x)],
// d [len(x)/64].
func QuantizeBlocksInt8(q []int8, d []float32, x []float32) {
	for b := range len(x) / NF4BlockSize {
		xb := x[b*NF4BlockSize : (b+1)*NF4BlockSize]
		var amax float32
		for _, v := range xb {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d[b] = amax / 127
		var inv float32
		if amax > 0 {
			inv = 127 / amax
		}
		for i, v := range xb {
			q[b*NF4BlockSize+i] = int8(math.Round(float64(v * inv)))
		}
	}
}
