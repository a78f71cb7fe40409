package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
)

func BenchmarkProbeVNNIRow(bb *testing.B) {
	for _, rows := range []int{64, 8192} {
		bb.Run(fmt.Sprint(rows), func(bb *testing.B) {
			cols := 2048
			rng := rand.New(rand.NewPCG(1, 2))
			m := kerneltest.NF4(rng, rows, cols, kernels.NF4Code)
			code := newInt8Code(&m.Code)
			nb := cols / 64
			x := kerneltest.Vec(rng, cols)
			xv := make([]byte, nb*vnniBlock)
			xd := make([]float32, nb)
			quantizeInt8VNNI(xv, xd, x, code.scale, true)
			bb.SetBytes(int64(rows * (cols/2 + nb*4)))
			var s float32
			ws := []*kernels.NF4Matrix{m}
			if rows > 64 {
				ws = nf4Copies(rows, cols)
			}
			i := 0
			for bb.Loop() {
				m := ws[i%len(ws)]
				i++
				for r := range rows {
					s += dotNF4Int8VNNI(&code.utbl, m.Packed[r*cols/2:(r+1)*cols/2], m.Absmax[r*nb:(r+1)*nb], xv, xd)
				}
			}
			_ = s
		})
	}
}

type nopJob struct{ hits [2]int }

func (j *nopJob) run(w, lo, hi int) { j.hits[w]++ }

func BenchmarkProbeDispatch(bb *testing.B) {
	p := newPool(1)
	defer p.close()
	j := &nopJob{}
	for bb.Loop() {
		p.parallel(j, 64, 1)
	}
	bb.ReportMetric(float64(j.hits[1])/float64(j.hits[0]+j.hits[1]), "helper_frac")
}

func BenchmarkProbeMatVecThreads(bb *testing.B) {
	for _, s := range [][2]int{{2048, 2048}, {8192, 2048}} {
		ws := nf4Copies(s[0], s[1])
		for _, th := range []int{1, 2} {
			bb.Run(fmt.Sprint(s, th), func(bb *testing.B) {
				b := New(th)
				defer b.Close()
				b.SetInt8Activations(true)
				rng := rand.New(rand.NewPCG(3, 4))
				x := kernels.HostBuf(kerneltest.Vec(rng, s[1]))
				y := kernels.HostBuf(make([]float32, s[0]))
				bb.SetBytes(int64(nf4Bytes(ws[0])))
				i := 0
				for bb.Loop() {
					b.MatMul(y, x, ws[i%len(ws)], 1)
					i++
				}

			})
		}
	}
}

func BenchmarkProbeComputeScaling(bb *testing.B) {
	cols, rows := 2048, 64
	rng := rand.New(rand.NewPCG(1, 2))
	m := kerneltest.NF4(rng, rows, cols, kernels.NF4Code)
	code := newInt8Code(&m.Code)
	nb := cols / 64
	x := kerneltest.Vec(rng, cols)
	xv := make([]byte, nb*vnniBlock)
	xd := make([]float32, nb)
	quantizeInt8VNNI(xv, xd, x, code.scale, true)
	for _, th := range []int{1, 2} {
		bb.Run(fmt.Sprint(th), func(bb *testing.B) {
			p := newPool(th - 1)
			defer p.close()
			j := &rowsJob{m: m, code: &code, xv: xv, xd: xd, cols: cols, nb: nb}
			bb.SetBytes(int64(th * 1000 * rows * (cols/2 + nb*4)))
			for bb.Loop() {
				p.parallel(j, th, 1)
			}
		})
	}
}

type rowsJob struct {
	m        *kernels.NF4Matrix
	code     *int8Code
	xv       []byte
	xd       []float32
	cols, nb int
	s        [2]float32
}

func (j *rowsJob) run(w, lo, hi int) {
	var s float32
	defer func() { j.s[w] = s }()
	for range 1000 {
		for r := range j.m.Rows {
			s += dotNF4Int8VNNI(&j.code.utbl, j.m.Packed[r*j.cols/2:(r+1)*j.cols/2], j.m.Absmax[r*j.nb:(r+1)*j.nb], j.xv, j.xd)
		}
	}
}

type scalarJob struct{ s [2]uint64 }

func (j *scalarJob) run(w, lo, hi int) {
	x := uint64(w + 1)
	for i := range 50_000_000 {
		x = x*6364136223846793005 + uint64(i)
	}
	j.s[w] = x
}

func BenchmarkProbeScalarScaling(bb *testing.B) {
	for _, th := range []int{1, 2} {
		bb.Run(fmt.Sprint(th), func(bb *testing.B) {
			p := newPool(th - 1)
			defer p.close()
			j := &scalarJob{}
			for bb.Loop() {
				p.parallel(j, th, 1)
			}
		})
	}
}

type tputJob struct{ s [2]uint64 }

func (j *tputJob) run(w, lo, hi int) {
	a, b, c, d, e, f := uint64(w), uint64(w+1), uint64(w+2), uint64(w+3), uint64(w+4), uint64(w+5)
	for i := range 200_000_000 {
		u := uint64(i)
		a ^= u
		b += u
		c ^= b
		d += a
		e ^= d
		f += c
	}
	j.s[w] = a + b + c + d + e + f
}

func BenchmarkProbeTputScaling(bb *testing.B) {
	for _, th := range []int{1, 2} {
		bb.Run(fmt.Sprint(th), func(bb *testing.B) {
			p := newPool(th - 1)
			defer p.close()
			j := &tputJob{}
			for bb.Loop() {
				p.parallel(j, th, 1)
			}
		})
	}
}

func TestProbeBW(t *testing.T) {
	for _, th := range []int{1, 2} {
		b := New(th)
		t.Logf("threads %d: %.1f GB/s", th, MeasureBandwidth(b, 256<<20, 5))
		b.Close()
	}
}
