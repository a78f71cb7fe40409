#!/usr/bin/env bash
# The CUDA backend's check on a machine with an NVIDIA GPU, in one call of
# at most 8 minutes, from binaries built elsewhere by scripts/gpu-build.sh
# (nothing is compiled here):
#   1. kerneltest: every op of the backend (forward, LoRA, training)
#      against kernels/ref, fresh random inputs, poisoned outputs, and the
#      vectorised decode GEMV on aligned inputs (kerneltest's odd offsets
#      never reach it);
#   2. parity of CUDA and CPU on testdata/stories260K: greedy tokens (f32
#      and NF4 weights), a batch mixing the base model with two adapters,
#      and the losses of five QLoRA training steps;
#   3. device-to-device copy bandwidth (the decode floor's peer), and a
#      chain of 200 decode-shaped ops eager and replayed as a captured CUDA
#      graph (same bits; time per op: the launch gaps);
#   4. decode tokens/s and a 512-token prefill on the Llama-3.2-1B-shaped
#      NF4 model made by genmodel here, with the lm_head as stored (bf16)
#      and in 8 bits, against the copy bandwidth of the same process; then
#      QLoRA optimizer steps/s on it (rank 16, seven projections, 2 x 4
#      micro-batches of 256 tokens).
#   5. if time is left: steps 1 and the finetune figure again with the
#      GEMMs on tensor cores (3xTF32; cuda.Options.TensorCores, off by
#      default), not counted in the exit status.
# Each step has its own time limit and log (in $OUT if set, else a temp
# dir); a table of results comes last. The exit status is 0 only if every
# counted step passed (graph and the *-tc steps are reported only).
#
#   bash scripts/gpu-check.sh [BINDIR]     (default build/gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$(cd "${1:-build/gpu}" && pwd)
logs=${OUT:-$(mktemp -d)}
mkdir -p "$logs"
t0=$(date +%s)
for f in cudatest genmodel; do
  if [ ! -f "$bin/$f" ]; then
    echo "gpu-check: $bin/$f missing: run scripts/gpu-build.sh on the build machine and carry $bin" >&2
    exit 2
  fi
done
# A copy that lost its exec bits (or a read-only tree): run copies.
if [ ! -x "$bin/cudatest" ] || [ ! -x "$bin/genmodel" ]; then
  tbin=$(mktemp -d)
  cp "$bin/cudatest" "$bin/genmodel" "$bin/COMMIT" "$tbin/" 2>/dev/null
  chmod +x "$tbin/cudatest" "$tbin/genmodel"
  bin=$tbin
fi
cat "$bin/COMMIT" 2>/dev/null | head -5
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>&1 | head -2
# The test binary links the driver's libcuda.so.1: where the loader does
# not find it, look in the usual driver folders.
if ldd "$bin/cudatest" 2>/dev/null | grep -q 'libcuda.so.1 => not found'; then
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/cuda/compat /usr/local/cuda/lib64; do
    if [ -e "$d/libcuda.so.1" ]; then
      export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      break
    fi
  done
fi
# One quick start of the binary (cu's init runs cuInit, and exits the
# process when it fails): fail here once rather than in every step.
if ! out=$(cd "$root/kernels/cuda" && timeout 60 "$bin/cudatest" -test.list '^TestCopyBandwidth$' 2>&1); then
  echo "gpu-check: the test binary does not start:" >&2
  echo "$out" | tail -20 >&2
  ldd "$bin/cudatest" >&2
  exit 3
fi

# The 1B-shaped model, generated while the kernel suite runs.
# Its log stays out of $logs: the device tool brings back at most 8 files
# from $OUT, and the steps below write up to 8 logs.
model=${GPU_CHECK_MODEL_DIR:-/tmp/parrot-llama32-1b-nf4}
genlog=$(mktemp)
if [ ! -f "$model/config.json" ]; then
  # Made beside and renamed when whole: genmodel writes config.json
  # first, so a run cut short must not leave a directory that looks done.
  ( rm -rf "$model.part" &&
    timeout 240 "$bin/genmodel" --preset llama32-1b --quantize --out "$model.part" >"$genlog" 2>&1 &&
    mv "$model.part" "$model" || echo "genmodel failed: $?" >>"$genlog" ) &
  genpid=$!
