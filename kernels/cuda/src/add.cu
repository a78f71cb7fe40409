// Add (the residual connection): dst[i] += src[i].
//
// One thread per element. Napkin math: 12 bytes per element.
#include "common.cuh"

extern "C" __global__ void add(float* dst, const float* src, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    dst[i] += src[i];
}
