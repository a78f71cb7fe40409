// GatherRows: dst[i, :] = src[rows[i], :] for i < n, rows of width floats
// (the rows that need logits). A negative row is skipped.
//
// One thread per element. Napkin math: 8 bytes per element.
#include "common.cuh"

extern "C" __global__ void gather_rows(float* dst, const float* src, const int* rows, int n,
                                       int width) {
  long long total = (long long)n * width;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    int i = (int)(e / width), c = (int)(e % width);
    int r = rows[i];
    if (r < 0) continue;
    dst[e] = src[(long long)r * width + c];
  }
}
