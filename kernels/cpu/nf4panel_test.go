package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// int8Backend returns a backend with int8 NF4 products for decode and
// prefill, on the SIMD (and VNNI, where the CPU has it) or pure Go path.
func int8Backend(threads int, simd bool) *Backend {
	b := newBackend(threads, simd)
	b.SetInt8Activations(true)
	b.SetInt8Prefill(true)
	return b
}

// TestUploadRepacksPanels: Upload repacks exactly the NF4 weights of whole
// panels and blocks, and only with VNNI and both int8 modes on.
func TestUploadRepacksPanels(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	for _, c := range []struct {
		rows, cols    int
		int8, prefill bool
		want          bool
	}{
		{32, 128, true, true, true},
		{33, 128, true, true, false},
		{32, 100, true, true, false},
		{32, 128, false, true, false},
		{32, 128, true, false, false},
	} {
		b := newBackend(1, true)
		b.SetInt8Activations(c.int8)
		b.SetInt8Prefill(c.prefill)
		m := kerneltest.NF4(rng, c.rows, c.cols, kernels.NF4Code)
		u, err := b.Upload(m)
		if err != nil {
			t.Fatal(err)
		}
		_, got := u.(*nf4Panels)
		if want := c.want && haveVNNI(); got != want {
			t.Errorf("%+v: repacked %v, want %v", c, got, want)
		}
		b.Close()
	}
}

// TestPanelsDequantize: panels hold the bitsandbytes weight's values
// exactly (Embed, which MatMulT uses to dequantize, on both layouts).
func TestPanelsDequantize(t *testing.T) {
	rng := rand.New(rand.NewPCG(53, 54))
	b := newBackend(1, false)
	defer b.Close()
	m := kerneltest.NF4(rng, 48, 192, fp4Code)
	p := repackNF4(m, false, func(n int, f func(lo, hi int)) { f(0, n) })
	ids := []int32{0, 17, 47, 16, 5}
	got, want := make([]float32, len(ids)*m.Cols), make([]float32, len(ids)*m.Cols)
	b.Embed(kernels.HostBuf(got), p, kernels.HostIntBuf(ids))
	b.Embed(kernels.HostBuf(want), m, kernels.HostIntBuf(ids))
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("row %d col %d: %v from panels, %v from bitsandbytes", ids[i/m.Cols], i%m.Cols, got[i], want[i])
		}
	}
}

