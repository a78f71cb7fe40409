// RoPE (rotate-half / GPT-NeoX pairing, as transformers' apply_rotary_pos_emb
// and vLLM's rotary_embedding kernel with is_neox=true): for token t, head h
// and i < headDim/2, with θ = float32(pos[t]) · invFreq[i] (float32, as
// transformers computes it) and x0 = x[t,h,i], x1 = x[t,h,i+headDim/2]:
//   x[t,h,i]           = x0·cos θ − x1·sin θ
//   x[t,h,i+headDim/2] = x1·cos θ + x0·sin θ
// in place. x [T, nHeads·headDim], invFreq [headDim/2] (precomputed on the
// host with llama3's frequency scaling). sign = −1 rotates by −θ: the
// transpose, which is RoPEBackward (sin(−θ) = −sin θ, cos(−θ) = cos θ
// exactly, so this equals RoPE with negated frequencies bit for bit).
//
// One thread per (t, i), looping over heads, so cos/sin are computed once
// per pair, in double and rounded to float32 (kernels/ref's
// float32(math.Cos(float64(θ)))): angles reach 10⁴-10⁵ rad, where
// float32 sincosf's argument reduction is the costly part anyway.
// Napkin math: 8 bytes per element, T·headDim/2 double sincos.
#include "common.cuh"

extern "C" __global__ void rope(float* x, const int* pos, const float* invFreq, int T, int nHeads,
                                int headDim, float sign) {
  int half = headDim / 2;
  long long n = (long long)T * half;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
       e += (long long)gridDim.x * blockDim.x) {
    int t = (int)(e / half), i = (int)(e % half);
    float angle = __fmul_rn((float)pos[t], invFreq[i]);
    double sd, cd;
    sincos((double)angle, &sd, &cd);
    float c = (float)cd, s = sign * (float)sd;
    for (int h = 0; h < nHeads; h++) {
      long long b = ((long long)t * nHeads + h) * headDim;
      float x0 = x[b + i], x1 = x[b + i + half];
      x[b + i] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
      x[b + i + half] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
    }
  }
}