else
  genpid=
fi

declare -A status
order=()
# step NAME LIMIT_S TEST_REGEX [ENV...]: runs the test binary from its
# package directory (tests read testdata relative to it).
step() {
  local name=$1 limit=$2 run=$3
  shift 3
  local s=$(date +%s)
  (cd "$root/kernels/cuda" && env "$@" timeout "$limit" "$bin/cudatest" -test.run "$run" -test.v -test.count 1 \
    -test.timeout "$((limit + 30))s") >"$logs/$name.log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - s))
  local res=PASS
  if [ $rc -eq 124 ]; then res="TIMEOUT(${limit}s)"; elif [ $rc -ne 0 ]; then res="FAIL(rc=$rc)"; fi
  if grep -q -- '--- SKIP' "$logs/$name.log" && [ $rc -eq 0 ]; then res=SKIP; fi
  status[$name]="$res ${dt}s"
  order+=("$name")
  echo "== $name: $res in ${dt}s (log $logs/$name.log)"
  if [ "$res" != PASS ]; then
    grep -E -- '--- FAIL|panic|Error|error|not implemented|cuda:' "$logs/$name.log" | head -25
  fi
}

# optional NAME LIMIT ...: step, when it still fits in the 8 minutes
# (470 s, leaving time for the table).
optional() {
  local name=$1 limit=$2
  if [ $(($(date +%s) - t0 + limit)) -gt 470 ]; then
    status[$name]="NOT RUN (out of time)"
    order+=("$name")
    return
  fi
  step "$@"
}

step kerneltest 150 '^(TestAcceptance|TestMatMulAligned)$'
step parity 60 '^(TestGreedyParity|TestLoRAParity|TestTrainParity)$'
step bandwidth 20 '^TestCopyBandwidth$'
step graph 30 '^TestGraphReplay$'
if [ -n "$genpid" ]; then wait "$genpid"; fi
if [ -f "$model/config.json" ]; then tail -3 "$genlog"; else tail -20 "$genlog"; fi
if [ -f "$model/config.json" ]; then
  step decode 120 '^TestDecodeSpeed$' PARROT_BENCH_MODEL="$model" PARROT_BENCH_TG=128
  step finetune 90 '^TestFinetuneSpeed$' PARROT_BENCH_MODEL="$model" PARROT_BENCH_STEPS=6 PARROT_BENCH_SEQ=256
else
  status[decode]="SKIP (no model: genmodel's log above)"
  order+=(decode)
fi
# The tensor-core GEMMs (cuda.Options.TensorCores, off by default): the
# same suite, then the finetune figure with them. Their results do not
# decide the exit status (they are an experiment until this passes once).
optional kerneltest-tc 100 '^(TestAcceptance|TestMatMulAligned|TestTrainParity)$' PARROT_CUDA_TC=1
if [ -f "$model/config.json" ] && [[ ${status[kerneltest-tc]:-} == PASS* ]]; then
  optional finetune-tc 80 '^TestFinetuneSpeed$' PARROT_CUDA_TC=1 PARROT_BENCH_MODEL="$model" PARROT_BENCH_STEPS=6 PARROT_BENCH_SEQ=256
fi

echo
echo "== kerneltest subtests that failed"
grep -E -- '^\s*--- FAIL' "$logs/kerneltest.log" | head -30 || true
echo
echo "== gpu-check summary ($(($(date +%s) - t0))s, logs in $logs)"
printf '%-44s %s\n' step result
ok=0
for n in "${order[@]}"; do
  printf '%-44s %s\n' "$n" "${status[$n]}"
  case $n in *-tc | graph) continue ;; esac # experiments: reported, not counted
  case ${status[$n]} in PASS*) ;; *) ok=1 ;; esac
done
echo
printf '%-44s %s\n' figure value
for n in "${order[@]}"; do
  [ -f "$logs/$n.log" ] || continue
  sed -n 's/^gpu-check: \([^=]*\)=\(.*\)$/\1 \2/p' "$logs/$n.log" |
    while read -r k v; do printf '%-44s %s\n' "$n: $k" "$v"; done
done
exit $ok
