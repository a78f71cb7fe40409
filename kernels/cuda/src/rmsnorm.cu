// RMSNorm: out[t, i] = weight[i] · (x[t, i] · s_t),
//   s_t = 1/sqrt(mean_i x[t, i]² + eps)   (Llama's LlamaRMSNorm; llm.c's
// layernorm_forward without the mean). x, out [T, n]; out may alias x.
//
// One block of 256 threads per row; the sum of squares is accumulated in
// double and reduced in a fixed order (kernels/ref's float64 sum, to its
// last bit in practice), s rounded to float32 once, as ref does.
// Napkin math: 8 bytes per element (read x, write out) + n·4 for weight
// (L2-resident): 2048 wide × T=1 is 16 KB, a few µs of launch latency.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
    rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
  __shared__ double sh[32];
  long long base = (long long)blockIdx.x * n;
  double ss = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    double v = x[base + i];
    ss += v * v;
  }
  ss = block_sum_d(ss, sh);
  float s = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
  // Each thread rewrites only the elements it read, so out may alias x.
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[base + i] = weight[i] * (x[base + i] * s);
}
