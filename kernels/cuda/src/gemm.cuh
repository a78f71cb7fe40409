// A shared-memory tiled fp32 GEMM over a frozen weight of any kind, used by
// MatMul for T > 8 (prefill) and by MatMulT (training):
//
//   TRANS = false (MatMul):  y[m, n] = Σ_k x[m, k] · W[n, k]   M = T, N = rows, K = cols
//   TRANS = true  (MatMulT): y[m, n] = Σ_k x[m, k] · W[k, n]   M = T, N = cols, K = rows
//
// A block computes a 64×64 tile of y with 256 threads, 4×4 outputs each,
// staging 16-wide K slices of x and of the dequantized weight in shared
// memory (the classic tiling of llm.c dev/cuda matmul_forward.cu's early
// versions, with the weight decoded while it is staged).
//
// Napkin math (per tile, K = 2048): 64·64·2048·2 = 16.8 MFLOP for
// (64+64)·2048·4 = 1 MB staged from L2, i.e. 16 FLOP/byte of L2 traffic
// and 2 FMA per shared-memory load: enough to keep the fp32 pipes busy to
// ~30-50% of their peak, not more. Tensor cores (mma.sync bf16) would be
// ~10x faster but round x and W to 8-bit mantissas, far outside
// kerneltest's 1e-5·Σ|terms| tolerance; that needs a 3xbf16 split or a
// looser, stated tolerance first.
#pragma once

#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16

template <int KIND, bool TRANS>
__device__ __forceinline__ void gemm_tile(float* __restrict__ y, const float* __restrict__ x,
                                          const void* wd, const float* ws, const float* wc,
                                          int M, int N, int K, int cols) {
  typename Weight<KIND>::T w = Weight<KIND>::make(wd, ws, wc);
  __shared__ float As[GEMM_BK][GEMM_BM + 1];
  __shared__ float Bs[GEMM_BK][GEMM_BN + 1];
  int tid = threadIdx.x;
  int tx = tid & 15, ty = tid >> 4;  // output columns tx+16j, rows ty+16i
  int m0 = blockIdx.y * GEMM_BM, n0 = blockIdx.x * GEMM_BN;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < K; k0 += GEMM_BK) {
    // x tile: consecutive threads read consecutive k (coalesced).
#pragma unroll
    for (int p = 0; p < 4; p++) {
      int e = tid + p * 256;
      int m = e >> 4, k = e & 15;
      int gm = m0 + m, gk = k0 + k;
      As[k][m] = (gm < M && gk < K) ? x[(long long)gm * K + gk] : 0.f;
    }
    // Weight tile, decoded: consecutive threads read consecutive elements
    // of W's rows (k for MatMul, n for MatMulT).
#pragma unroll
    for (int p = 0; p < 4; p++) {
      int e = tid + p * 256;
      float v = 0.f;
      int n, k;
      if (TRANS) {
        n = e & 63;
        k = e >> 6;
      } else {
        n = e >> 4;
        k = e & 15;
      }
      int gn = n0 + n, gk = k0 + k;
      if (gn < N && gk < K) {
        long long i = TRANS ? (long long)gk * cols + gn : (long long)gn * cols + gk;
        v = w.at(i);
      }
      Bs[k][n] = v;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < GEMM_BK; k++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = As[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int gm = m0 + ty + 16 * i;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      int gn = n0 + tx + 16 * j;
      if (gn < N) y[(long long)gm * N + gn] = acc[i][j];
    }
  }
}

// ---- tensor cores: 3xTF32 ----
//
// The same tile product on tensor cores (mma.sync m16n8k8, TF32 inputs,
// fp32 accumulators; PTX ISA "Matrix shape m16n8k8" fragment layouts)
// with the 3xTF32 split of CUTLASS's tfloat32x3 / NVIDIA's "fp32 emulation":
// each operand x = big + small with big = tf32(x), small = tf32(x − big),
// and a·b ≈ small_a·big_b + big_a·small_b + big_a·big_b, which keeps
// ~fp32 accuracy (kerneltest's 1e-5·Σ|terms|) at a third of TF32's rate,
// still several times the fp32 pipes'. A block of 4 warps computes 64×64
// outputs, each warp 32×32 = 2×4 mma tiles, from K slices of 16 staged in
// shared memory as in gemm_tile (rows padded to 20 floats: the fragment
// reads below hit 32 distinct banks).
//
// Napkin math, K = 2048 tile: 64·64·2048·2 = 16.8 MFLOP as 3·(64/16)·(64/8)
// ·(2048/8) = 24576 mma per block; at H100's ~500 TFLOP/s dense TF32 the
// ceiling is ~160 TFLOP/s of fp32-accurate work, far above this tile's
// staging (one barrier pair per 16 of K), which is what bounds it.

