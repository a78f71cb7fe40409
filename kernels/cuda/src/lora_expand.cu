// LoRAExpand (punica's bgmv_expand / vLLM's lora_expand): for tokens t with
// slots[t] >= 0,
//   y[t, o] += scale · Σ_r B[slots[t], o, r] · z[t, r]        o < out
// (scale is 1 for LoRAExpand, whose stacked B already carries the
// adapter's scale; LoRAForward passes its scale and slots = NULL, so every
// token uses B itself). z [T, rank], y [T, out], B [slots, out, rank].
//
// One thread per (t, o); rank <= 64 so the loop over r is short.
// Napkin math: out·rank·4 bytes of B per token from L2, 2·out·rank FLOP.
#include "common.cuh"

extern "C" __global__ void lora_expand(float* y, const float* z, const float* B, const int* slots,
                                       int T, int out, int rank, float scale) {
  long long n = (long long)T * out;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
       e += (long long)gridDim.x * blockDim.x) {
    int t = (int)(e / out), o = (int)(e % out);
    int slot = slots ? slots[t] : 0;
    if (slot < 0) continue;
    const float* b = B + ((long long)slot * out + o) * rank;
    const float* zt = z + (long long)t * rank;
    float s = 0.f;
    for (int r = 0; r < rank; r++) s = fmaf(b[r], zt[r], s);
    y[e] += scale * s;
  }
}
