// Package cpu is the fast CPU implementation of kernels.Backend: ops are
// split by rows (or tokens, or (token, head) pairs) across a persistent
// worker pool, weights are read once per call for every token of a batch,
// and the hot loops run in AVX2/FMA assembly where the CPU has it (pure Go
// otherwise, or always with the purego build tag).
//
// Every op is tested against kernels/ref, the specification, by the
// acceptance suite kernels/kerneltest.
//
// Its memory is the host's (kernels.HostMemory): a Buf's Host slice is the
// data, Write and Read are copies, and Upload returns the weight itself.
//
// Shapes are fixed at load time, so ops check them cheaply on the calling
// goroutine and panic with a clear message on a mismatch (a programming
// error, never bad user input); weights must pass kernels.CheckMatrix.
package cpu

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/parrot-llm/parrot/kernels"
)

// Backend runs ops on a fixed pool of goroutines. Ops may be called from
// several goroutines; they run one at a time.
type Backend struct {
	kernels.HostMemory // activations are Go slices: Alloc is make, Write/Read copy

	mu          sync.Mutex
	pool        *pool
	threads     int
	simd        bool        // use the AVX2/FMA kernels
	vnni        bool        // and the AVX-512 VNNI ones for NF4 × int8 (the CPU has them)
	scratch     [][]float32 // [workers][...] per-worker space, grown on demand
	gemm        []gemmBuf   // [workers] space for the packed GEMM
	xperm       []float32   // [T, Cols] activations permuted for the NF4 planes kernels
	int8Act     bool        // NF4 decode products take int8 activations (SetInt8Activations)
	int8Prefill bool        // and NF4 prefill products (SetInt8Prefill)
	xq          []int8      // [T, Cols] quantized activations for them
	xd          []float32   // [T, Cols/64] and their scales
	xv          []byte      // [T, Cols/64, 96] the activations in the VNNI kernels' layout
	xd8         []float32   // [T/8, Cols/64, 8] their scales for the 8-token VNNI kernel
	panelGroups panelGroups // the activations in the NF4 panel kernels' layout
	bf16x       []float32   // [G, Cols, 12] the activations in the bf16 panel kernels' layout
	loraF32     bool        // new LoRA stacks store float32, not bfloat16 (SetLoRAFloat32)
	kvBF16      bool        // new KV caches store bfloat16 (SetKVBF16)

	loraGroups []loraGroup // a LoRA op's tokens grouped by slot

	// One preallocated job per op, reused under mu, so that dispatching
	// work to the pool does not allocate.
	nf4       nf4Job
	panel     panelJob
	bf16Panel bf16PanelJob
	f32       f32Job
	stream    streamJob
	attn      attnJob
	norm      normJob
	rope      ropeJob
	elt       eltJob

	loraShrink loraShrinkJob
	loraExpand loraExpandJob
}

var _ kernels.Backend = (*Backend)(nil)

// New starts a backend with threads workers (the caller's goroutine
// included); threads <= 0 means runtime.NumCPU(). Close stops the workers.
func New(threads int) *Backend {
	return newBackend(threads, haveSIMD())
}

func newBackend(threads int, simd bool) *Backend {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	b := &Backend{
		pool:    newPool(threads - 1),
		threads: threads,
		simd:    simd,
		vnni:    simd && haveVNNI(),
		scratch: make([][]float32, threads),
		gemm:    make([]gemmBuf, threads),
	}
	// A backend dropped without Close still lets its workers exit.
	runtime.AddCleanup(b, func(p *pool) { p.close() }, b.pool)
	return b
}

// SetInt8Activations chooses how NF4 and Q8 products of decode-sized
// batches (T <= 8 tokens, rows of whole 64-element blocks) compute: on,
// each token's activations are quantized to int8 per block and multiplied
// by the int8 codes or weights in integers (kernels/ref.MatMulNF4Int8,
// within ref.Int8Bound of the exact product, and ref.MatMulQ8Int8), which
// reads the weights at memory speed; off (the default), in float32, exactly
// as kernels/ref.MatMul. Prefill and training batches always compute in
// float32, and so do BF16 and F32 weights.
func (b *Backend) SetInt8Activations(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.int8Act = on
}

