#!/usr/bin/env bash
# The cuda build tag without a GPU: fetches cuda.h and the driver's stub
# libcuda.so from Debian's nvidia-cuda-dev (non-free) with apt-get download,
# unpacks just those two files into a cache directory (no system install),
# then vets and builds every package with -tags cuda. When nvcc is on PATH
# it also checks that the committed PTX (kernels/cuda/ptx) is what
# kernels/cuda/gen.sh makes of kernels/cuda/src.
#
#   bash .ci/cuda.sh         fetch (once), vet, build, PTX check
#   bash .ci/cuda.sh env     fetch (once), print the CGO_* exports to eval
#
# The cache is $PARROT_CUDA_CACHE (default ~/.cache/parrot-cuda); a second
# run downloads nothing. apt runs with its lists and archives inside the
# cache, from its own sources file that names the contrib and non-free
# components, so the machine's apt configuration is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${PARROT_CUDA_CACHE:-$HOME/.cache/parrot-cuda}
inc=$cache/include
lib=$cache/lib

fetch() {
  if [ -f "$inc/cuda.h" ] && [ -f "$lib/libcuda.so" ]; then
    return
  fi
  local apt=$cache/apt
  mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$inc" "$lib"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat >"$apt/sources.list" <<EOF
deb [signed-by=$keyring] http://deb.debian.org/debian bookworm main contrib non-free
deb [signed-by=$keyring] http://deb.debian.org/debian bookworm-updates main contrib non-free
deb [signed-by=$keyring] http://deb.debian.org/debian-security bookworm-security main contrib non-free
EOF
  local opts=(
    -o "Dir::Etc::SourceList=$apt/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::Cache=$apt"
    -o "Dir::Cache::Archives=$apt/archives"
    -o "Debug::NoLocking=true"
  )
  # As root, apt drops to the _apt user for downloads, which cannot write
  # into a root-owned cache; the files are ours, so download as ourselves.
  if [ "$(id -u)" -eq 0 ]; then opts+=(-o "APT::Sandbox::User=root"); fi
  echo "fetching nvidia-cuda-dev (cuda.h and the stub libcuda.so) into $cache"
  apt-get "${opts[@]}" update -qq
  (cd "$apt/archives" && apt-get "${opts[@]}" download -qq nvidia-cuda-dev)
  local deb
  deb=$(ls "$apt"/archives/nvidia-cuda-dev_*.deb | head -n1)
  # dpkg -x of the whole package is ~2.5 GB; the build needs two files.
  local tmp
  tmp=$(mktemp -d)
  dpkg-deb --fsys-tarfile "$deb" |
    tar -x -C "$tmp" ./usr/include/cuda.h ./usr/lib/x86_64-linux-gnu/stubs/libcuda.so
  cp "$tmp/usr/include/cuda.h" "$inc/"
  cp "$tmp/usr/lib/x86_64-linux-gnu/stubs/libcuda.so" "$lib/"
  rm -rf "$tmp" "$deb"
}

fetch
# The stub only satisfies the linker (its soname is libcuda.so.1, which
# the binaries then need at run time: the driver's library).
export CGO_ENABLED=1
export CGO_CFLAGS="-I$inc"
export CGO_LDFLAGS="-L$lib"

if [ "${1:-}" = env ]; then
  echo "export CGO_ENABLED=1 CGO_CFLAGS='$CGO_CFLAGS' CGO_LDFLAGS='$CGO_LDFLAGS'"
  exit 0
fi

go vet -tags cuda ./...
go build -tags cuda ./...
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The tagged test binary links too (scripts/gpu-build.sh carries it to a
# GPU). Only built: run here, gorgonia.org/cu's init would exit at once.
go test -tags cuda -c -o "$tmp/cudatest" ./kernels/cuda
rm -f "$tmp/cudatest"
echo "cuda build: vet and build ok (no GPU: nothing run)"

if command -v nvcc >/dev/null 2>&1; then
  if nvcc --version | grep -q 'release 11.8'; then
    bash kernels/cuda/gen.sh "$tmp/ptx"
    if ! diff -r kernels/cuda/ptx "$tmp/ptx" >/dev/null; then
      diff -r kernels/cuda/ptx "$tmp/ptx" | head -20
      echo "kernels/cuda/ptx is stale: run go generate ./kernels/cuda and commit the PTX"
      exit 1
    fi
    echo "PTX up to date with kernels/cuda/src"
  else
    echo "nvcc is not CUDA 11.8 (the committed PTX's compiler): PTX check skipped"
  fi
else
  echo "no nvcc: PTX check skipped"
fi
