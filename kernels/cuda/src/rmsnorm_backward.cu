// RMSNormBackward (llm.c's layernorm_backward without the mean term): for
// y = RMSNorm(x, weight, eps), s = 1/sqrt(mean(x²) + eps), n = len(weight):
//   dx[i] = s·weight[i]·dy[i] − s³/n · x[i] · Σ_j dy[j]·weight[j]·x[j].
// x, dy, dx [T, n]; dx may alias dy.
//
// One block of 256 threads per row; both sums in double, in a fixed order
// (kernels/ref's float64), each dx element written by the thread that read
// its dy. Napkin math: 12 bytes per element.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
    rmsnorm_backward(float* dx, const float* dy, const float* x, const float* weight, int n,
                     float eps) {
  __shared__ double sh[32];
  long long base = (long long)blockIdx.x * n;
  double ss = 0.0, dot = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    double v = x[base + i];
    ss += v * v;
    dot += (double)dy[base + i] * (double)weight[i] * v;
  }
  ss = block_sum_d(ss, sh);
  dot = block_sum_d(dot, sh);
  double s = 1.0 / sqrt(ss / (double)n + (double)eps);
  double c = s * s * s / (double)n * dot;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    dx[base + i] = (float)(s * (double)weight[i] * (double)dy[base + i] - c * (double)x[base + i]);
}
