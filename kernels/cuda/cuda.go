//go:build cuda

package cuda

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"runtime"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/parrot-llm/parrot/kernels"
)

//go:embed ptx/*.ptx
var ptxFiles embed.FS

// minMajor is the oldest compute capability the PTX targets (compute_80).
const minMajor = 8

// Backend runs the kernels seam's ops on one NVIDIA GPU: one context (the
// device's primary context), one stream, the PTX modules of src/ loaded
// once. See the package comment for how calls reach the context's thread.
type Backend struct {
	engine // the ops, on this Backend as their device

	cuDev  cu.Device
	ctx    cu.CUContext
	stream cu.Stream
	mods   []cu.Module
	fns    map[string]kernel
	name   string
	sms    int

	errMu sync.Mutex
	err   error // the first failed launch or copy

	scratch  cu.DevicePtr // grown on demand by ops that need temporary space
	scratchN int          // floats
}

// kernel is one entry point of the embedded PTX and its parameter types.
type kernel struct {
	fn  cu.Function
	sig string
}

var (
	_ kernels.Backend         = (*Backend)(nil)
	_ kernels.LoRABackend     = (*Backend)(nil)
	_ kernels.TrainBackend    = (*Backend)(nil)
	_ kernels.MatrixSupporter = (*Backend)(nil)
	_ kernels.Matrix          = (*Matrix)(nil)
)

// Options tune a Backend.
type Options struct {
	// TensorCores runs the prefill and training GEMMs (MatMul with T > 8,
	// MatMulT) on tensor cores, 3xTF32 (fp32-level accuracy), instead of
	// the fp32 shared-memory tile. Off by default until a GPU run of
	// kerneltest has passed with it (scripts/gpu-check.sh checks both).
	TensorCores bool
}

// New starts the backend on device ordinal (0 for the first GPU) with the
// default Options. It fails with a plain error when the driver reports no
// device, the device is older than compute capability 8.0, or a context,
// stream or module cannot be made.
func New(ordinal int) (*Backend, error) { return NewWithOptions(ordinal, Options{}) }

// NewWithOptions is New with o.
func NewWithOptions(ordinal int, o Options) (*Backend, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("cuda: counting devices: %w (is the NVIDIA driver loaded?)", err)
	}
	if n == 0 {
		return nil, errors.New("cuda: the driver reports no CUDA device")
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("cuda: device %d requested, the driver reports %d", ordinal, n)
	}
	dev, err := cu.GetDevice(ordinal)
	if err != nil {
		return nil, fmt.Errorf("cuda: device %d: %w", ordinal, err)
	}
	b := &Backend{cuDev: dev, fns: map[string]kernel{}}
	b.engine.dev = b
	b.engine.tensorCores = o.TensorCores
	name, err := dev.Name()
	if err != nil {
		return nil, fmt.Errorf("cuda: device %d name: %w", ordinal, err)
	}
	major, err := dev.Attribute(cu.ComputeCapabilityMajor)
	if err != nil {
		return nil, fmt.Errorf("cuda: %s: compute capability: %w", name, err)
	}
	minor, _ := dev.Attribute(cu.ComputeCapabilityMinor)
	if major < minMajor {
		return nil, fmt.Errorf("cuda: %s has compute capability %d.%d; the kernels need %d.0 or newer", name, major, minor, minMajor)
	}
	if b.sms, err = dev.Attribute(cu.MultiprocessorCount); err != nil {
		return nil, fmt.Errorf("cuda: %s: multiprocessor count: %w", name, err)
	}
	b.name = fmt.Sprintf("cuda (%s, sm_%d%d)", name, major, minor)
	if o.TensorCores {
		b.name += " tc"
	}
	if b.ctx, err = dev.RetainPrimaryCtx(); err != nil {
		return nil, fmt.Errorf("cuda: %s: primary context: %w", name, err)
	}
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		dev.ReleasePrimaryCtx()
		return nil, fmt.Errorf("cuda: %s: making the context current: %w", name, err)
	}
	if b.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		dev.ReleasePrimaryCtx()
		return nil, fmt.Errorf("cuda: %s: stream: %w", name, err)
	}
	if err := b.loadModules(); err != nil {
		b.closeLocked()
		return nil, err
	}
	return b, nil
}