// SetInt8Prefill is SetInt8Activations for NF4 products of larger batches
// (prefill, batched decode beyond 8 tokens): on, they quantize their
// activations the same way and compute kernels/ref.MatMulNF4Int8 (on
// panels, see Upload, where the CPU has AVX-512 VNNI); off (the default),
// in float32 as kernels/ref.MatMul.
func (b *Backend) SetInt8Prefill(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.int8Prefill = on
}

// Name returns "cpu", or "cpu-avx2" when the assembly kernels are in use
// ("cpu-avx2-vnni" with the AVX-512 VNNI ones too).
func (b *Backend) Name() string {
	switch {
	case b.vnni:
		return "cpu-avx2-vnni"
	case b.simd:
		return "cpu-avx2"
	}
	return "cpu"
}

// Upload returns w itself once it passes kernels.CheckMatrix: the CPU
// computes on the host copy. The exception is serve's configuration on a
// CPU with AVX-512 VNNI: int8 NF4 products for decode and prefill
// (SetInt8Activations, SetInt8Prefill, set before loading). There an NF4
// weight of whole 16-row panels and whole blocks is returned repacked into
// panels (nf4panel.go), and a bfloat16 one of whole panels likewise
// (bf16panel.go): the same values reordered, which the caller keeps
// instead of its copy.
func (b *Backend) Upload(w kernels.Matrix) (kernels.Matrix, error) { return b.upload(w, false) }

// UploadOwned is Upload for a caller that drops w (kernels.OwnedUploader):
// panels are reordered in w's own buffers, so loading a model never holds
// two copies of a weight.
func (b *Backend) UploadOwned(w kernels.Matrix) (kernels.Matrix, error) { return b.upload(w, true) }

func (b *Backend) upload(w kernels.Matrix, inPlace bool) (kernels.Matrix, error) {
	w, err := kernels.HostUpload(b, w)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	repack := b.vnni && b.int8Act && b.int8Prefill
	b.mu.Unlock()
	if !repack {
		return w, nil
	}
	forEach := func(n int, f func(lo, hi int)) { b.parallelFor(n, 16, f) }
	switch m := w.(type) {
	case *kernels.NF4Matrix:
		if panelable(m) {
			return repackNF4(m, inPlace, forEach), nil
		}
	case *kernels.BF16Matrix:
		if m.Rows%panelRows == 0 {
			return repackBF16(m, inPlace, forEach), nil
		}
	}
	return w, nil
}

// host and hostInts unwrap a handle at an op's entry; a Buf of device memory
// (another backend's) panics, naming the op.
func host(op string, v kernels.Buf) []float32 {
	if h := v.Host(); h != nil || v.Len() == 0 {
		return h
	}
	panic(fmt.Sprintf("kernels/cpu: %s: a Buf of device memory (%d floats) handed to the CPU backend", op, v.Len()))
}

func hostInts(op string, v kernels.IntBuf) []int32 {
	if h := v.Host(); h != nil || v.Len() == 0 {
		return h
	}
	panic(fmt.Sprintf("kernels/cpu: %s: an IntBuf of device memory (%d values) handed to the CPU backend", op, v.Len()))
}

// Threads returns the number of workers ops are split across.
func (b *Backend) Threads() int { return b.threads }

// Close stops the worker goroutines. Ops still work afterwards, on the
// calling goroutine alone. Close is idempotent.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pool.close()
}

// SupportsMatrix reports whether MatMul and Embed accept w: *F32Matrix,
// *NF4Matrix, *BF16Matrix and *Q8Matrix, and what Upload returns.
func (b *Backend) SupportsMatrix(w kernels.Matrix) bool {
	switch w.(type) {
	case *kernels.F32Matrix, *kernels.NF4Matrix, *kernels.BF16Matrix, *kernels.Q8Matrix, *nf4Panels, *bf16Panels:
		return true
	}
	return false
}

