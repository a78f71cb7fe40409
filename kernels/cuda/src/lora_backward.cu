// LoRABackward (PEFT's LoRA linear, differentiated; llm.c style): with
// dz[t, r] = scale · Σ_o B[o, r]·dy[t, o],
//   dB[o, r] += scale · Σ_t dy[t, o]·z[t, r]
//   dA[r, i] += Σ_t dz[t, r]·x[t, i]
//   dx[t, i] += Σ_r dz[t, r]·A[r, i]
// x [T, in], z [T, rank], dy [T, out], A [rank, in], B [out, rank];
// dz is a scratch [T, rank], written by lora_backward_dz, which runs first.
//
// Each gradient element is one thread's sum, in a fixed order (no
// atomics). Napkin math, 1B q_proj at T = 1024, rank 16: dA and dx are
// 2·16·2048·1024 = 67 MFLOP each, dB and dz a quarter of that; inputs
// are L2-resident per tile of threads.
#include "common.cuh"

// dz: one warp per (t, r), lanes striding over out.
extern "C" __global__ void lora_backward_dz(float* dz, const float* dy, const float* B, int T,
                                            int out, int rank, float scale) {
  int lane = threadIdx.x & 31;
  int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (w >= T * rank) return;
  int t = w / rank, r = w % rank;
  const float* d = dy + (long long)t * out;
  float s = 0.f;
  for (int o = lane; o < out; o += 32) s = fmaf(B[(long long)o * rank + r], d[o], s);
  s = warp_sum(s);
  if (lane == 0) dz[w] = scale * s;
}

// dB: one thread per (o, r).
extern "C" __global__ void lora_backward_db(float* dB, const float* dy, const float* z, int T,
                                            int out, int rank, float scale) {
  int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= out * rank) return;
  int o = e / rank, r = e % rank;
  float s = 0.f;
  for (int t = 0; t < T; t++) s = fmaf(dy[(long long)t * out + o], z[(long long)t * rank + r], s);
  dB[e] += scale * s;
}

// dA: one thread per (r, i).
extern "C" __global__ void lora_backward_da(float* dA, const float* dz, const float* x, int T,
                                            int in, int rank) {
  long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (e >= (long long)rank * in) return;
  int r = (int)(e / in), i = (int)(e % in);
  float s = 0.f;
  for (int t = 0; t < T; t++) s = fmaf(dz[(long long)t * rank + r], x[(long long)t * in + i], s);
  dA[e] += s;
}

// dx: one thread per (t, i).
extern "C" __global__ void lora_backward_dx(float* dx, const float* dz, const float* A, int T,
                                            int in, int rank) {
  long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (e >= (long long)T * in) return;
  int t = (int)(e / in), i = (int)(e % in);
  float s = 0.f;
  for (int r = 0; r < rank; r++) s = fmaf(dz[(long long)t * rank + r], A[(long long)r * in + i], s);
  dx[e] += s;
}