// loadModules JIT-loads every embedded PTX file and looks up its entry
// points (the names after ".entry" in the PTX).
func (b *Backend) loadModules() error {
	files, err := fs.Glob(ptxFiles, "ptx/*.ptx")
	if err != nil || len(files) == 0 {
		return fmt.Errorf("cuda: no embedded PTX (%v)", err)
	}
	for _, f := range files {
		src, err := ptxFiles.ReadFile(f)
		if err != nil {
			return err
		}
		mod, err := cu.LoadData(string(src))
		if err != nil {
			return fmt.Errorf("cuda: loading %s: %w", path.Base(f), err)
		}
		b.mods = append(b.mods, mod)
		sigs, err := ptxSignatures(string(src))
		if err != nil {
			return fmt.Errorf("cuda: %s: %w", path.Base(f), err)
		}
		for name, sig := range sigs {
			fn, err := mod.Function(name)
			if err != nil {
				return fmt.Errorf("cuda: %s: kernel %s: %w", path.Base(f), name, err)
			}
			b.fns[name] = kernel{fn, sig}
		}
	}
	return nil
}

// Name says which device this is.
func (b *Backend) Name() string { return b.name }

// SMs is the device's multiprocessor count.
func (b *Backend) SMs() int { return b.sms }

func (b *Backend) numSMs() int { return b.sms }

// Close waits for queued work and releases the stream, the modules, the
// scratch space and the context. Buffers and weights must be freed first.
func (b *Backend) Close() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if cu.SetCurrentContext(b.ctx) == nil {
		b.closeLocked()
	}
}

func (b *Backend) closeLocked() {
	b.stream.Synchronize()
	if b.scratch != 0 {
		cu.MemFree(b.scratch)
		b.scratch, b.scratchN = 0, 0
	}
	for _, m := range b.mods {
		m.Unload()
	}
	b.mods = nil
	b.stream.Destroy()
	b.cuDev.ReleasePrimaryCtx()
}

// Err returns the first error of a launch or copy since New, if any.
func (b *Backend) Err() error {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

func (b *Backend) fail(op string, err error) {
	if err == nil {
		return
	}
	b.errMu.Lock()
	if b.err == nil {
		b.err = fmt.Errorf("cuda: %s: %w", op, err)
	}
	b.errMu.Unlock()
}

// enter pins the calling goroutine to its thread and makes the context
// current there; the returned function undoes the pinning.
func (b *Backend) enter(op string) func() {
	runtime.LockOSThread()
	b.fail(op, cu.SetCurrentContext(b.ctx))
	return runtime.UnlockOSThread
}

// launch queues kernel name on the stream, once its arguments (argPtr,
// argInt, argF32) match the kernel's PTX parameter types.
func (b *Backend) launch(name string, grid, block dim3, shmem int, args ...arg) {
	k, ok := b.fns[name]
	if !ok {
		panic(fmt.Sprintf("cuda: no kernel %q in the embedded PTX", name))
	}
	if !sigMatches(k.sig, args) {
		panic(fmt.Sprintf("cuda: kernel %s takes (%s), launched with (%s)", name, k.sig, argTypes(args)))
	}
	vals := make([]uint64, len(args))
	ptrs := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		vals[i] = a.v
		ptrs[i] = unsafe.Pointer(&vals[i])
	}
	b.fail(name, k.fn.Launch(grid.x, max(grid.y, 1), max(grid.z, 1), block.x, max(block.y, 1), max(block.z, 1), shmem, b.stream, ptrs))
}

// scratchBuf returns at least n floats of device scratch, valid until the
// next call (ops are ordered on the one stream, so a later op's use of the
// scratch runs after an earlier op's). Callers hold the engine's scratchMu
// from the call until their kernels are queued.
func (b *Backend) scratchBuf(n int) uintptr {
	if n <= b.scratchN {
		return uintptr(b.scratch)
	}
	if b.scratch != 0 {
		b.stream.Synchronize()
		cu.MemFree(b.scratch)
		b.scratch, b.scratchN = 0, 0
	}
	p, err := cu.MemAlloc(int64(4 * n))
	if err != nil {
		panic(fmt.Sprintf("cuda: scratch of %d floats: %v", n, err))
	}
	b.scratch, b.scratchN = p, n
	return uintptr(p)
}

// Sync waits for every queued op and returns the first error so far.
func (b *Backend) Sync() error {
	defer b.enter("Sync")()
	b.fail("Sync", b.stream.Synchronize())
	return b.Err()
}
