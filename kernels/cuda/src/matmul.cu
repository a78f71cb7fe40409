// MatMul: y[t, r] = Σ_c W[r, c] · x[t, c] for t < T, with W frozen as F32,
// NF4 (bitsandbytes), BF16 or Q8. x [T, cols], y [T, rows].
//
// Three kernels per weight kind (KIND 0 f32, 1 nf4, 2 bf16, 3 q8):
//
// matmul_gemv8_<kind>_r<R> (decode: T <= 8, cols % 8 == 0, x 16-byte
//   aligned): a block of 256 threads owns R rows; its 8 warps split the
//   row's groups of 8 elements between them (split-K inside the block, so
//   even a 512-row projection fills the GPU), each lane decoding one group
//   of every row per step with one vectorised load (NF4 4 bytes, Q8 8,
//   BF16 16, F32 32) and reusing each float4 of x for all R rows and T
//   tokens (bitsandbytes' kgemm_4bit_inference_naive and llama.cpp's
//   mmvq do the same row-per-warp decode). Partial sums meet in shared
//   memory in a fixed order.
//   Napkin math, Llama-3.2-1B NF4 decode, T = 1: every weight byte is read
//   once, 0.5 bytes/element + 4 bytes of absmax per 64 = 0.5625 B/elem,
//   2 FLOP/elem: 3.6 FLOP/byte, deeply memory-bound; the floor is
//   weight bytes / DRAM bandwidth (≈ 0.7 GB / 4.8 TB/s ≈ 0.15 ms per step
//   with an 8-bit lm_head). x comes from L1: 4·T·R⁻¹ bytes per weight element.
//
// matmul_gemv_<kind> (T <= 8, any shape or alignment): the same block
//   layout, one element per thread per step, decoded with Weight::at.
//
// matmul_gemm_<kind> (T > 8): the tiled fp32 GEMM of gemm.cuh.
// matmul_tc_<kind> (T > 8, when the backend enables tensor cores): the
//   same tile on tensor cores, 3xTF32 (gemm.cuh).
#include "common.cuh"
#include "gemm.cuh"

#define GEMV_THREADS 256
#define GEMV_WARPS (GEMV_THREADS / WARP)
#define GEMV_TMAX 8

// finish_rows: the block's per-thread partial sums acc[t][ρ] → y, summed
// over lanes (shuffles) and then over warps (shared memory, fixed order).
template <int R>
__device__ __forceinline__ void finish_rows(float (&acc)[GEMV_TMAX][R], float* y, int r0, int rows,
                                            int T) {
  __shared__ float part[GEMV_WARPS][GEMV_TMAX][R];
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
#pragma unroll
  for (int t = 0; t < GEMV_TMAX; t++) {
    if (t >= T) break;
#pragma unroll
    for (int j = 0; j < R; j++) {
      float v = warp_sum(acc[t][j]);
      if (lane == 0) part[wid][t][j] = v;
    }
  }
  __syncthreads();
  int tid = threadIdx.x;
  if (tid < T * R) {
    int t = tid / R, j = tid % R;
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < GEMV_WARPS; k++) s += part[k][t][j];
    if (r0 + j < rows) y[(long long)t * rows + r0 + j] = s;
  }
}

