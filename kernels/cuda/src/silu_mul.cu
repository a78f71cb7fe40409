// SiLUMul (the SwiGLU of Llama's MLP, vLLM's silu_and_mul):
//   out[i] = silu(gate[i]) · up[i],  silu(g) = g / (1 + e^−g).
// out may alias gate (each element is read before it is written, by the
// same thread).
//
// silu in double and rounded to float32 before the product, as kernels/ref
// computes it (so saturated gates, ±100, give exactly ref's values).
// Napkin math: 12 bytes per element; 8192 × T=1 is 96 KB.
#include "common.cuh"

extern "C" __global__ void silu_mul(float* out, const float* gate, const float* up, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    double g = gate[i];
    float s = (float)(g / (1.0 + exp(-g)));
    out[i] = s * up[i];
  }
}