// reserve makes every worker's scratch hold at least n floats. It allocates
// only when a larger size than ever before is needed.
func (b *Backend) reserve(n int) {
	for w := range b.scratch {
		if len(b.scratch[w]) < n {
			b.scratch[w] = make([]float32, n)
		}
	}
}

// reserveGemm readies every worker's packed-GEMM space for items of up to
// nr rows.
func (b *Backend) reserveGemm(nr int) {
	for w := range b.gemm {
		b.gemm[w].reserve(nr)
	}
}

func need(op string, what string, have, want int) {
	if have < want {
		panic(fmt.Sprintf("kernels/cpu: %s: %s has %d elements, need %d", op, what, have, want))
	}
}

func checkNF4(op string, m *kernels.NF4Matrix) {
	n := m.Rows * m.Cols
	need(op, "NF4 packed", len(m.Packed), (n+1)/2)
	need(op, "NF4 absmax", len(m.Absmax), (n+kernels.NF4BlockSize-1)/kernels.NF4BlockSize)
}

func unsupported(op string, w kernels.Matrix) string {
	return fmt.Sprintf("kernels/cpu: %s: unsupported matrix type %T (weights must pass kernels.CheckMatrix at load)", op, w)
}

// MatMul: y[t,:] = W·x[t,:] for t in [0,T). x [T, Cols], y [T, Rows].
func (b *Backend) MatMul(y, x kernels.Buf, w kernels.Matrix, T int) {
	b.matMul(host("MatMul", y), host("MatMul", x), w, T)
}

