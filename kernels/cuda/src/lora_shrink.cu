// LoRAShrink (punica's bgmv_shrink / vLLM's lora_shrink): for tokens t with
// slots[t] >= 0,
//   z[t, r] = Σ_i A[slots[t], r, i] · x[t, i]        r < rank
// rows of tokens with slot −1 are left untouched. With slots = NULL every
// token uses A itself (slot 0): LoRAForward's z = A·x.
// x [T, in], z [T, rank], A [slots, rank, in].
//
// One warp per (t, r), lanes striding over in, reduced by shuffles.
// Napkin math: rank·in·4 bytes of A per token from L2 (16·2048·4 = 128 KB
// at rank 16), 2·rank·in FLOP: a few µs per projection.
#include "common.cuh"

extern "C" __global__ void lora_shrink(float* z, const float* x, const float* A, const int* slots,
                                       int T, int rank, int in) {
  int lane = threadIdx.x & 31;
  int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (w >= T * rank) return;
  int t = w / rank, r = w % rank;
  int slot = slots ? slots[t] : 0;
  if (slot < 0) return;
  const float* a = A + ((long long)slot * rank + r) * in;
  const float* xt = x + (long long)t * in;
  float s = 0.f;
  for (int i = lane; i < in; i += 32) s = fmaf(a[i], xt[i], s);
  s = warp_sum(s);
  if (lane == 0) z[(long long)t * rank + r] = s;
}
