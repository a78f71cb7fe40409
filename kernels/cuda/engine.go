package cuda

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/parrot-llm/parrot/kernels"
)

// device is what the ops need from the driver: the cuda build's Backend
// implements it on gorgonia.org/cu; plan_test.go's fake records launches
// and checks them against the PTX, so the ops' host code (shape checks,
// kernel choice, argument lists) is tested without a GPU.
type device interface {
	// enter makes the device's context current on the calling thread and
	// returns the function that releases the thread.
	enter(op string) func()
	// launch queues a kernel of the embedded PTX on the stream.
	launch(name string, grid, block dim3, shmem int, args ...arg)
	// scratchBuf returns at least n floats of device scratch; callers hold
	// the engine's scratchMu until their kernels are queued (the stream
	// orders every later use after them).
	scratchBuf(n int) uintptr
	numSMs() int
}

// engine is the compute half of the backend: every op of kernels.Backend,
// kernels.LoRABackend and kernels.TrainBackend, on a device.
type engine struct {
	dev       device
	scratchMu sync.Mutex
	// tensorCores runs the GEMMs (MatMul with T > 8, MatMulT) on tensor
	// cores with the 3xTF32 split (src/gemm.cuh) instead of the fp32 tile.
	tensorCores bool
}

// gemm returns the kernel and block of a MatMul (trans false) or MatMulT
// GEMM for weight kind k.
func (e *engine) gemm(k matKind, trans bool) (string, dim3) {
	switch {
	case e.tensorCores && trans:
		return matmulTTC[k], dim3{tcThreads, 1, 1}
	case e.tensorCores:
		return matmulTC[k], dim3{tcThreads, 1, 1}
	case trans:
		return matmulTNames[k], dim3{threads, 1, 1}
	}
	return matmulNames[k][gemmTiled], dim3{threads, 1, 1}
}

// Matrix is a frozen weight in device memory, made by the backend's
// Upload: the parts of layoutOf in one allocation at base. The host matrix
// it came from is not kept. Its memory is released by FreeMatrix, or when
// it becomes unreachable.
type Matrix struct {
	lay     matLayout
	base    uintptr
	owner   *engine
	cleanup runtime.Cleanup
}

// Shape is W's [rows, cols].
func (m *Matrix) Shape() (int, int) { return m.lay.rows, m.lay.cols }

// Kind names the weight format: f32, nf4, bf16 or q8.
func (m *Matrix) Kind() string { return m.lay.kind.String() }

// Bytes is the device memory the weight takes.
func (m *Matrix) Bytes() int { return m.lay.total }

// args are the (data, scale, code) pointers every weight kernel takes
// (0 for parts the kind does not have).
func (m *Matrix) args() (d, s, c arg) {
	d, s, c = argPtr(m.base+uintptr(m.lay.data)), argPtr(0), argPtr(0)
	if m.lay.scaleLen > 0 {
		s = argPtr(m.base + uintptr(m.lay.scale))
	}
	if m.lay.codeLen > 0 {
		c = argPtr(m.base + uintptr(m.lay.code))
	}
	return d, s, c
}

// mat returns w as this engine's uploaded matrix, panicking otherwise
// (weights must go through Upload at load time).
func (e *engine) mat(op string, w kernels.Matrix) *Matrix {
	m, ok := w.(*Matrix)
	if !ok || m.owner != e || m.base == 0 {
		panic(fmt.Sprintf("cuda: %s: weight %T did not come from this backend's Upload", op, w))
	}
	return m
}

// devPtr returns the device address of x for op, panicking on host memory
// (a programming error, as kernels.HostFloats is for the host backends).
func devPtr[T float32 | int32](op string, x kernels.Handle[T]) uintptr {
	if x.Host() != nil && x.Len() > 0 {
		panic(fmt.Sprintf("cuda: %s: a host buffer of %d values handed to the cuda backend (allocate it with Alloc)", op, x.Len()))
	}
	return x.Device()
}
