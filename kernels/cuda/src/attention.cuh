// One warp computes one query row of softmax attention with an online
// softmax (Milakov & Gimelshein 2018; the single-pass form of
// FlashAttention and of vLLM's paged_attention_v1 kernel), never storing
// the score row:
//   out[:] = Σ_{j<=last} softmax_j(q·K_j · scale) · V_j[:]
// and returns the log-sum-exp of the scaled scores. Keys are taken 32 at
// a time, one per lane (each lane a full dot product over headDim); the
// probabilities are then broadcast lane by lane while every lane
// accumulates its own output dimensions (d = lane + 32a, a < ATT_MAXA).
//
// ROW(j) gives the row of K and V that holds key j (a paged cache's
// block-table lookup, or a training batch's contiguous rows); kstride is
// the row length (nKVHeads·headDim) and koff the head's offset in it.
#pragma once

#include "common.cuh"

#define ATT_MAXA 8  // headDim <= 256

// attend_range is attend_row over keys [begin, last] only, leaving the
// output unnormalised: o[d] = Σ_j e^{s_j − m}·V_j[d] with m the range's max
// score, and *ml = (m, l = Σ_j e^{s_j − m}); an empty range gives m = −∞,
// l = 0, o = 0. The partial results of several ranges combine exactly
// (flash-decoding, Dao et al. 2023; vLLM's paged_attention_v2).
template <typename RowFn>
__device__ __forceinline__ void attend_range(float* __restrict__ o, float* ml, const float* sq,
                                             const float* __restrict__ K,
                                             const float* __restrict__ V, int begin, int last,
                                             int headDim, long long kstride, int koff, RowFn row,
                                             bool normalize) {
  int lane = threadIdx.x & 31;
  float m = -INFINITY, l = 0.f;
  float acc[ATT_MAXA];
#pragma unroll
  for (int a = 0; a < ATT_MAXA; a++) acc[a] = 0.f;
  for (int j0 = begin; j0 <= last; j0 += 32) {
    int j = j0 + lane;
    float s = -INFINITY;
    long long r = 0;
    if (j <= last) {
      r = row(j);
      const float* kp = K + r * kstride + koff;
      float d = 0.f;
      for (int i = 0; i < headDim; i++) d = fmaf(sq[i], kp[i], d);
      s = d;
    }
    float mn = fmaxf(m, warp_max(s));
    float p = j <= last ? expf(s - mn) : 0.f;
    float corr = expf(m - mn);  // 0 on the first chunk (m = −∞)
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int a = 0; a < ATT_MAXA; a++) acc[a] *= corr;
    int n = min(32, last - j0 + 1);
    for (int jj = 0; jj < n; jj++) {
      float pj = __shfl_sync(0xffffffffu, p, jj);
      long long rj = __shfl_sync(0xffffffffu, r, jj);
      const float* vp = V + rj * kstride + koff;
#pragma unroll
      for (int a = 0; a < ATT_MAXA; a++) {
        int d = lane + 32 * a;
        if (d < headDim) acc[a] = fmaf(pj, vp[d], acc[a]);
      }
    }
    m = mn;
  }
  float inv = normalize ? 1.f / l : 1.f;
#pragma unroll
  for (int a = 0; a < ATT_MAXA; a++) {
    int d = lane + 32 * a;
    if (d < headDim) o[d] = acc[a] * inv;
  }
  ml[0] = m;
  ml[1] = l;
}

// attend_row: the whole row [0, last], normalised; returns the
// log-sum-exp of the scaled scores.
template <typename RowFn>
__device__ __forceinline__ float attend_row(float* __restrict__ o, const float* sq,
                                            const float* __restrict__ K,
                                            const float* __restrict__ V, int last, int headDim,
                                            long long kstride, int koff, RowFn row) {
  float ml[2];
  attend_range(o, ml, sq, K, V, 0, last, headDim, kstride, koff, row, true);
  return ml[0] + logf(ml[1]);
}
