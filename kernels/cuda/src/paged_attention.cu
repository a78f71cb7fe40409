// PagedAttention (vLLM's paged_attention_v1; ggml's flash_attn_ext over a
// paged cache): for token t and head h, with g = h / (nHeads/nKVHeads)
// (grouped-query attention) and K_p, V_p the cache rows of position p of
// token t's sequence, row = blockTables[seq[t]·maxBlocks + p/blockSize]
// ·blockSize + p % blockSize:
//   out[t,h,:] = Σ_{p<=pos[t]} softmax_p(q[t,h,:]·K_p[g,:]/sqrt(headDim)) · V_p[g,:]
// A token at position −1 (or below) gets zeros.
// q, out [T, nHeads·headDim]; K, V [rows, nKVHeads·headDim].
//
// One warp per (t, h), four warps per block, the online softmax of
// attention.cuh; q (pre-scaled by 1/sqrt(headDim)) sits in shared memory.
// Napkin math, decode at context L, Llama-3.2-1B (32 heads, 8 KV heads,
// headDim 64): K and V reads 2·L·64·4 B per head = 512·L bytes, L2 serves
// the 4 query heads sharing a KV head; at L = 4096, 2 MB per layer per
// token from L2/DRAM. A batch-1 decode is only 32 warps per layer, so at
// long contexts most SMs would idle: there the host picks
// paged_attention_split (below), which splits each row's positions.
#include "attention.cuh"

#define PA_WARPS 4

extern "C" __global__ void __launch_bounds__(PA_WARPS * 32)
    paged_attention(float* out, const float* q, const float* K, const float* V, const int* seq,
                    const int* pos, const int* tables, int maxBlocks, int blockSize, int T,
                    int nHeads, int nKVHeads, int headDim, float scale) {
  extern __shared__ float smem[];
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int w = blockIdx.x * PA_WARPS + wid;
  if (w >= T * nHeads) return;  // whole warps only: no block-wide barrier below
  int t = w / nHeads, h = w % nHeads;
  int g = h / (nHeads / nKVHeads);
  float* o = out + (long long)w * headDim;
  int last = pos[t];
  if (last < 0) {
    for (int d = lane; d < headDim; d += 32) o[d] = 0.f;
    return;
  }
  float* sq = smem + wid * headDim;
  const float* qp = q + (long long)w * headDim;
  for (int d = lane; d < headDim; d += 32) sq[d] = qp[d] * scale;
  __syncwarp();
  const int* table = tables + (long long)seq[t] * maxBlocks;
  attend_row(o, sq, K, V, last, headDim, (long long)nKVHeads * headDim, g * headDim,
             [=](int j) -> long long {
               return (long long)table[j / blockSize] * blockSize + j % blockSize;
             });
}

// Flash-decoding (vLLM's paged_attention_v2): when T·nHeads warps would
// leave the GPU idle, paged_attention_split gives each (t, h) S warps, warp
// s taking positions [s·L, (s+1)·L) and writing its unnormalised partial
// output to part [T·nHeads·S, headDim] and (m, l) to ml [T·nHeads·S, 2];
// paged_attention_combine then merges the S partials of each (t, h):
//   M = max_s m_s,  out = Σ_s e^{m_s − M}·part_s / Σ_s e^{m_s − M}·l_s.
// Napkin math: the same K/V traffic as paged_attention, spread over S
// times the warps, plus T·nHeads·S·(headDim+2)·8 bytes of partials.
extern "C" __global__ void __launch_bounds__(PA_WARPS * 32)
    paged_attention_split(float* part, float* ml, const float* q, const float* K, const float* V,
                          const int* seq, const int* pos, const int* tables, int maxBlocks,
                          int blockSize, int T, int nHeads, int nKVHeads, int headDim, float scale,
                          int S, int L) {
  extern __shared__ float smem[];
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int w = blockIdx.x * PA_WARPS + wid;  // (t·nHeads + h)·S + s
  if (w >= T * nHeads * S) return;
  int th = w / S, s = w % S;
  int t = th / nHeads, h = th % nHeads;
  int g = h / (nHeads / nKVHeads);
  float* o = part + (long long)w * headDim;
  // The last split runs to pos[t] whatever MaxLen said (it is a hint).
  int begin = s * L, last = s == S - 1 ? pos[t] : min(pos[t], begin + L - 1);
  float* sq = smem + wid * headDim;
  const float* qp = q + (long long)th * headDim;
  for (int d = lane; d < headDim; d += 32) sq[d] = qp[d] * scale;
  __syncwarp();
  float r[2];
  if (pos[t] < 0) last = begin - 1;  // attends nothing: an empty range
  const int* table = tables + (long long)(pos[t] < 0 ? 0 : seq[t]) * maxBlocks;
  attend_range(o, r, sq, K, V, begin, last, headDim, (long long)nKVHeads * headDim, g * headDim,
               [=](int j) -> long long {
                 return (long long)table[j / blockSize] * blockSize + j % blockSize;
               },
               false);
  if (lane == 0) {
    ml[2LL * w] = r[0];
    ml[2LL * w + 1] = r[1];
  }
}

extern "C" __global__ void __launch_bounds__(PA_WARPS * 32)
    paged_attention_combine(float* out, const float* part, const float* ml, const int* pos, int T,
                            int nHeads, int headDim, int S) {
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int w = blockIdx.x * PA_WARPS + wid;  // t·nHeads + h
  if (w >= T * nHeads) return;
  float* o = out + (long long)w * headDim;
  if (pos[w / nHeads] < 0) {
    for (int d = lane; d < headDim; d += 32) o[d] = 0.f;
    return;
  }
  const float* mlw = ml + 2LL * w * S;
  float M = -INFINITY;
  for (int s = 0; s < S; s++) M = fmaxf(M, mlw[2 * s]);
  float Lsum = 0.f;
  for (int s = 0; s < S; s++) {
    float ms = mlw[2 * s];
    if (ms > -INFINITY) Lsum += expf(ms - M) * mlw[2 * s + 1];
  }
  float inv = 1.f / Lsum;
  for (int d = lane; d < headDim; d += 32) {
    float acc = 0.f;
    for (int s = 0; s < S; s++) {
      float ms = mlw[2 * s];
      if (ms > -INFINITY) acc += expf(ms - M) * part[((long long)w * S + s) * headDim + d];
    }
    o[d] = acc * inv;
  }
}