template <int KIND, int R>
__device__ __forceinline__ void gemv8(float* __restrict__ y, const float* __restrict__ x,
                                      const void* wd, const float* ws, const float* wc, int rows,
                                      int cols, int T) {
  typename Weight<KIND>::T w = Weight<KIND>::make(wd, ws, wc);
  __shared__ float sc[16];
  if (KIND == 1 && threadIdx.x < 16) sc[threadIdx.x] = wc[threadIdx.x];
  __syncthreads();
  int r0 = blockIdx.x * R;
  float acc[GEMV_TMAX][R];
#pragma unroll
  for (int t = 0; t < GEMV_TMAX; t++)
#pragma unroll
    for (int j = 0; j < R; j++) acc[t][j] = 0.f;
  int groups = cols >> 3;
  for (int g = threadIdx.x; g < groups; g += GEMV_THREADS) {
    float wv[R][8];
#pragma unroll
    for (int j = 0; j < R; j++) {
      if (r0 + j < rows) {
        w.load8((long long)(r0 + j) * cols + 8 * g, sc, wv[j]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) wv[j][e] = 0.f;
      }
    }
#pragma unroll
    for (int t = 0; t < GEMV_TMAX; t++) {
      if (t >= T) break;
      const float4* xp = reinterpret_cast<const float4*>(x + (long long)t * cols + 8 * g);
      float4 a = __ldg(xp), b = __ldg(xp + 1);
      float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
      for (int j = 0; j < R; j++) {
        float s = acc[t][j];
#pragma unroll
        for (int e = 0; e < 8; e++) s = fmaf(wv[j][e], xv[e], s);
        acc[t][j] = s;
      }
    }
  }
  finish_rows<R>(acc, y, r0, rows, T);
}

template <int KIND>
__device__ __forceinline__ void gemv(float* __restrict__ y, const float* __restrict__ x,
                                     const void* wd, const float* ws, const float* wc, int rows,
                                     int cols, int T) {
  typename Weight<KIND>::T w = Weight<KIND>::make(wd, ws, wc);
  int r = blockIdx.x;
  float acc[GEMV_TMAX][1];
#pragma unroll
  for (int t = 0; t < GEMV_TMAX; t++) acc[t][0] = 0.f;
  for (int c = threadIdx.x; c < cols; c += GEMV_THREADS) {
    float wv = w.at((long long)r * cols + c);
#pragma unroll
    for (int t = 0; t < GEMV_TMAX; t++) {
      if (t >= T) break;
      acc[t][0] = fmaf(wv, x[(long long)t * cols + c], acc[t][0]);
    }
  }
  finish_rows<1>(acc, y, r, rows, T);
}

#define MATMUL_KERNELS(NAME, KIND)                                                               \
  extern "C" __global__ void __launch_bounds__(GEMV_THREADS)                                     \
      matmul_gemv8_##NAME##_r1(float* y, const float* x, const void* wd, const float* ws,        \
                               const float* wc, int rows, int cols, int T) {                     \
    gemv8<KIND, 1>(y, x, wd, ws, wc, rows, cols, T);                                             \
  }                                                                                              \
  extern "C" __global__ void __launch_bounds__(GEMV_THREADS)                                     \
      matmul_gemv8_##NAME##_r4(float* y, const float* x, const void* wd, const float* ws,        \
                               const float* wc, int rows, int cols, int T) {                     \
    gemv8<KIND, 4>(y, x, wd, ws, wc, rows, cols, T);                                             \
  }                                                                                              \
  extern "C" __global__ void __launch_bounds__(GEMV_THREADS)                                     \
      matmul_gemv_##NAME(float* y, const float* x, const void* wd, const float* ws,              \
                         const float* wc, int rows, int cols, int T) {                           \
    gemv<KIND>(y, x, wd, ws, wc, rows, cols, T);                                                 \
  }                                                                                              \
  extern "C" __global__ void __launch_bounds__(256)                                              \
      matmul_gemm_##NAME(float* y, const float* x, const void* wd, const float* ws,              \
                         const float* wc, int rows, int cols, int T) {                           \
    gemm_tile<KIND, false>(y, x, wd, ws, wc, T, rows, cols, cols);                               \
  }                                                                                              \
  extern "C" __global__ void __launch_bounds__(128)                                              \
      matmul_tc_##NAME(float* y, const float* x, const void* wd, const float* ws,                \
                       const float* wc, int rows, int cols, int T) {                             \
    gemm_tc_tile<KIND, false>(y, x, wd, ws, wc, T, rows, cols, cols);                            \
  }

MATMUL_KERNELS(f32, 0)
MATMUL_KERNELS(nf4, 1)
MATMUL_KERNELS(bf16, 2)
MATMUL_KERNELS(q8, 3)
