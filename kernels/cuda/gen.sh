#!/usr/bin/env bash
# Compiles every kernels/cuda/src/*.cu to PTX for compute capability 8.0
# (JIT-compiled by the driver for the GPU it meets: Ampere, Hopper), one
# .ptx per source, into the directory given (default: ptx, next to this
# script). Run through go generate ./kernels/cuda; needs nvcc (Debian's
# nvidia-cuda-toolkit, CUDA 11.8). The output depends only on the sources
# and the compiler version, so .ci/cuda.sh can diff it against the
# committed files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/ptx}
mkdir -p "$out"
for src in "$here"/src/*.cu; do
  name=$(basename "$src" .cu)
  # -std=c++14 for the device lambdas of attention.cuh; no fast math: the
  # kernels are checked against kernels/ref to float32 ulps.
  (cd "$here/src" && nvcc -arch=compute_80 --ptx -O3 -std=c++14 -o "$out/$name.ptx" "$name.cu")
done
