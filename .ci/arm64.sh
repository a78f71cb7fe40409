#!/usr/bin/env bash
# Runs the numerical core's tests as arm64 binaries under qemu user-mode
# emulation: the pure-Go kernels (no AVX2 there) must give the same results,
# the exact stories260K greedy story included.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v qemu-aarch64 >/dev/null; then
  echo "== installing qemu-user"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for pkg in kernels/ref kernels/cpu runtime/quant runtime/sampler runtime/kvpool runtime/llama runtime/engine; do
  bin="$out/$(echo "$pkg" | tr / _).test"
  GOARCH=arm64 go test -c -o "$bin" "./$pkg"
  echo "== arm64: $pkg"
  # Tests read testdata relative to their package directory.
  (cd "$pkg" && qemu-aarch64 "$bin" -test.short -test.timeout 10m)
done
