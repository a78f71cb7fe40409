package quant

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// minAbsmax is torch's absmax.clamp(min=1e-38) (1e-38 rounded to float32): it
// only keeps an all-zero block from dividing by zero.
const minAbsmax = float32(1e-38)

// scaleBlock writes clamp(x / absmax, -1, 1) for one block and returns
// absmax = max|x|. As the reference does, a full block multiplies by the
// float32 reciprocal 1/absmax while the partial last block divides; the two
// can differ in the last bit, which can change a code at a midpoint.
func scaleBlock(dst, x []float32, tail bool) (absmax float32) {
	for _, v := range x {
		if v < 0 {
			v = -v
		}
		if v > absmax {
			absmax = v
		}
	}
	a := max(absmax, minAbsmax)
	if tail {
		for i, v := range x {
			dst[i] = min(max(v/a, -1), 1)
		}
		return absmax
	}
	r := 1 / a
	for i, v := range x {
		dst[i] = min(max(v*r, -1), 1)
	}
	return absmax
}

// midpoints returns the bucketize boundaries between consecutive entries of
// a sorted code: (code[i] + code[i+1]) / 2 in float32.
func midpoints(code []float32) []float32 {
	b := make([]float32, len(code)-1)
	for i := range b {
		b[i] = float32(code[i]+code[i+1]) / 2
	}
	return b
}

// bucketize is torch.bucketize(x, bounds) (right=False): the number of
// boundaries strictly below x, so a value exactly on a midpoint takes the
// lower code.
func bucketize(x float32, bounds []float32) int {
	lo, hi := 0, len(bounds)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if bounds[mid] < x {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// QuantizeBlockwise is bitsandbytes' 8-bit blockwise quantization: for each
// block of blocksize consecutive values, absmax = max|x| and each value gets
// the index of the nearest entry of code (which must be sorted ascending,
// as the dynamic maps are) to clamp(x/absmax, -1, 1).
// codes [len(x)], absmax [ceil(len(x)/blocksize)].
func QuantizeBlockwise(x []float32, code *[256]float32, blocksize int) (codes []uint8, absmax []float32, err error) {
	if err := checkCode(code, blocksize); err != nil {
		return nil, nil, err
	}
	bounds := midpoints(code[:])
	codes = make([]uint8, len(x))
	absmax = make([]float32, (len(x)+blocksize-1)/blocksize)
	scaled := make([]float32, blocksize)
	for b := range absmax {
		lo, hi := b*blocksize, min((b+1)*blocksize, len(x))
		absmax[b] = scaleBlock(scaled[:hi-lo], x[lo:hi], hi-lo < blocksize)
		for i, s := range scaled[:hi-lo] {
			codes[lo+i] = uint8(bucketize(s, bounds))
		}
	}
	return codes, absmax, nil
}

func checkCode(code *[256]float32, blocksize int) error {
	if code == nil {
		return errors.New("quant: nil code")
	}
	if blocksize <= 0 {
		return fmt.Errorf("quant: blocksize %d", blocksize)
	}
	for i := 1; i < len(code); i++ {
		if !(code[i-1] <= code[i]) {
			return fmt.Errorf("quant: code is not sorted at index %d", i)
		}
	}
	return nil
}

// DequantizeBlockwise inverts QuantizeBlockwise: out[i] = code[codes[i]] *
// absmax[i/blocksize], one float32 multiply as bitsandbytes does.
func DequantizeBlockwise(codes []uint8, absmax []float32, code *[256]float32, blocksize int) ([]float32, error) {
	if code == nil || blocksize <= 0 {
		return nil, fmt.Errorf("quant: bad code or blocksize %d", blocksize)
	}
	if want := (len(codes) + blocksize - 1) / blocksize; len(absmax) != want {
		return nil, fmt.Errorf("quant: %d absmax values for %d codes in blocks of %d, want %d", len(absmax), len(codes), blocksize, want)
	}
	out := make([]float32, len(codes))
	for i, c := range codes {
		out[i] = code[c] * absmax[i/blocksize]
	}
	return out, nil
}

// NestedBlockSize is the block size of double quantization.
const NestedBlockSize = 256

// DoubleQuantize quantizes the float32 block scales of a 4-bit weight the
// way bitsandbytes' compress_statistics=True does: offset = mean(absmax) (in
// float32, summed in torch's order, see torchMean), then the 8-bit
// blockwise quantization of absmax - offset with the signed dynamic map and
// blocks of 256. codes [len(absmax)], nestedAbsmax [ceil(len(absmax)/256)].
func DoubleQuantize(absmax []float32) (codes []uint8, nestedAbsmax []float32, offset float32) {
	if len(absmax) == 0 {
		return nil, nil, 0
	}
	offset = torchMean(absmax)
	centered := make([]float32, len(absmax))
	for i, a := range absmax {
		centered[i] = a - offset
	}
	code := SignedDynamicMap()
	codes, nestedAbsmax, _ = QuantizeBlockwise(centered, &code, NestedBlockSize) // the map is sorted and 256 > 0
	return codes, nestedAbsmax, offset
}

// DequantizeAbsmax rebuilds the block scales of a double-quantized weight
// (bitsandbytes functional.py dequantize_4bit with a nested quant_state):
// scale[b] = code[codes[b]] * nestedAbsmax[b/256] + offset, the multiply and
// the add each rounded to float32.
func DequantizeAbsmax(codes []uint8, nestedAbsmax []float32, code *[256]float32, offset float32) ([]float32, error) {
	return dequantizeAbsmax(codes, nestedAbsmax, code, offset, NestedBlockSize)
}

func dequantizeAbsmax(codes []uint8, nestedAbsmax []float32, code *[256]float32, offset float32, blocksize int) ([]float32, error) {
	if code == nil || blocksize <= 0 {
		return nil, fmt.Errorf("quant: bad code or nested blocksize %d", blocksize)
	}
	if want := (len(codes) + blocksize - 1) / blocksize; len(nestedAbsmax) != want {
		return nil, fmt.Errorf("quant: %d nested absmax values for %d scales in blocks of %d, want %d",
			len(nestedAbsmax), len(codes), blocksize, want)
	}
	out := make([]float32, len(codes))
	for i, c := range codes {
		// The conversion rounds the product, so it is never fused with the add.
		out[i] = float32(code[c]*nestedAbsmax[i/blocksize]) + offset
	}
	return out, nil
}

// parallelBlocks calls f on contiguous ranges of [0, nblocks) from several
// goroutines when the work is large enough to be worth it.
func parallelBlocks(nblocks, perBlock int, f func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if nblocks*perBlock < 1<<20 || workers < 2 {
		f(0, nblocks)
		return
	}
	var wg sync.WaitGroup
	step := (nblocks + workers - 1) / workers
	for lo := 0; lo < nblocks; lo += step {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			f(lo, hi)
		}(lo, min(lo+step, nblocks))
	}
	wg.Wait()
}