func (b *Backend) matMul(y, x []float32, w kernels.Matrix, T int) {
	if T <= 0 {
		return
	}
	rows, cols := w.Shape()
	need("MatMul", "x", len(x), T*cols)
	need("MatMul", "y", len(y), T*rows)
	if rows <= 0 || cols <= 0 {
		clear(y[:T*max(rows, 0)])
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch m := w.(type) {
	case *kernels.NF4Matrix:
		checkNF4("MatMul", m)
		b.matMulNF4(y, x, m, T)
	case *nf4Panels:
		checkPanels("MatMul", m)
		b.matMulPanels(y, x, m, T)
	case *bf16Panels:
		checkBF16Panels("MatMul", m)
		b.matMulBF16Panels(y, x, m, T)
	case *kernels.F32Matrix:
		need("MatMul", "F32 weight", len(m.Data), rows*cols)
		b.matMulF32(y, x, m, T)
	case *kernels.BF16Matrix:
		checkBF16("MatMul", m)
		b.matMulStream(y, x, m, nil, T)
	case *kernels.Q8Matrix:
		checkQ8("MatMul", m)
		b.matMulStream(y, x, nil, m, T)
	default:
		panic(unsupported("MatMul", w))
	}
}

// Embed: out[t,:] = row ids[t] of table. out [ids.Len(), Cols].
func (b *Backend) Embed(out kernels.Buf, table kernels.Matrix, ids kernels.IntBuf) {
	b.embed(host("Embed", out), table, hostInts("Embed", ids))
}

func (b *Backend) embed(out []float32, table kernels.Matrix, ids []int32) {
	rows, cols := table.Shape()
	need("Embed", "out", len(out), len(ids)*cols)
	for _, id := range ids {
		if id < 0 || int(id) >= rows {
			panic(fmt.Sprintf("kernels/cpu: Embed: token id %d out of range [0,%d)", id, rows))
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch m := table.(type) {
	case *kernels.F32Matrix:
		need("Embed", "F32 table", len(m.Data), rows*cols)
		for t, id := range ids {
			copy(out[t*cols:(t+1)*cols], m.Data[int(id)*cols:(int(id)+1)*cols])
		}
	case *kernels.NF4Matrix:
		checkNF4("Embed", m)
		b.nf4.setCode(&m.Code)
		for t, id := range ids {
			dequantRow(out[t*cols:(t+1)*cols], m, &b.nf4.lut, int(id), b.simd)
		}
	case *nf4Panels:
		checkPanels("Embed", m)
		for t, id := range ids {
			m.dequantRows(out[t*cols:(t+1)*cols], int(id), 1)
		}
	case *bf16Panels:
		checkBF16Panels("Embed", m)
		for t, id := range ids {
			m.DecodeRow(int(id), out[t*cols:(t+1)*cols])
		}
	case *kernels.BF16Matrix:
		checkBF16("Embed", m)
		for t, id := range ids {
			decodeBF16(out[t*cols:(t+1)*cols], m.Data[int(id)*cols:(int(id)+1)*cols], b.simd)
		}
	case *kernels.Q8Matrix:
		checkQ8("Embed", m)
		for t, id := range ids {
			r := int(id)
			decodeQ8(out[t*cols:(t+1)*cols], m.Q[r*cols:(r+1)*cols], m.Scale[r*cols/q8Block:(r+1)*cols/q8Block], b.simd)
		}
	default:
		panic(unsupported("Embed", table))
	}
}

// RMSNorm: out[t,:] = x[t,:] / sqrt(mean(x[t,:]²) + eps) * weight.
func (b *Backend) RMSNorm(outb, xb, wb kernels.Buf, eps float32) {
	out, x, weight := host("RMSNorm", outb), host("RMSNorm", xb), host("RMSNorm", wb)
	n := len(weight)
	if n == 0 {
		return
	}
	T := len(x) / n
	need("RMSNorm", "out", len(out), T*n)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.norm = normJob{out: out, x: x, weight: weight, eps: eps}
	b.pool.parallel(&b.norm, T, max(1, eltGrain/n))
	b.norm = normJob{}
}

// RoPE rotates each head of each token by its position, pairs (x[i], x[i+headDim/2]).
// x [pos.Len(), nHeads*headDim], invFreq [headDim/2].
func (b *Backend) RoPE(x kernels.Buf, pos kernels.IntBuf, nHeads, headDim int, invFreq kernels.Buf) {
	b.applyRoPE(host("RoPE", x), hostInts("RoPE", pos), nHeads, headDim, host("RoPE", invFreq))
}

func (b *Backend) applyRoPE(x []float32, pos []int32, nHeads, headDim int, invFreq []float32) {
	half := headDim / 2
	need("RoPE", "x", len(x), len(pos)*nHeads*headDim)
	need("RoPE", "invFreq", len(invFreq), half)
	if half == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reserve(2 * half)
	b.rope = ropeJob{x: x, pos: pos, nHeads: nHeads, headDim: headDim, invFreq: invFreq, scratch: b.scratch}
	b.pool.parallel(&b.rope, len(pos), max(1, eltGrain/(nHeads*headDim)))
	b.rope = ropeJob{}
}

// SiLUMul: out[i] = silu(gate[i]) * up[i]; out may alias gate.
func (b *Backend) SiLUMul(outb, gateb, upb kernels.Buf) {
	out, gate, up := host("SiLUMul", outb), host("SiLUMul", gateb), host("SiLUMul", upb)
	need("SiLUMul", "up", len(up), len(gate))
	need("SiLUMul", "out", len(out), len(gate))
	b.elementwise(opSiLUMul, out, gate, up)
}

// Add: dst[i] += src[i].
func (b *Backend) Add(dst, src kernels.Buf) {
	b.add(host("Add", dst), host("Add", src))
}

func (b *Backend) add(dst, src []float32) {
	need("Add", "src", len(src), len(dst))
	b.elementwise(opAdd, dst, dst, src)
}

func (b *Backend) elementwise(op eltOp, out, a, c []float32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.elt = eltJob{op: op, out: out, a: a, b: c}
	b.pool.parallel(&b.elt, len(a), eltGrain)
	b.elt = eltJob{}
}
