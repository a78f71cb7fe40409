//go:build cuda

package cuda

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/parrot-llm/parrot/kernels"
)

// Memory: device allocations behind kernels.Buf handles (kernels.DeviceBuf),
// copies on the backend's stream, weights uploaded once into one
// allocation each (layoutOf).

// Alloc returns n zeroed floats of device memory.
func (b *Backend) Alloc(n int) (kernels.Buf, error) {
	p, err := b.alloc("Alloc", n)
	return kernels.DeviceBuf(p, n), err
}

// AllocInt returns n zeroed int32 values of device memory.
func (b *Backend) AllocInt(n int) (kernels.IntBuf, error) {
	p, err := b.alloc("AllocInt", n)
	return kernels.DeviceIntBuf(p, n), err
}

func (b *Backend) alloc(op string, n int) (uintptr, error) {
	if n < 0 {
		return 0, fmt.Errorf("cuda: %s of %d values", op, n)
	}
	if n == 0 {
		return 0, nil // an empty handle; Free ignores it
	}
	defer b.enter(op)()
	p, err := cu.MemAlloc(int64(4 * n))
	if err != nil {
		return 0, fmt.Errorf("cuda: %s of %d values (%d MiB): %w", op, n, 4*n>>20, err)
	}
	if err := cu.MemsetD32Async(p, 0, int64(n), b.stream); err != nil {
		cu.MemFree(p)
		return 0, fmt.Errorf("cuda: %s: zeroing: %w", op, err)
	}
	return uintptr(p), nil
}

// Free releases an allocation made by Alloc.
func (b *Backend) Free(x kernels.Buf) { b.free("Free", x.Host() != nil, x.Device()) }

// FreeInt releases an allocation made by AllocInt.
func (b *Backend) FreeInt(x kernels.IntBuf) { b.free("FreeInt", x.Host() != nil, x.Device()) }

func (b *Backend) free(op string, host bool, p uintptr) {
	if host {
		panic(fmt.Sprintf("cuda: %s of host memory", op))
	}
	if p == 0 {
		return
	}
	defer b.enter(op)()
	// Queued kernels may still use the memory: wait for them (the stream
	// does not synchronise with cuMemFree on its own, being non-blocking).
	b.fail(op, b.stream.Synchronize())
	b.fail(op, cu.MemFree(cu.DevicePtr(p)))
}

// Write copies src into the first len(src) values of dst, in stream order.
func (b *Backend) Write(dst kernels.Buf, src []float32) { write(b, "Write", dst, src) }

// WriteInt copies src into the first len(src) values of dst.
func (b *Backend) WriteInt(dst kernels.IntBuf, src []int32) { write(b, "WriteInt", dst, src) }

func write[T float32 | int32](b *Backend, op string, dst kernels.Handle[T], src []T) {
	if len(src) > dst.Len() {
		panic(fmt.Sprintf("cuda: %s of %d values into a buffer of %d", op, len(src), dst.Len()))
	}
	p := devPtr(op, dst)
	if len(src) == 0 {
		return
	}
	defer b.enter(op)()
	// From pageable memory the driver stages src before returning, so the
	// caller may reuse it at once (CUDA driver API, "API synchronization
	// behavior").
	b.fail(op, cu.MemcpyHtoDAsync(cu.DevicePtr(p), unsafe.Pointer(&src[0]), int64(4*len(src)), b.stream))
}

// Read copies the first len(dst) values of src into dst once every op
// queued before it has finished: the one sync point. It panics with the
// first error of any earlier op.
func (b *Backend) Read(dst []float32, src kernels.Buf) { read(b, "Read", dst, src) }

// ReadInt is Read for int32 values.
func (b *Backend) ReadInt(dst []int32, src kernels.IntBuf) { read(b, "ReadInt", dst, src) }

func read[T float32 | int32](b *Backend, op string, dst []T, src kernels.Handle[T]) {
	if len(dst) > src.Len() {
		panic(fmt.Sprintf("cuda: %s of %d values from a buffer of %d", op, len(dst), src.Len()))
	}
	p := devPtr(op, src)
	defer b.enter(op)()
	if len(dst) > 0 {
		b.fail(op, cu.MemcpyDtoHAsync(unsafe.Pointer(&dst[0]), cu.DevicePtr(p), int64(4*len(dst)), b.stream))
	}
	b.fail(op, b.stream.Synchronize())
	if err := b.Err(); err != nil {
		panic(err.Error())
	}
}

