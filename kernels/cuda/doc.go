// Package cuda is the NVIDIA backend of the kernels seam, on the CUDA
// driver API through gorgonia.org/cu. It is built only with the cuda tag
// (go build -tags cuda); without it the package holds just the host-side
// logic (launch geometry, kernel choice, the layout of uploaded weights,
// argument packing), which is pure Go and tested on any machine.
//
// The kernels are CUDA C in src/, one op per file, compiled to PTX for
// compute capability 8.0 by go generate (gen.sh, nvcc from CUDA 11.8) and
// committed in ptx/, so a build needs no nvcc: the PTX is embedded and the
// driver JIT-compiles it for the GPU at hand (Ampere, Hopper) when the
// backend starts.
//
// Every op of kernels.Backend, kernels.LoRABackend and kernels.TrainBackend
// has a kernel. Small-T MatMul is a dequantizing GEMV (vectorised loads,
// split-K across a block's warps, one or four rows per block); larger T and
// MatMulT are a shared-memory tiled fp32 GEMM, or, with
// Options.TensorCores, the same tile on tensor cores with the 3xTF32 split
// (fp32-level accuracy, so kerneltest's tolerances hold; plain bf16 mma
// would not meet them). Backend.Capture records a sequence of ops as a
// CUDA graph (a small cgo shim: cu lacks stream capture) that Graph.Launch
// replays for one launch's cost; the model does not use it yet (its
// Forward interleaves the step's Writes with the ops). PagedAttention
// splits long rows across warps (flash-decoding) when one warp per row
// would leave the GPU idle. Not yet here: sampling on the device.
//
// # Threads and the context
//
// A CUDA context is current per OS thread. Rather than funnel every call
// through one locked worker goroutine (a channel round trip and a thread
// wake-up per op, hundreds per decode step), every entry point of the
// backend locks its goroutine to its OS thread for the duration of the
// call and makes the backend's context current there (cuCtxSetCurrent is
// a thread-local store in the driver), then unlocks. So any goroutine may
// call the backend, calls from several goroutines are safe (the driver API
// is thread-safe), and a goroutine that is already locked (a scheduler
// loop that called runtime.LockOSThread) pays nothing extra. All work goes
// to one stream, in call order; only Read and ReadInt wait for it.
//
// # Errors
//
// New returns an error when no device is usable. The ops have no error
// path in kernels.Backend: a failed launch or copy is recorded (Err), and
// the next Read or ReadInt, the step's sync point, panics with it rather
// than hand back numbers computed after a failure. Handing an op a weight
// that did not come from this backend's Upload, or shapes that do not fit,
// panics at once, as the host backends do.
//
// gorgonia.org/cu calls cuInit in its package initializer and exits the
// process when it fails, so a binary built with -tags cuda needs the
// NVIDIA driver's libcuda.so.1 to start at all, and exits with cu's message
// on a machine whose driver sees no GPU; New's errors cover the rest (no
// device, compute capability below 8.0, a failed context or module load).
package cuda

//go:generate bash gen.sh