#define TC_BK 16
#define TC_PAD 4

__device__ __forceinline__ unsigned to_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ void split_tf32(float x, unsigned& big, unsigned& small) {
  big = to_tf32(x);
  small = to_tf32(x - __uint_as_float(big));
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <int KIND, bool TRANS>
__device__ __forceinline__ void gemm_tc_tile(float* __restrict__ y, const float* __restrict__ x,
                                             const void* wd, const float* ws, const float* wc,
                                             int M, int N, int K, int cols) {
  typename Weight<KIND>::T w = Weight<KIND>::make(wd, ws, wc);
  __shared__ float As[GEMM_BM][TC_BK + TC_PAD];  // [m][k]
  __shared__ float Bs[GEMM_BN][TC_BK + TC_PAD];  // [n][k]
  int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int grp = lane >> 2, tig = lane & 3;  // mma groupID, thread in group
  int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  int m0 = blockIdx.y * GEMM_BM, n0 = blockIdx.x * GEMM_BN;
  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int r = 0; r < 4; r++) acc[i][j][r] = 0.f;

  for (int k0 = 0; k0 < K; k0 += TC_BK) {
    // 64×16 of x and of W per slice, 8 elements per thread (128 threads).
#pragma unroll
    for (int p = 0; p < 8; p++) {
      int e = tid + p * 128;
      int m = e >> 4, k = e & 15;
      int gm = m0 + m, gk = k0 + k;
      As[m][k] = (gm < M && gk < K) ? x[(long long)gm * K + gk] : 0.f;
    }
#pragma unroll
    for (int p = 0; p < 8; p++) {
      int e = tid + p * 128;
      int n, k;
      if (TRANS) {
        n = e & 63;
        k = e >> 6;
      } else {
        n = e >> 4;
        k = e & 15;
      }
      int gn = n0 + n, gk = k0 + k;
      float v = 0.f;
      if (gn < N && gk < K) v = w.at(TRANS ? (long long)gk * cols + gn : (long long)gn * cols + gk);
      Bs[n][k] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TC_BK; kk += 8) {
      unsigned ab[2][4], as[2][4], bb[4][2], bs[4][2];
#pragma unroll
      for (int i = 0; i < 2; i++) {
        int m = wm + i * 16 + grp;
        split_tf32(As[m][kk + tig], ab[i][0], as[i][0]);
        split_tf32(As[m + 8][kk + tig], ab[i][1], as[i][1]);
        split_tf32(As[m][kk + tig + 4], ab[i][2], as[i][2]);
        split_tf32(As[m + 8][kk + tig + 4], ab[i][3], as[i][3]);
      }
#pragma unroll
      for (int j = 0; j < 4; j++) {
        int n = wn + j * 8 + grp;
        split_tf32(Bs[n][kk + tig], bb[j][0], bs[j][0]);
        split_tf32(Bs[n][kk + tig + 4], bb[j][1], bs[j][1]);
      }
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
          mma_tf32(acc[i][j], as[i], bb[j]);
          mma_tf32(acc[i][j], ab[i], bs[j]);
          mma_tf32(acc[i][j], ab[i], bb[j]);
        }
    }
    __syncthreads();
  }
  // Accumulator fragment: c0,c1 at (grp, 2·tig + {0,1}), c2,c3 at row grp+8.
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int r = 0; r < 4; r++) {
        int gm = m0 + wm + i * 16 + grp + (r >> 1) * 8;
        int gn = n0 + wn + j * 8 + 2 * tig + (r & 1);
        if (gm < M && gn < N) y[(long long)gm * N + gn] = acc[i][j][r];
      }
}
