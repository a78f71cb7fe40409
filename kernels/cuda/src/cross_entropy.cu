// CrossEntropy, for each row t of logits [T, V] whose label is not
// IgnoreIndex (−100):
//   loss[t]      = logsumexp(logits[t,:]) − logits[t, labels[t]]
//   dlogits[t,:] = scale·(softmax(logits[t,:]) − onehot(labels[t]))
// Ignored rows get loss 0 and a zero gradient; a label outside [0, V)
// gets a NaN loss and gradient (kernels/ref would panic). dlogits may
// alias logits.
//
// One block of 256 threads per row (llm.c's fused_classifier, without the
// fused matmul): max, then Σ exp in double, then the gradient; every
// reduction in a fixed order, so the in-place and out-of-place results are
// the same bits. Napkin math, V = 128256: 1 MB per row read twice and
// written once; T = 1024 is 1.5 GB, ~0.4 ms at 4 TB/s.
#include "common.cuh"

#define IGNORE_INDEX (-100)

extern "C" __global__ void __launch_bounds__(256)
    cross_entropy(float* loss, float* dlogits, const float* logits, const int* labels, int V,
                  float scale) {
  __shared__ double shd[32];
  __shared__ float shf[32];
  __shared__ float target;
  long long base = (long long)blockIdx.x * V;
  int lab = labels[blockIdx.x];
  if (lab == IGNORE_INDEX) {
    if (threadIdx.x == 0) loss[blockIdx.x] = 0.f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) dlogits[base + i] = 0.f;
    return;
  }
  if (lab < 0 || lab >= V) {
    if (threadIdx.x == 0) loss[blockIdx.x] = NAN;
    for (int i = threadIdx.x; i < V; i += blockDim.x) dlogits[base + i] = NAN;
    return;
  }
  if (threadIdx.x == 0) target = logits[base + lab];  // before any write of the row
  float m = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, logits[base + i]);
  m = block_max(m, shf);
  double sum = 0.0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) sum += exp((double)logits[base + i] - (double)m);
  sum = block_sum_d(sum, shd);  // its barriers also publish target
  double lse = (double)m + log(sum);
  if (threadIdx.x == 0) loss[blockIdx.x] = (float)(lse - (double)target);
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    double p = exp((double)logits[base + i] - lse);
    if (i == lab) p -= 1.0;
    dlogits[base + i] = (float)((double)scale * p);
  }
}
