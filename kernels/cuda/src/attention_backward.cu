// AttentionBackward of AttentionForwardTrain (FlashAttention-2's backward
// pass, Dao 2023, Algorithm 2, without its tiling): with the probabilities
// P[t,j] = exp(q_t·k_j·scale − lse[t]) recomputed from the saved lse,
//   D[t]    = Σ_i dout[t,i]·out[t,i]
//   dS[t,j] = P[t,j]·(dout[t]·v_j − D[t])
//   dq[t]   = scale · Σ_{j<=t} dS[t,j]·k_j
//   dk[j]   = scale · Σ_{t>=j} Σ_{h in g} dS[t,j]·q_t      (summed over the
//   dv[j]   =         Σ_{t>=j} Σ_{h in g} P[t,j]·dout[t]    query heads of g)
// Shapes as AttentionForwardTrain; D is a scratch [B·T, nHeads].
//
// attention_backward_dq: one warp per query row (b, t, h); writes D and dq.
// attention_backward_dkdv: one warp per key row (b, j, g), looping over the
//   later queries of every head of its group; runs after _dq (it reads D).
// Every gradient element is written once by one warp: no atomics, the same
// bits every run. Napkin math: 2.5x the forward's FLOPs (the QK scores are
// recomputed twice, once per kernel); K/V and Q/dO rows come from L2.
#include "attention.cuh"

#define AB_WARPS 4

extern "C" __global__ void __launch_bounds__(AB_WARPS * 32)
    attention_backward_dq(float* dq, float* Dbuf, const float* dout, const float* out,
                          const float* lse, const float* q, const float* k, const float* v, int B,
                          int T, int nHeads, int nKVHeads, int headDim, float scale) {
  extern __shared__ float smem[];
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int w = blockIdx.x * AB_WARPS + wid;  // (b·T + t)·nHeads + h
  if (w >= B * T * nHeads) return;
  int bt = w / nHeads, h = w % nHeads;
  int b = bt / T, t = bt % T;
  int g = h / (nHeads / nKVHeads);
  long long kstride = (long long)nKVHeads * headDim;
  float* sq = smem + wid * 2 * headDim;  // q·scale
  float* sd = sq + headDim;              // dout
  const float* qp = q + (long long)w * headDim;
  const float* dp = dout + (long long)w * headDim;
  const float* op = out + (long long)w * headDim;
  float D = 0.f;
  for (int d = lane; d < headDim; d += 32) {
    sq[d] = qp[d] * scale;
    sd[d] = dp[d];
    D = fmaf(dp[d], op[d], D);
  }
  D = warp_sum(D);
  if (lane == 0) Dbuf[w] = D;
  __syncwarp();
  float L = lse[w];
  float acc[ATT_MAXA];
#pragma unroll
  for (int a = 0; a < ATT_MAXA; a++) acc[a] = 0.f;
  for (int j0 = 0; j0 <= t; j0 += 32) {
    int j = j0 + lane;
    float ds = 0.f;
    if (j <= t) {
      const float* kp = k + ((long long)b * T + j) * kstride + g * headDim;
      const float* vp = v + ((long long)b * T + j) * kstride + g * headDim;
      float s = 0.f, pv = 0.f;
      for (int i = 0; i < headDim; i++) {
        s = fmaf(sq[i], kp[i], s);
        pv = fmaf(sd[i], vp[i], pv);
      }
      float p = expf(s - L);
      ds = p * (pv - D);
    }
    int n = min(32, t - j0 + 1);
    for (int jj = 0; jj < n; jj++) {
      float dsj = __shfl_sync(0xffffffffu, ds, jj);
      const float* kp = k + ((long long)b * T + j0 + jj) * kstride + g * headDim;
#pragma unroll
      for (int a = 0; a < ATT_MAXA; a++) {
        int d = lane + 32 * a;
        if (d < headDim) acc[a] = fmaf(dsj, kp[d], acc[a]);
      }
    }
  }
  float* o = dq + (long long)w * headDim;
#pragma unroll
  for (int a = 0; a < ATT_MAXA; a++) {
    int d = lane + 32 * a;
    if (d < headDim) o[d] = acc[a] * scale;
  }
}

extern "C" __global__ void __launch_bounds__(AB_WARPS * 32)
    attention_backward_dkdv(float* dk, float* dv, const float* Dbuf, const float* dout,
                            const float* lse, const float* q, const float* k, const float* v,
                            int B, int T, int nHeads, int nKVHeads, int headDim, float scale) {
  extern __shared__ float smem[];
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int w = blockIdx.x * AB_WARPS + wid;  // (b·T + j)·nKVHeads + g
  if (w >= B * T * nKVHeads) return;
  int bj = w / nKVHeads, g = w % nKVHeads;
  int b = bj / T, j = bj % T;
  int group = nHeads / nKVHeads;
  float* sk = smem + wid * 2 * headDim;  // k_j·scale
  float* sv = sk + headDim;              // v_j
  const float* kp = k + (long long)w * headDim;
  const float* vp = v + (long long)w * headDim;
  for (int d = lane; d < headDim; d += 32) {
    sk[d] = kp[d] * scale;
    sv[d] = vp[d];
  }
  __syncwarp();
  float ak[ATT_MAXA], av[ATT_MAXA];
#pragma unroll
  for (int a = 0; a < ATT_MAXA; a++) ak[a] = av[a] = 0.f;
  for (int hh = 0; hh < group; hh++) {
    int h = g * group + hh;
    for (int t0 = j; t0 < T; t0 += 32) {
      int t = t0 + lane;
      float p = 0.f, ds = 0.f;
      if (t < T) {
        long long row = ((long long)b * T + t) * nHeads + h;
        const float* qt = q + row * headDim;
        const float* dt = dout + row * headDim;
        float s = 0.f, pv = 0.f;
        for (int i = 0; i < headDim; i++) {
          s = fmaf(qt[i], sk[i], s);
          pv = fmaf(dt[i], sv[i], pv);
        }
        p = expf(s - lse[row]);
        ds = p * (pv - Dbuf[row]);
      }
      int n = min(32, T - t0);
      for (int tt = 0; tt < n; tt++) {
        float pj = __shfl_sync(0xffffffffu, p, tt);
        float dsj = __shfl_sync(0xffffffffu, ds, tt);
        long long row = ((long long)b * T + t0 + tt) * nHeads + h;
        const float* qt = q + row * headDim;
        const float* dt = dout + row * headDim;
#pragma unroll
        for (int a = 0; a < ATT_MAXA; a++) {
          int d = lane + 32 * a;
          if (d < headDim) {
            av[a] = fmaf(pj, dt[d], av[a]);
            ak[a] = fmaf(dsj, qt[d], ak[a]);
          }
        }
      }
    }
  }
  float* ok = dk + (long long)w * headDim;
  float* ov = dv + (long long)w * headDim;
#pragma unroll
  for (int a = 0; a < ATT_MAXA; a++) {
    int d = lane + 32 * a;
    if (d < headDim) {
      ok[d] = ak[a] * scale;
      ov[d] = av[a];
    }
  }
}
