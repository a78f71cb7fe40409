package kernels

import "fmt"

// HostMemory is the Memory of the CPU backends (ggml's CPU buffer type):
// allocations are Go slices, Write and Read are copies, Free leaves the
// slice to the garbage collector. A host backend embeds it and adds Upload
// (HostUpload), which needs the backend itself for CheckMatrix.
type HostMemory struct{}

// Alloc returns n zeroed floats.
func (HostMemory) Alloc(n int) (Buf, error) {
	if n < 0 {
		return Buf{}, fmt.Errorf("kernels: Alloc of %d floats", n)
	}
	return HostBuf(make([]float32, n)), nil
}

// AllocInt returns n zeroed int32 values.
func (HostMemory) AllocInt(n int) (IntBuf, error) {
	if n < 0 {
		return IntBuf{}, fmt.Errorf("kernels: AllocInt of %d values", n)
	}
	return HostIntBuf(make([]int32, n)), nil
}

// Free does nothing: the slice is garbage collected once unreferenced.
func (HostMemory) Free(Buf) {}

// FreeInt does nothing.
func (HostMemory) FreeInt(IntBuf) {}

// Write copies src into the first len(src) values of dst.
func (HostMemory) Write(dst Buf, src []float32) {
	d := HostFloats("Write", dst)
	if len(src) > len(d) {
		panic(fmt.Sprintf("kernels: Write of %d values into a Buf of %d", len(src), len(d)))
	}
	copy(d, src)
}

// WriteInt copies src into the first len(src) values of dst.
func (HostMemory) WriteInt(dst IntBuf, src []int32) {
	d := HostInts("WriteInt", dst)
	if len(src) > len(d) {
		panic(fmt.Sprintf("kernels: WriteInt of %d values into an IntBuf of %d", len(src), len(d)))
	}
	copy(d, src)
}

// Read copies the first len(dst) values of src into dst.
func (HostMemory) Read(dst []float32, src Buf) {
	s := HostFloats("Read", src)
	if len(dst) > len(s) {
		panic(fmt.Sprintf("kernels: Read of %d values from a Buf of %d", len(dst), len(s)))
	}
	copy(dst, s)
}

// ReadInt copies the first len(dst) values of src into dst.
func (HostMemory) ReadInt(dst []int32, src IntBuf) {
	s := HostInts("ReadInt", src)
	if len(dst) > len(s) {
		panic(fmt.Sprintf("kernels: ReadInt of %d values from an IntBuf of %d", len(dst), len(s)))
	}
	copy(dst, s)
}

// HostUpload is Upload for a host backend b: w itself, once it passes
// CheckMatrix(b, w).
func HostUpload(b Backend, w Matrix) (Matrix, error) {
	if err := CheckMatrix(b, w); err != nil {
		return nil, err
	}
	return w, nil
}

// HostFloats returns the host slice of b for a host backend's op. A Buf of
// device memory cannot be touched by host code: handing one to a host
// backend is a programming error, and HostFloats panics naming op.
func HostFloats(op string, b Buf) []float32 {
	if b.host == nil && b.n > 0 {
		panic(fmt.Sprintf("kernels: %s: a Buf of device memory (%d floats at %#x) handed to a host backend", op, b.n, b.dev))
	}
	return b.host
}

// HostInts is HostFloats for an IntBuf.
func HostInts(op string, b IntBuf) []int32 {
	if b.host == nil && b.n > 0 {
		panic(fmt.Sprintf("kernels: %s: an IntBuf of device memory (%d values at %#x) handed to a host backend", op, b.n, b.dev))
	}
	return b.host
}
