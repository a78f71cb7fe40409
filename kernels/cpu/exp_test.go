package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
)

type expJob struct {
	f    *kernels.F32Matrix
	h    *kernels.BF16Matrix
	x, y []float32
}

func (j *expJob) run(_, lo, hi int) {
	if j.f != nil {
		c := j.f.Cols
		for r := lo; r < hi; r++ {
			j.y[r] = dotAVX2(j.x[:c], j.f.Data[r*c:(r+1)*c])
		}
		return
	}
	c := j.h.Cols
	for r := lo; r < hi; r++ {
		j.y[r] = dotBF16AVX2(j.h.Data[r*c:(r+1)*c], j.x[:c])
	}
}

func BenchmarkExp(bb *testing.B) {
	ws := lmHeads()
	rng := rand.New(rand.NewPCG(3, 4))
	x := kerneltest.Vec(rng, lmCols)
	y := make([]float32, lmRows)
	for _, grain := range []int{8, 64, 512} {
		for _, w := range ws[:2] {
			bb.Run(fmt.Sprintf("%T/grain=%d", w, grain), func(bb *testing.B) {
				b := New(0)
				defer b.Close()
				j := &expJob{x: x, y: y}
				n := 0
				switch m := w.(type) {
				case *kernels.F32Matrix:
					j.f, n = m, 4*len(m.Data)
				case *kernels.BF16Matrix:
					j.h, n = m, 2*len(m.Data)
				}
				for bb.Loop() {
					b.pool.parallel(j, lmRows, grain)
				}
				bb.ReportMetric(float64(n)*float64(bb.N)/bb.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}

func BenchmarkExpCompute(bb *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	const rows, cols = 48, 2048
	h := kerneltest.BF16(rng, rows, cols)
	q := kerneltest.Q8(rng, rows, cols)
	f := kerneltest.F32(rng, rows, cols)
	for _, T := range []int{1, 2, 4, 8, 16} {
		x := kerneltest.Vec(rng, T*cols)
		y := make([]float32, T*rows)
		for _, w := range []kernels.Matrix{f, h, q} {
			bb.Run(fmt.Sprintf("%T/T=%d", w, T), func(bb *testing.B) {
				b := New(1)
				defer b.Close()
				for bb.Loop() {
					b.MatMul(y, x, w, T)
				}
				bb.ReportMetric(float64(rows*cols)*float64(bb.N)/bb.Elapsed().Seconds()/1e9, "Gw/s")
			})
		}
	}
}

func BenchmarkExpKernel(bb *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	const cols = 2048
	h := kerneltest.BF16(rng, 1, cols).Data
	_ = kerneltest.Q8(rng, 1, cols)
	f := kerneltest.Vec(rng, 3*cols)
	x := kerneltest.Vec(rng, 4*cols)
	var xs [4][]float32
	for i := range xs {
		xs[i] = x[i*cols : (i+1)*cols]
	}
	var s [4]float32
	h3 := kerneltest.BF16(rng, 3, cols).Data
	q3 := kerneltest.Q8(rng, 3, cols)
	var s12 [12]float32
	bb.Run("bf16_4x3", func(bb *testing.B) {
		for bb.Loop() {
			dot4x3BF16AVX2(&s12, &xs, h3, cols, cols)
		}
		bb.ReportMetric(3*float64(cols)*float64(bb.N)/bb.Elapsed().Seconds()/1e9/2.9, "w/cycle")
	})
	bb.Run("q8_4x3", func(bb *testing.B) {
		for bb.Loop() {
			dot4x3Q8AVX2(&s12, &xs, q3.Q, q3.Scale, cols, cols/32)
		}
		bb.ReportMetric(3*float64(cols)*float64(bb.N)/bb.Elapsed().Seconds()/1e9/2.9, "w/cycle")
	})
	bb.Run("f32dot4x3", func(bb *testing.B) {
		for bb.Loop() {
			dot4x3AVX2(&s12, &xs, f, cols, cols)
		}
		bb.ReportMetric(3*float64(cols)*float64(bb.N)/bb.Elapsed().Seconds()/1e9/2.9, "w/cycle")
	})
	bb.Run("bf16x1", func(bb *testing.B) {
		for bb.Loop() {
			s[0] += dotBF16AVX2(h, x)
		}
		bb.ReportMetric(float64(cols)*float64(bb.N)/bb.Elapsed().Seconds()/1e9/2.9, "w/cycle")
	})
}

type exp3Job struct {
	h    *kernels.BF16Matrix
	x, y []float32
}

func (j *exp3Job) run(_, lo, hi int) {
	c := j.h.Cols
	xs := [4][]float32{j.x, j.x, j.x, j.x}
	for r := lo; r+3 <= hi; r += 3 {
		var s [12]float32
		dot4x3BF16AVX2(&s, &xs, j.h.Data[r*c:], c, c)
		j.y[r], j.y[r+1], j.y[r+2] = s[0], s[1], s[2]
	}
}

func BenchmarkExpBF16(bb *testing.B) {
	ws := lmHeads()
	h := ws[1].(*kernels.BF16Matrix)
	rng := rand.New(rand.NewPCG(3, 4))
	x := kerneltest.Vec(rng, lmCols)
	y := make([]float32, lmRows)
	b := New(0)
	defer b.Close()
	for _, grain := range []int{6, 24, 96} {
		bb.Run(fmt.Sprintf("row/grain=%d", grain), func(bb *testing.B) {
			j := &expJob{h: h, x: x, y: y}
			for bb.Loop() {
				b.pool.parallel(j, lmRows, grain)
			}
			bb.ReportMetric(float64(2*len(h.Data))*float64(bb.N)/bb.Elapsed().Seconds()/1e9, "GB/s")
		})
		bb.Run(fmt.Sprintf("3rows/grain=%d", grain), func(bb *testing.B) {
			j := &exp3Job{h: h, x: x, y: y}
			for bb.Loop() {
				b.pool.parallel(j, lmRows, grain)
			}
			bb.ReportMetric(float64(2*len(h.Data))*float64(bb.N)/bb.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
	bb.Run("probe", func(bb *testing.B) {
		for bb.Loop() {
			bb.ReportMetric(MeasureBandwidth(b, probeBytes, 1), "GB/s")
		}
	})
}

//go:noescape
func dotBF16PFAsm(w *uint16, x *float32, n int, dist int) float32

type expPFJob struct {
	h    *kernels.BF16Matrix
	x, y []float32
	dist int
}

func (j *expPFJob) run(_, lo, hi int) {
	c := j.h.Cols
	for r := lo; r < hi; r++ {
		if j.dist < 0 {
			j.y[r] = dotBF16AVX2(j.h.Data[r*c:(r+1)*c], j.x)
		} else {
			j.y[r] = dotBF16PFAsm(&j.h.Data[r*c], &j.x[0], c, j.dist)
		}
	}
}

func BenchmarkExpPF(bb *testing.B) {
	ws := lmHeads()
	h := ws[1].(*kernels.BF16Matrix)
	rng := rand.New(rand.NewPCG(3, 4))
	x := kerneltest.Vec(rng, lmCols)
	y := make([]float32, lmRows)
	b := New(0)
	defer b.Close()
	for _, grain := range []int{8, 96} {
		for _, dist := range []int{-1, 0, 512, 1024, 2048, 4096} {
			bb.Run(fmt.Sprintf("g%d_d%d", grain, dist), func(bb *testing.B) {
				bw := MeasureBandwidth(b, probeBytes, 2)
				j := &expPFJob{h: h, x: x, y: y, dist: dist}
				for bb.Loop() {
					b.pool.parallel(j, lmRows, grain)
				}
				gbs := float64(2*len(h.Data)) * float64(bb.N) / bb.Elapsed().Seconds() / 1e9
				bb.ReportMetric(gbs/bw, "frac")
			})
		}
	}
}
