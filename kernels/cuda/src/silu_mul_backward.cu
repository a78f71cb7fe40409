// SiLUMulBackward: for out = silu(gate)·up, with σ the logistic function,
//   dgate[i] = dout[i]·up[i]·σ(g)·(1 + g·(1−σ(g)))
//   dup[i]   = dout[i]·silu(g).
// In double, rounded once (kernels/ref's float64). Napkin math: 20 bytes
// per element.
#include "common.cuh"

extern "C" __global__ void silu_mul_backward(float* dgate, float* dup, const float* dout,
                                             const float* gate, const float* up, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    double g = gate[i];
    double sig = 1.0 / (1.0 + exp(-g));
    double d = dout[i];
    dgate[i] = (float)(d * (double)up[i] * sig * (1.0 + g * (1.0 - sig)));
    dup[i] = (float)(d * g * sig);
  }
}
