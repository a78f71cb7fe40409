package cuda

// Host-side logic of the backend that needs no GPU (and no cu): how an
// uploaded weight is laid out in device memory, which kernel runs a
// MatMul, launch geometry, and how kernel arguments are packed. The cuda
// build's ops call these; plan_test.go tests them everywhere.

import (
	"fmt"
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

// matKind is the weight kind of an uploaded matrix; its value is the KIND
// template argument of the kernels (src/common.cuh Weight<KIND>).
type matKind int

const (
	kindF32 matKind = iota
	kindNF4
	kindBF16
	kindQ8
)

func (k matKind) String() string {
	switch k {
	case kindF32:
		return "f32"
	case kindNF4:
		return "nf4"
	case kindBF16:
		return "bf16"
	case kindQ8:
		return "q8"
	}
	return fmt.Sprintf("matKind(%d)", int(k))
}

// weightAlign is the alignment of every part of an uploaded weight (what
// cuMemAlloc guarantees for the allocation itself): the GEMV's vectorised
// loads need 32 bytes at row starts when Cols % 8 == 0.
const weightAlign = 256

// matLayout places the parts of one weight in a single device allocation:
// data (f32 values, NF4 packed bytes, bf16 bit patterns or Q8 codes),
// scale (NF4 absmax or Q8 scales; none for f32 and bf16) and code (the NF4
// code book, 16 floats), each at a weightAlign-aligned byte offset.
type matLayout struct {
	kind             matKind
	rows, cols       int
	data, dataBytes  int
	scale, scaleLen  int // scaleLen floats at byte offset scale
	code, codeLen    int // codeLen floats at byte offset code
	total            int // bytes to allocate
	elements, groups int // rows·cols, and the GEMV's groups of 8 per row (cols/8)
}

func alignUp(n, a int) int { return (n + a - 1) / a * a }

// layoutOf returns the device layout of w, which must pass
// kernels.CheckMatrix. Sizes beyond the kernels' 32-bit shape arguments
// are refused.
func layoutOf(w kernels.Matrix) (matLayout, error) {
	rows, cols := w.Shape()
	if rows <= 0 || cols <= 0 || rows > math.MaxInt32 || cols > math.MaxInt32 {
		return matLayout{}, fmt.Errorf("cuda: weight shape [%d,%d] out of range", rows, cols)
	}
	l := matLayout{rows: rows, cols: cols, elements: rows * cols, groups: cols / 8}
	n := l.elements
	switch w.(type) {
	case *kernels.F32Matrix:
		l.kind, l.dataBytes = kindF32, 4*n
	case *kernels.NF4Matrix:
		l.kind, l.dataBytes = kindNF4, (n+1)/2
		l.scaleLen = (n + kernels.NF4BlockSize - 1) / kernels.NF4BlockSize
		l.codeLen = 16
	case *kernels.BF16Matrix:
		l.kind, l.dataBytes = kindBF16, 2*n
	case *kernels.Q8Matrix:
		l.kind, l.dataBytes = kindQ8, n
		l.scaleLen = n / kernels.Q8BlockSize
	default:
		return matLayout{}, fmt.Errorf("cuda: unsupported matrix type %T", w)
	}
	off := alignUp(l.dataBytes, weightAlign)
	if l.scaleLen > 0 {
		l.scale = off
		off = alignUp(off+4*l.scaleLen, weightAlign)
	}
	if l.codeLen > 0 {
		l.code = off
		off = alignUp(off+4*l.codeLen, weightAlign)
	}
	l.total = off
	return l, nil
}

// matmulVariant is the kernel family of one MatMul call (src/matmul.cu).
type matmulVariant int

const (
	gemv8R1   matmulVariant = iota // T <= 8, vectorised, one row per block
	gemv8R4                        // T <= 8, vectorised, four rows per block
	gemvAny                        // T <= 8, any shape or alignment
	gemmTiled                      // T > 8
)

// gemvMaxT is the largest T the GEMV kernels take (GEMV_TMAX).
const gemvMaxT = 8

// chooseMatMul picks the MatMul kernel for T tokens of x (at device
// address xAddr) through a rows×cols weight on a GPU with sms
// multiprocessors. The vectorised GEMV reads groups of 8 elements with
// one load, which needs whole groups per row (cols % 8 == 0) and x rows
// 16-byte aligned; it takes four rows per block when that still leaves two
// blocks per SM, else one (a 512-row k_proj would otherwise fill a
// quarter of an H200).
func chooseMatMul(T, rows, cols int, xAddr uintptr, sms int) matmulVariant {
	switch {
	case T > gemvMaxT:
		return gemmTiled
	case cols%8 != 0 || xAddr%16 != 0:
		return gemvAny
	case (rows+3)/4 >= 2*sms:
		return gemv8R4
	}
	return gemv8R1
}

// matmulKernel is the PTX entry point of variant v for kind k.
func matmulKernel(k matKind, v matmulVariant) string {
	switch v {
	case gemv8R1:
		return "matmul_gemv8_" + k.String() + "_r1"
	case gemv8R4:
		return "matmul_gemv8_" + k.String() + "_r4"
	case gemvAny:
		return "matmul_gemv_" + k.String()
	}
	return "matmul_gemm_" + k.String()
}

// Kernel names by weight kind (and MatMul variant), built once so that an
// op does not format strings.
var (
	matmulNames  [4][4]string // [matKind][matmulVariant]
	matmulTNames [4]string    // MatMulT: the transposed GEMM
	matmulTC     [4]string    // MatMul's GEMM on tensor cores (3xTF32)
	matmulTTC    [4]string    // MatMulT's on tensor cores
	embedNames   [4]string
)

func init() {
	for k := kindF32; k <= kindQ8; k++ {
		for v := gemv8R1; v <= gemmTiled; v++ {
			matmulNames[k][v] = matmulKernel(k, v)
		}
		matmulTNames[k] = "matmul_t_" + k.String()
		matmulTC[k] = "matmul_tc_" + k.String()
		matmulTTC[k] = "matmul_t_tc_" + k.String()
		embedNames[k] = "embed_" + k.String()
	}
}

// dim3 is a launch's grid or block size.
type dim3 struct{ x, y, z int }

// Launch geometry constants, matching the kernels' sources.
const (
	threads     = 256 // elementwise, row-per-block, GEMV and fp32 GEMM blocks
	tcThreads   = 128 // the tensor-core GEMM's four warps
	gemmTile    = 64  // GEMM_BM = GEMM_BN
	attnWarps   = 4   // PA_WARPS, AF_WARPS, AB_WARPS
	warpsPer256 = threads / 32
	maxGrid     = 1 << 16 // grid-stride kernels need no more blocks than this
)

// matmulGrid is the grid of variant v for y [T, rows] (or, for the
// transposed GEMM of MatMulT, n = cols outputs per token).
func matmulGrid(v matmulVariant, T, n int) dim3 {
	switch v {
	case gemv8R4:
		return dim3{(n + 3) / 4, 1, 1}
	case gemv8R1, gemvAny:
		return dim3{n, 1, 1}
	}
	return dim3{(n + gemmTile - 1) / gemmTile, (T + gemmTile - 1) / gemmTile, 1}
}

// strideGrid is the grid of a grid-stride kernel over n elements.
func strideGrid(n int) dim3 {
	return dim3{max(1, min((n+threads-1)/threads, maxGrid)), 1, 1}
}

// Flash-decoding: attnSplits decides how many warps share one (token,
// head) row of PagedAttention. Rows are split only when the unsplit grid
// (one warp per row) would not fill the GPU (fewer than 4 warps per SM)
// and the context is long enough (MaxLen >= splitMinLen) for the extra
// combine launch to pay; each split then takes L positions, a multiple of
// 32 (one key per lane per step), and S·L >= maxLen.
const splitMinLen = 128

func attnSplits(T, nHeads, maxLen, sms int) (S, L int) {
	rows := T * nHeads
	if maxLen < splitMinLen || rows <= 0 || rows >= 4*sms {
		return 1, 0
	}
	S = min((4*sms+rows-1)/rows, (maxLen+31)/32)
	L = ((maxLen+S-1)/S + 31) / 32 * 32
	S = (maxLen + L - 1) / L
	if S <= 1 {
		return 1, 0
	}
	return S, L
}

// blocksFor is the grid of ceil(n/per) blocks (n warps at per warps to a
// block, or n threads at per threads).
func blocksFor(n, per int) dim3 { return dim3{(n + per - 1) / per, 1, 1} }

// Kernel arguments: gorgonia.org/cu's Launch copies 8 bytes from every
// argument pointer into the parameter buffer, and cuLaunchKernel reads as
// many bytes as the kernel's parameter has (4 for int and float, 8 for a
// pointer), so every argument is a uint64 whose low bytes hold the value
// (x86-64 and arm64 are little-endian). Each also carries its PTX type,
// checked against the kernel's signature at every launch (ptxSignatures).

// arg is one kernel argument.
type arg struct {
	t byte // 'p' (.u64 pointer), 'i' (.u32/.s32 int), 'f' (.f32 float)
	v uint64
}

// argInt packs a 32-bit int parameter; a value outside int32 is a shape
// too large for the kernels, a programming error.
func argInt(v int) arg {
	if v < math.MinInt32 || v > math.MaxInt32 {
		panic(fmt.Sprintf("cuda: kernel argument %d does not fit in 32 bits", v))
	}
	return arg{'i', uint64(uint32(int32(v)))}
}

// argF32 packs a float parameter.
func argF32(f float32) arg { return arg{'f', uint64(math.Float32bits(f))} }

// argPtr packs a device pointer parameter (0 for a kernel's optional
// pointers, such as LoRA's slot array).
func argPtr(p uintptr) arg { return arg{'p', uint64(p)} }

// sigMatches reports whether args have the types of signature sig.
func sigMatches(sig string, args []arg) bool {
	if len(sig) != len(args) {
		return false
	}
	for i, a := range args {
		if sig[i] != a.t {
			return false
		}
	}
	return true
}

// argTypes is the signature string of args, as ptxSignatures writes it.
func argTypes(args []arg) string {
	b := make([]byte, len(args))
	for i, a := range args {
		b[i] = a.t
	}
	return string(b)
}
