// WriteKV (vLLM's reshape_and_cache, ggml's cpy_k/cpy_v): for t < T,
//   K[slots[t], :] = k[t, :],  V[slots[t], :] = v[t, :].
// k, v [T, kvDim]; K, V the layer's paged cache [rows, kvDim]. A negative
// slot is skipped (kernels/ref panics; a kernel cannot).
//
// One thread per element of k (and of v). Napkin math: 16 bytes per
// element moved; decode of a 1B layer (kvDim 512) is 8 KB.
#include "common.cuh"

extern "C" __global__ void write_kv(float* K, float* V, const float* k, const float* v,
                                    const int* slots, int T, int kvDim) {
  long long n = (long long)T * kvDim;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
       e += (long long)gridDim.x * blockDim.x) {
    int t = (int)(e / kvDim), d = (int)(e % kvDim);
    int s = slots[t];
    if (s < 0) continue;
    long long o = (long long)s * kvDim + d;
    K[o] = k[e];
    V[o] = v[e];
  }
}
