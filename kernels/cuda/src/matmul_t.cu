// MatMulT: dx[t, c] = Σ_r W[r, c] · dy[t, r] for t < T, the input gradient of
// MatMul through a frozen weight (training's backward pass). dy [T, rows],
// dx [T, cols].
//
// matmul_t_tc_<kind>: the same on tensor cores (3xTF32, gemm.cuh), when
// the backend enables them.
// matmul_t_<kind>: the tiled GEMM of gemm.cuh with the weight read
// transposed (consecutive threads stage consecutive columns c of a row r,
// so NF4's packed bytes are still read in order).
//
// Napkin math, a 1B projection 2048×2048 and T = 1024 (batch 2 × 512):
// 8.6 GFLOP for 2 MB of NF4 and 2·8 MB of activations: compute-bound,
// ~0.5-1 ms at the tile's ~10-20 TFLOP/s.
#include "gemm.cuh"

#define MATMUL_T_KERNEL(NAME, KIND)                                                               \
  extern "C" __global__ void __launch_bounds__(256)                                               \
      matmul_t_##NAME(float* dx, const float* dy, const void* wd, const float* ws,                \
                      const float* wc, int rows, int cols, int T) {                               \
    gemm_tile<KIND, true>(dx, dy, wd, ws, wc, T, cols, rows, cols);                               \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(128)                                               \
      matmul_t_tc_##NAME(float* dx, const float* dy, const void* wd, const float* ws,             \
                         const float* wc, int rows, int cols, int T) {                            \
    gemm_tc_tile<KIND, true>(dx, dy, wd, ws, wc, T, cols, rows, cols);                            \
  }

MATMUL_T_KERNEL(f32, 0)
MATMUL_T_KERNEL(nf4, 1)
MATMUL_T_KERNEL(bf16, 2)
MATMUL_T_KERNEL(q8, 3)
