#!/usr/bin/env bash
# Builds, on a machine without a GPU, everything scripts/gpu-check.sh runs
# on one, into build/gpu/ (git-ignored; about 20 MB, carried to the GPU
# machine as it is):
#   cudatest  go test -tags cuda -c ./kernels/cuda  (kerneltest, parity, speed)
#   genmodel  go build ./cmd/genmodel                (the 1B-shaped model, made there)
# cuda.h and the stub libcuda.so come from .ci/cuda.sh's cache (Debian's
# nvidia-cuda-dev, fetched once; no system install). The binaries need the
# NVIDIA driver's libcuda.so.1 where they run.
#
#   bash scripts/gpu-build.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/gpu}
mkdir -p "$out"
eval "$(bash .ci/cuda.sh env | tail -n1)"
go test -tags cuda -c -o "$out/cudatest" ./kernels/cuda
CGO_ENABLED=0 go build -o "$out/genmodel" ./cmd/genmodel
git rev-parse --short HEAD >"$out/COMMIT" 2>/dev/null || true
git status --porcelain --untracked-files=no | sed 's/^/dirty: /' >>"$out/COMMIT" || true
ls -la "$out"
