// Embed: out[t, c] = table[ids[t], c] for t < T, the table frozen as F32,
// NF4, BF16 or Q8 (dequantized exactly as MatMul reads it). out [T, cols].
// A token id outside [0, rows) gets a row of zeros (kernels/ref panics;
// a kernel cannot).
//
// One thread per output element, grid-stride. Napkin math: T·cols·(4 B
// written + the row's bytes read); T = 1 decode of a 2048-wide bf16 row is
// 12 KB: launch latency, not bandwidth.
#include "common.cuh"

template <int KIND>
__device__ __forceinline__ void embed(float* out, const void* wd, const float* ws, const float* wc,
                                      const int* ids, int rows, int cols, int T) {
  typename Weight<KIND>::T w = Weight<KIND>::make(wd, ws, wc);
  long long n = (long long)T * cols;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
       e += (long long)gridDim.x * blockDim.x) {
    int t = (int)(e / cols), c = (int)(e % cols);
    int id = ids[t];
    out[e] = (id >= 0 && id < rows) ? w.at((long long)id * cols + c) : 0.f;
  }
}

#define EMBED_KERNEL(NAME, KIND)                                                           \
  extern "C" __global__ void embed_##NAME(float* out, const void* wd, const float* ws,     \
                                          const float* wc, const int* ids, int rows,       \
                                          int cols, int T) {                               \
    embed<KIND>(out, wd, ws, wc, ids, rows, cols, T);                                      \
  }

EMBED_KERNEL(f32, 0)
EMBED_KERNEL(nf4, 1)
EMBED_KERNEL(bf16, 2)
EMBED_KERNEL(q8, 3)
