// AttentionForwardTrain: causal self-attention within each of B sequences
// of T tokens (token j of sequence b is row b·T + j), grouped-query heads
// g = h / (nHeads/nKVHeads):
//   out[b,t,h,:] = Σ_{j<=t} softmax_j(q[b,t,h,:]·k[b,j,g,:]/sqrt(headDim)) · v[b,j,g,:]
//   lse[b,t,h]   = log Σ_{j<=t} exp(q[b,t,h,:]·k[b,j,g,:]/sqrt(headDim))
// (FlashAttention's saved log-sum-exp, from which AttentionBackward
// recomputes the probabilities). q, out [B·T, nHeads·headDim];
// k, v [B·T, nKVHeads·headDim]; lse [B·T, nHeads].
//
// One warp per (b, t, h), the online softmax of attention.cuh. Napkin
// math, 1B at B·T = 2·512: Σ_t t·64·2 FLOP·2 (QK and PV) per head
// ≈ 34 MFLOP/head, 1 GFLOP per layer; K/V re-read from L2 by every query
// row (no tiling across queries yet: FlashAttention-2's tiling is the
// next step).
#include "attention.cuh"

#define AF_WARPS 4

extern "C" __global__ void __launch_bounds__(AF_WARPS * 32)
    attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                      int B, int T, int nHeads, int nKVHeads, int headDim, float scale) {
  extern __shared__ float smem[];
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int w = blockIdx.x * AF_WARPS + wid;  // (b·T + t)·nHeads + h
  if (w >= B * T * nHeads) return;
  int bt = w / nHeads, h = w % nHeads;
  int b = bt / T, t = bt % T;
  int g = h / (nHeads / nKVHeads);
  float* sq = smem + wid * headDim;
  const float* qp = q + (long long)w * headDim;
  for (int d = lane; d < headDim; d += 32) sq[d] = qp[d] * scale;
  __syncwarp();
  long long first = (long long)b * T;
  float l = attend_row(out + (long long)w * headDim, sq, k, v, t, headDim,
                       (long long)nKVHeads * headDim, g * headDim,
                       [=](int j) -> long long { return first + j; });
  if (lane == 0) lse[w] = l;
}