// TestPanelsMatchGo: where the CPU has AVX-512 VNNI, MatMul on panels
// gives the pure Go int8 kernel's results on the bitsandbytes layout bit
// for bit (the same integer block sums, the same float steps in the same
// order) for every batch size, whatever y held before; and with the int8
// modes switched off after Upload, the float32 product (kernels/ref).
func TestPanelsMatchGo(t *testing.T) {
	if !haveVNNI() {
		t.Skip("no AVX-512 VNNI on this CPU: panels are never made here")
	}
	pure := int8Backend(1, false)
	defer pure.Close()
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			b := int8Backend(threads, true)
			defer b.Close()
			rng := rand.New(rand.NewPCG(55, uint64(threads)))
			for _, rows := range []int{16, 48, 256, 528} {
				for _, cols := range []int{64, 192, 2048} {
					m := kerneltest.NF4(rng, rows, cols, kernels.NF4Code)
					u, err := b.Upload(m)
					if err != nil {
						t.Fatal(err)
					}
					if _, ok := u.(*nf4Panels); !ok {
						t.Fatalf("[%d,%d] not repacked", rows, cols)
					}
					for _, T := range []int{1, 2, 3, 4, 5, 8, 9, 11, 12, 13, 21, 25} {
						x := kerneltest.Vec(rng, T*cols)
						clear(x[:64]) // a block of zeros: scale 0
						got, want := make([]float32, T*rows+1), make([]float32, T*rows)
						for i := range got {
							got[i] = float32(math.NaN())
						}
						b.MatMul(kernels.HostBuf(got[:T*rows]), kernels.HostBuf(x), u, T)
						if !math.IsNaN(float64(got[T*rows])) {
							t.Fatalf("[%d,%d] T=%d: wrote past y", rows, cols, T)
						}
						pure.MatMul(kernels.HostBuf(want), kernels.HostBuf(x), m, T)
						for i, w := range want {
							if math.Float32bits(got[i]) != math.Float32bits(w) {
								t.Fatalf("[%d,%d] T=%d: y[%d,%d] = %v on panels, %v in Go", rows, cols, T, i/rows, i%rows, got[i], w)
							}
						}
					}
				}
			}
			// The float32 product, once the modes are off.
			m := kerneltest.NF4(rng, 64, 192, kernels.NF4Code)
			u, _ := b.Upload(m)
			b.SetInt8Activations(false)
			b.SetInt8Prefill(false)
			for _, T := range []int{1, 3, 17} {
				x := kerneltest.Vec(rng, T*m.Cols)
				got, want := make([]float32, T*m.Rows), make([]float32, T*m.Rows)
				b.MatMul(kernels.HostBuf(got), kernels.HostBuf(x), u, T)
				ref.Backend{}.MatMul(kernels.HostBuf(want), kernels.HostBuf(x), m, T)
				for i := range got {
					tok, r := i/m.Rows, i%m.Rows
					var sumAbs float64
					for c := range m.Cols {
						sumAbs += math.Abs(float64(ref.NF4Element(m, r*m.Cols+c)) * float64(x[tok*m.Cols+c]))
					}
					if d := math.Abs(float64(got[i] - want[i])); d > kerneltest.SumTol*sumAbs {
						t.Fatalf("float32 on panels, T=%d: y[%d,%d] = %v, want %v", T, tok, r, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestBF16Panels: in serve's configuration on a VNNI CPU, Upload repacks a
// bfloat16 weight of whole panels; MatMul on it is the float32 product
// (kernels/ref, to float32 rounding) for every batch size, and Embed reads
// its rows back exactly.
func TestBF16Panels(t *testing.T) {
	if !haveVNNI() {
		t.Skip("no AVX-512 VNNI on this CPU: panels are never made here")
	}
	for _, threads := range []int{1, 2} {
		b := int8Backend(threads, true)
		rng := rand.New(rand.NewPCG(57, uint64(threads)))
		for _, rows := range []int{16, 48, 272} {
			for _, cols := range []int{1, 2, 7, 64, 301} {
				m := kerneltest.BF16(rng, rows, cols)
				u, err := b.Upload(m)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := u.(*bf16Panels); !ok {
					t.Fatalf("[%d,%d] uploaded as %T", rows, cols, u)
				}
				for _, T := range []int{1, 2, 3, 4, 5, 8, 9, 12, 13, 25} {
					if msg := kerneltest.MatMulMismatch(b, m, kerneltest.Vec(rng, T*cols), T); msg != "" {
						t.Fatalf("threads=%d [%d,%d] T=%d: %s", threads, rows, cols, T, msg)
					}
				}
				ids := []int32{0, int32(rows - 1), 17 % int32(rows), 3}
				got, want := make([]float32, len(ids)*cols), make([]float32, len(ids)*cols)
				b.Embed(kernels.HostBuf(got), u, kernels.HostIntBuf(ids))
				b.Embed(kernels.HostBuf(want), m, kernels.HostIntBuf(ids))
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("[%d,%d] Embed row %d col %d: %v from panels, %v", rows, cols, ids[i/cols], i%cols, got[i], want[i])
					}
				}
			}
		}
		if u, err := b.Upload(kerneltest.BF16(rng, 17, 64)); err != nil {
			t.Fatal(err)
		} else if _, ok := u.(*kernels.BF16Matrix); !ok {
			t.Fatalf("17 rows (not whole panels) uploaded as %T", u)
		}
		b.Close()
	}
}

// TestUploadOwnedInPlace: UploadOwned reorders a weight's own buffers into
// the panels Upload writes into new ones, byte for byte.
func TestUploadOwnedInPlace(t *testing.T) {
	if !haveVNNI() {
		t.Skip("no AVX-512 VNNI on this CPU: panels are never made here")
	}
	b := int8Backend(2, true)
	defer b.Close()
	rng := rand.New(rand.NewPCG(59, 60))
	m := kerneltest.NF4(rng, 80, 192, kernels.NF4Code)
	own := *m
	own.Packed, own.Absmax = append([]byte(nil), m.Packed...), append([]float32(nil), m.Absmax...)
	u, _ := b.Upload(m)
	o, _ := b.UploadOwned(&own)
	up, op := u.(*nf4Panels), o.(*nf4Panels)
	if &op.packed[0] != &own.Packed[0] || &op.absmax[0] != &own.Absmax[0] {
		t.Fatal("UploadOwned copied the NF4 weight")
	}
	if string(up.packed) != string(op.packed) || fmt.Sprint(up.absmax) != fmt.Sprint(op.absmax) {
		t.Fatal("NF4 panels differ between Upload and UploadOwned")
	}
	h := kerneltest.BF16(rng, 48, 70)
	ownH := &kernels.BF16Matrix{Rows: h.Rows, Cols: h.Cols, Data: append([]uint16(nil), h.Data...)}
	uh, _ := b.Upload(h)
	oh, _ := b.UploadOwned(ownH)
	if &oh.(*bf16Panels).data[0] != &ownH.Data[0] {
		t.Fatal("UploadOwned copied the bf16 weight")
	}
	if fmt.Sprint(uh.(*bf16Panels).data) != fmt.Sprint(oh.(*bf16Panels).data) {
		t.Fatal("bf16 panels differ between Upload and UploadOwned")
	}
}
