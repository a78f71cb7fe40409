package kernels

import "fmt"

// Handle is a view of n values of backend-owned storage: a host slice on
// the CPU backends, a device address on a GPU backend (ggml's
// ggml_backend_buffer plus a tensor's data offset). A handle is a small
// value; Slice views part of it without copying or allocating, so model
// code passes rows and layers of one allocation to ops.
type Handle[T float32 | int32] struct {
	host []T     // host memory; nil for device memory
	dev  uintptr // device address of element 0, when host is nil
	n    int
}

// Buf holds float32 values: activations, KV blocks, LoRA slots, norms.
type Buf = Handle[float32]

// IntBuf holds int32 values: token ids, positions, LoRA slots, KV slot
// mappings and block tables, the per-step batch metadata (punica's
// update_metadata, vLLM's attention metadata).
type IntBuf = Handle[int32]

// HostBuf and HostIntBuf wrap host memory (what the CPU backends allocate,
// and what tests hand them directly).
func HostBuf(v []float32) Buf     { return Buf{host: v, n: len(v)} }
func HostIntBuf(v []int32) IntBuf { return IntBuf{host: v, n: len(v)} }

// DeviceBuf and DeviceIntBuf wrap n values at a device address.
func DeviceBuf(addr uintptr, n int) Buf       { return Buf{dev: addr, n: n} }
func DeviceIntBuf(addr uintptr, n int) IntBuf { return IntBuf{dev: addr, n: n} }

// Len is the number of values.
func (b Handle[T]) Len() int { return b.n }

// Slice views elements [lo, hi).
func (b Handle[T]) Slice(lo, hi int) Handle[T] {
	if lo < 0 || hi < lo || hi > b.n {
		panic(fmt.Sprintf("kernels: Slice(%d, %d) of %d values", lo, hi, b.n))
	}
	if b.host != nil {
		return Handle[T]{host: b.host[lo:hi:hi], n: hi - lo}
	}
	return Handle[T]{dev: b.dev + uintptr(lo)*4, n: hi - lo} // both element types are 4 bytes
}

// Host returns the host slice (len Len), or nil for device memory.
func (b Handle[T]) Host() []T { return b.host }

// Device returns the device address of element 0 (0 for host memory).
func (b Handle[T]) Device() uintptr { return b.dev }

// Memory is the storage half of the seam (ggml-backend's buffer API: alloc,
// set, get): the model allocates activations, KV blocks and LoRA slots here,
// uploads its weights once, writes each step's inputs and metadata, and
// reads back only what the host needs (logits, sampled ids).
type Memory interface {
	// Alloc returns n zeroed float32 values; an error when the backend's
	// memory is exhausted.
	Alloc(n int) (Buf, error)
	// AllocInt returns n zeroed int32 values.
	AllocInt(n int) (IntBuf, error)
	// Free releases an allocation (a whole Buf returned by Alloc, not a
	// Slice of one); the handle must not be used afterwards.
	Free(b Buf)
	FreeInt(b IntBuf)
	// Write copies host values into dst: dst[i] = src[i] for i < len(src)
	// (len(src) <= dst.Len()).
	Write(dst Buf, src []float32)
	WriteInt(dst IntBuf, src []int32)
	// Read copies dst[i] = src[i] for i < len(dst) (len(dst) <= src.Len())
	// once every op queued before it has finished: the one sync point.
	Read(dst []float32, src Buf)
	ReadInt(dst []int32, src IntBuf)
	// Upload returns the backend's copy of a frozen weight (w itself on the
	// CPU backends, or a repacked copy; a device backend copies it and
	// drops the host data). The result is what MatMul and Embed take.
	Upload(w Matrix) (Matrix, error)
}

// OwnedUploader is implemented by backends that can take a weight over
// rather than copy it: UploadOwned is Upload for a caller that drops w,
// whose buffers the result may reuse (kernels/cpu reorders them in place).
type OwnedUploader interface {
	UploadOwned(w Matrix) (Matrix, error)
}

// UploadOwned uploads w, which the caller drops, with b's UploadOwned if
// it has one, else with Upload.
func UploadOwned(b Backend, w Matrix) (Matrix, error) {
	if o, ok := b.(OwnedUploader); ok {
		return o.UploadOwned(w)
	}
	return b.Upload(w)
}
