package quant

// torchMean is torch.Tensor.mean() of a contiguous float32 vector as
// PyTorch 1.13 computes it on an AVX2 CPU with one thread: the cascade sum of
// aten/src/ATen/native/cpu/SumKernel.cpp (8-lane vectors, 4-way ILP,
// multi-level accumulators), then division by n in float32. Matching it
// bit for bit matters because the mean becomes nested_offset, the centre of
// the double-quantized scales. (With several threads torch splits large
// vectors differently, and CUDA differs again, so an offset read from a
// checkpoint must always be used as stored.)
func torchMean(x []float32) float32 {
	if len(x) == 0 {
		return float32(nan32())
	}
	return torchSum(x) / float32(len(x))
}

func nan32() float32 { z := float32(0); return z / z }

const vecLanes = 8 // Vectorized<float>::size() with AVX2

type vec [vecLanes]float32

func (a *vec) add(b *vec) {
	for l := range a {
		a[l] += b[l]
	}
}

func torchSum(x []float32) float32 {
	n := len(x)
	if n < vecLanes {
		// scalar_inner_sum: row_sum with 4 accumulators; for n < 8 that is
		// acc0 = x0 (+ x4...), then acc0 += acc1, acc2, acc3.
		var acc [4]float32
		for i := 0; i < n && i < 4; i++ {
			acc[i] += x[i]
		}
		for i := 4; i < n; i++ {
			acc[0] += x[i]
		}
		return acc[0] + acc[1] + acc[2] + acc[3]
	}
	// vectorized_inner_sum: row_sum over whole vectors, then the scalar
	// tail, then the lanes, in that order.
	nv := n / vecLanes
	var zero vec
	acc := rowSumVec(nv, func(i int, a *vec) {
		v := (*vec)(x[i*vecLanes : (i+1)*vecLanes])
		a.add(v)
	}, zero)
	var final float32
	for k := nv * vecLanes; k < n; k++ {
		final += x[k]
	}
	for l := 0; l < vecLanes; l++ {
		final += acc[l]
	}
	return final
}

// rowSumVec is torch's row_sum over 8-lane vectors: load(i, acc) adds
// vector i to acc.
func rowSumVec(size int, load func(i int, acc *vec), zero vec) vec {
	const ilp = 4
	sizeILP := size / ilp
	p := multiRowSumVec(sizeILP, func(i, k int, acc *vec) { load(i*ilp+k, acc) })
	for i := sizeILP * ilp; i < size; i++ {
		load(i, &p[0])
	}
	for k := 1; k < ilp; k++ {
		p[0].add(&p[k])
	}
	return p[0]
}

// multiRowSumVec is torch's multi_row_sum with nrows = 4.
func multiRowSumVec(size int, load func(i, k int, acc *vec)) [4]vec {
	const numLevels, nrows = 4, 4
	levelPower := max(4, ceilLog2(size)/numLevels)
	levelStep := 1 << levelPower
	levelMask := levelStep - 1
	var acc [numLevels][nrows]vec
	i := 0
	for i+levelStep <= size {
		for j := 0; j < levelStep; j, i = j+1, i+1 {
			for k := 0; k < nrows; k++ {
				load(i, k, &acc[0][k])
			}
		}
		for j := 1; j < numLevels; j++ {
			for k := 0; k < nrows; k++ {
				acc[j][k].add(&acc[j-1][k])
				acc[j-1][k] = vec{}
			}
			if i&(levelMask<<(j*levelPower)) != 0 {
				break
			}
		}
	}
	for ; i < size; i++ {
		for k := 0; k < nrows; k++ {
			load(i, k, &acc[0][k])
		}
	}
	for j := 1; j < numLevels; j++ {
		for k := 0; k < nrows; k++ {
			acc[0][k].add(&acc[j][k])
		}
	}
	return acc[0]
}

// ceilLog2 is c10::utils::CeilLog2 (0 for x <= 1).
func ceilLog2(x int) int {
	if x <= 2 {
		if x == 2 {
			return 1
		}
		return 0
	}
	r := 0
	for v := x - 1; v > 0; v >>= 1 {
		r++
	}
	return r
}