// SupportsMatrix: MatMul, MatMulT and Embed take F32, NF4, BF16 and Q8
// weights (host matrices to Upload, and their uploaded copies).
func (b *Backend) SupportsMatrix(w kernels.Matrix) bool {
	switch m := w.(type) {
	case *kernels.F32Matrix, *kernels.NF4Matrix, *kernels.BF16Matrix, *kernels.Q8Matrix:
		return true
	case *Matrix:
		return m.owner == &b.engine && m.base != 0
	}
	return false
}

// Upload copies w to the device once; the result is what MatMul, MatMulT
// and Embed take, and w's host buffers may be dropped. A matrix this
// backend uploaded already is returned as it is.
func (b *Backend) Upload(w kernels.Matrix) (kernels.Matrix, error) {
	if m, ok := w.(*Matrix); ok {
		if m.owner != &b.engine || m.base == 0 {
			return nil, fmt.Errorf("cuda: Upload of a matrix of another backend, or a freed one")
		}
		return m, nil
	}
	if err := kernels.CheckMatrix(b, w); err != nil {
		return nil, err
	}
	l, err := layoutOf(w)
	if err != nil {
		return nil, err
	}
	defer b.enter("Upload")()
	base, err := cu.MemAlloc(int64(l.total))
	if err != nil {
		return nil, fmt.Errorf("cuda: Upload of a %s [%d,%d] weight (%d MiB): %w", l.kind, l.rows, l.cols, l.total>>20, err)
	}
	put := func(off int, p unsafe.Pointer, n int) {
		if err == nil && n > 0 {
			err = cu.MemcpyHtoDAsync(base+cu.DevicePtr(off), p, int64(n), b.stream)
		}
	}
	switch h := w.(type) {
	case *kernels.F32Matrix:
		put(l.data, unsafe.Pointer(&h.Data[0]), l.dataBytes)
	case *kernels.NF4Matrix:
		put(l.data, unsafe.Pointer(&h.Packed[0]), l.dataBytes)
		put(l.scale, unsafe.Pointer(&h.Absmax[0]), 4*l.scaleLen)
		code := h.Code // a copy: cgo may see the field's memory only
		put(l.code, unsafe.Pointer(&code[0]), 4*l.codeLen)
	case *kernels.BF16Matrix:
		put(l.data, unsafe.Pointer(&h.Data[0]), l.dataBytes)
	case *kernels.Q8Matrix:
		put(l.data, unsafe.Pointer(&h.Q[0]), l.dataBytes)
		put(l.scale, unsafe.Pointer(&h.Scale[0]), 4*l.scaleLen)
	}
	if err == nil {
		err = b.stream.Synchronize()
	}
	if err != nil {
		cu.MemFree(base)
		return nil, fmt.Errorf("cuda: Upload of a %s [%d,%d] weight: %w", l.kind, l.rows, l.cols, err)
	}
	m := &Matrix{lay: l, base: uintptr(base), owner: &b.engine}
	m.cleanup = runtime.AddCleanup(m, func(p cu.DevicePtr) { b.free("Matrix cleanup", false, uintptr(p)) }, base)
	return m, nil
}

// FreeMatrix releases an uploaded weight now; it must not be used after.
func (b *Backend) FreeMatrix(w kernels.Matrix) {
	m, ok := w.(*Matrix)
	if !ok || m.owner != &b.engine || m.base == 0 {
		return
	}
	m.cleanup.Stop()
	b.free("FreeMatrix", false, m.base)
	m.base = 0
}

// CopyBandwidth measures device-to-device copy bandwidth: iters copies of
// a buffer of bytes, timed from the host around a synchronised stream, in
// bytes moved (read + written) per second. The peer number for the
// decode kernels' napkin math.
func (b *Backend) CopyBandwidth(bytes, iters int) (float64, error) {
	defer b.enter("CopyBandwidth")()
	src, err := cu.MemAlloc(int64(bytes))
	if err != nil {
		return 0, err
	}
	defer cu.MemFree(src)
	dst, err := cu.MemAlloc(int64(bytes))
	if err != nil {
		return 0, err
	}
	defer cu.MemFree(dst)
	if err := cu.MemcpyDtoDAsync(dst, src, int64(bytes), b.stream); err != nil { // warm up
		return 0, err
	}
	if err := b.stream.Synchronize(); err != nil {
		return 0, err
	}
	start := time.Now()
	for range iters {
		if err := cu.MemcpyDtoDAsync(dst, src, int64(bytes), b.stream); err != nil {
			return 0, err
		}
	}
	if err := b.stream.Synchronize(); err != nil {
		return 0, err
	}
	return 2 * float64(bytes) * float64(iters) / time.Since(start).Seconds(), nil
}
