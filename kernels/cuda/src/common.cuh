// Shared device helpers of the parrot CUDA kernels: weight decoders for the
// four frozen-weight kinds of package kernels, and warp/block reductions.
//
// Every kernel takes its sizes as 32-bit ints (the host checks they fit)
// and forms element offsets in 64 bits. No kernel assumes more than 4-byte
// alignment of an activation buffer: a Buf may be any slice of an
// allocation. Uploaded weights are 256-byte aligned (kernels/cuda's
// layoutOf), which the vectorised loads below rely on.
#pragma once

#include <math.h>
#include <stdint.h>

#define WARP 32

// ---- weight kinds (kernels/cuda matKind) ----

// F32: element i is d[i].
struct WF32 {
  const float* d;
  __device__ __forceinline__ float at(long long i) const { return __ldg(d + i); }
  // load8: elements i..i+7, i a multiple of 8 (32-byte aligned).
  __device__ __forceinline__ void load8(long long i, const float*, float w[8]) const {
    float4 a = __ldg(reinterpret_cast<const float4*>(d + i));
    float4 b = __ldg(reinterpret_cast<const float4*>(d + i) + 1);
    w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w;
    w[4] = b.x; w[5] = b.y; w[6] = b.z; w[7] = b.w;
  }
};

// NF4 in the bitsandbytes layout (bitsandbytes functional.py quantize_4bit /
// dequantize_4bit, csrc/kernels.cu kDequantizeBlockwise): element i is
// code[nibble_i] * absmax[i/64], element 2j the HIGH nibble of p[j] and
// 2j+1 the low one; blocks run over the row-major flattening, so they may
// straddle rows.
struct WNF4 {
  const unsigned char* p;
  const float* absmax;
  const float* code;  // [16] in device memory
  __device__ __forceinline__ float at(long long i) const {
    unsigned b = __ldg(p + (i >> 1));
    unsigned nib = (i & 1) ? (b & 15u) : (b >> 4);
    return __ldg(code + nib) * __ldg(absmax + (i >> 6));
  }
  // load8 with the code book in shared memory (sc): one 32-bit word holds
  // 8 elements (byte k: elements 2k, 2k+1), and a group of 8 never
  // straddles a 64-element block. The product is rounded to float32 per
  // element, as bitsandbytes dequantizes.
  __device__ __forceinline__ void load8(long long i, const float* sc, float w[8]) const {
    unsigned v = __ldg(reinterpret_cast<const unsigned*>(p + (i >> 1)));
    float s = __ldg(absmax + (i >> 6));
#pragma unroll
    for (int k = 0; k < 4; k++) {
      unsigned b = (v >> (8 * k)) & 0xffu;
      w[2 * k] = sc[b >> 4] * s;
      w[2 * k + 1] = sc[b & 15u] * s;
    }
  }
};

// BF16: element i is the bfloat16 d[i] widened (the top half of a float32).
struct WBF16 {
  const unsigned short* d;
  __device__ __forceinline__ float at(long long i) const {
    return __uint_as_float((unsigned)__ldg(d + i) << 16);
  }
  // load8: one 16-byte load (i a multiple of 8).
  __device__ __forceinline__ void load8(long long i, const float*, float w[8]) const {
    uint4 v = __ldg(reinterpret_cast<const uint4*>(d + i));
    unsigned u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
      w[2 * k] = __uint_as_float(u[k] << 16);
      w[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
  }
};

// Q8: element i is float(q[i]) * scale[i/32] (blocks of 32 within a row,
// llama.cpp's Q8_0 without the fp16 scale).
struct WQ8 {
  const signed char* q;
  const float* scale;
  __device__ __forceinline__ float at(long long i) const {
    return (float)__ldg(q + i) * __ldg(scale + (i >> 5));
  }
  // load8: one 8-byte load (i a multiple of 8, so one scale).
  __device__ __forceinline__ void load8(long long i, const float*, float w[8]) const {
    uint2 v = __ldg(reinterpret_cast<const uint2*>(q + i));
    float s = __ldg(scale + (i >> 5));
#pragma unroll
    for (int k = 0; k < 4; k++) {
      w[k] = (float)(signed char)((v.x >> (8 * k)) & 0xffu) * s;
      w[4 + k] = (float)(signed char)((v.y >> (8 * k)) & 0xffu) * s;
    }
  }
};

// Weight<KIND>::make builds the decoder from the three pointers every
// weight-taking kernel receives (data, scale, code; unused ones are 0).
template <int KIND> struct Weight;
template <> struct Weight<0> {
  typedef WF32 T;
  static __device__ T make(const void* d, const float*, const float*) { return T{(const float*)d}; }
};
template <> struct Weight<1> {
  typedef WNF4 T;
  static __device__ T make(const void* d, const float* s, const float* c) {
    return T{(const unsigned char*)d, s, c};
  }
};
template <> struct Weight<2> {
  typedef WBF16 T;
  static __device__ T make(const void* d, const float*, const float*) {
    return T{(const unsigned short*)d};
  }
};
template <> struct Weight<3> {
  typedef WQ8 T;
  static __device__ T make(const void* d, const float* s, const float*) {
    return T{(const signed char*)d, s};
  }
};

// ---- reductions ----

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// block_sum_d: the sum over the block (blockDim.x a multiple of 32, at
// most 1024) in a fixed order, so a kernel gives the same bits every run.
// sh holds 32 doubles; every thread gets the result.
__device__ __forceinline__ double block_sum_d(double v, double* sh) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum_d(v);
  __syncthreads();  // sh may still be read from a previous call
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.0;
  return warp_sum_d(v);
}

__device__ __forceinline__ float block_max(float v, float* sh) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(v);
}
