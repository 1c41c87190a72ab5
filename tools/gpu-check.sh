#!/usr/bin/env bash
# GPU checks of the `cuda` feature: the parity tests on burn-cuda, the GPU
# benchmarks (vlrl and transformers side by side) and the med-r1 front door.
#
# Two halves, because a GPU machine need not have Rust:
#   tools/gpu-check.sh build [BUNDLE]      # with Rust: build the CUDA binaries
#                                          # into BUNDLE (default .gpu/), xz'd
#   tools/gpu-check.sh run [BUNDLE] [OUT]  # on the GPU machine, from the repo
#                                          # root: run them; logs go to OUT
# On a machine with both, `build` then `run`. docs/gpu.md has the results.
#
# CUDARC_CUDA_VERSION (default 13000 = CUDA 13.0) picks the CUDA API the
# bindings are built for; it must not be newer than the machine's driver.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
bundle="${2:-.gpu}"

# Test binaries worth running on the GPU: the matmul precision probe, every
# model/loss parity check and the training tests. Names are cargo test
# targets; GPU_TESTS="a b" picks some (at build and at run time).
read -r -a TESTS <<<"${GPU_TESTS:-cuda_precision lm_parity vlm_parity rope_index tower_parity tiny_vlm_parity loss_parity train lora multi_turn med_r1}"
BENCHES=(backend generate)

build() {
  set -e
  export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
  mkdir -p "$bundle/bin"
  cargo build --release -p recipes --features cuda
  local target_dir
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  cp "$target_dir/release/recipes" "$bundle/bin/"
  # Test and bench executables, found from cargo's JSON messages.
  {
    cargo test --release --features cuda -p vlrl -p vlrl-qwen -p vlrl-vision -p vlrl-grpo -p recipes \
      $(printf -- '--test %s ' "${TESTS[@]}") --no-run --message-format json
    cargo bench --features cuda -p vlrl --no-run --message-format json
  } | python3 -c '
import json, sys, shutil
want = set(sys.argv[2].split()) | set(sys.argv[3].split())
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in want \
            and m["target"]["kind"] != ["bin"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
        print("bundled", m["target"]["name"])
' "$bundle/bin" "${TESTS[*]}" "${BENCHES[*]}"
  strip "$bundle"/bin/*
  # The tests find fixtures by the absolute source path they were built in.
  pwd >"$bundle/bin/SOURCE_ROOT"
  # The binaries share most of their code: a dictionary that spans them all
  # makes the archive ~4x smaller than xz's default (the device tool takes 64 MiB).
  tar -C "$bundle" -cf - bin | xz -T1 --lzma2=preset=6,dict=384MiB >"$bundle/bundle.tar.xz"
  rm -rf "$bundle/bin"
  ls -l "$bundle/bundle.tar.xz"
}

run() {
  local out="${3:-${OUT:-/tmp/gpu-check}}"
  mkdir -p "$out"
  local work=/tmp/gpu-check-bundle
  rm -rf "$work" && mkdir -p "$work" && tar -C "$work" -xJf "$bundle/bundle.tar.xz"
  local bin="$work/bin" src
  src="$(cat "$bin/SOURCE_ROOT")"
  if [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; fi
  # NVRTC compiles the kernels at run time; put every copy we find on the path.
  local libs
  # (Never a `stubs` folder: its libcuda.so is a link-time stub, not the driver.)
  libs="$(find /usr/local /usr/lib /opt -name 'libnvrtc.so*' -printf '%h\n' 2>/dev/null | grep -v /stubs | sort -u | paste -sd:)"
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}${libs}"
  {
    date -u; nvidia-smi; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; nproc
  } >"$out/env.log" 2>&1

  # GPU_STEPS picks what runs, in this order (default: all three).
  local steps=" ${GPU_STEPS:-tests med-r1 bench} "
  local t start status
  if [[ $steps == *" tests "* ]]; then
    echo "== parity and training tests on burn-cuda" | tee "$out/tests.log"
    for t in "${TESTS[@]}"; do
      [ -x "$bin/$t" ] || { echo "MISSING $t" | tee -a "$out/tests.log"; continue; }
      start=$(date +%s%N)
      timeout "${TEST_TIMEOUT:-150}" "$bin/$t" >>"$out/tests.log" 2>&1
      status=$?
      printf '%-16s exit %3d  %6d ms\n' "$t" "$status" "$(( ($(date +%s%N) - start) / 1000000 ))" | tee -a "$out/tests.log"
    done
  fi

  if [[ $steps == *" med-r1 "* ]]; then
    echo "== med-r1 front door on the GPU" | tee "$out/med-r1.log"
    start=$(date +%s)
    timeout "${MED_R1_TIMEOUT:-300}" "$bin/recipes" med-r1 --out /tmp/gpu-med-r1 ${MED_R1_ARGS:-} >>"$out/med-r1.log" 2>&1
    echo "recipes med-r1: exit $? in $(( $(date +%s) - start )) s" | tee -a "$out/med-r1.log"
    cp /tmp/gpu-med-r1/eval.md "$out/med-r1-eval.md" 2>/dev/null
    cp /tmp/gpu-med-r1/metrics.jsonl "$out/med-r1-metrics.jsonl" 2>/dev/null
  fi
  [[ $steps == *" bench "* ]] || return 0

  echo "== benchmarks" | tee "$out/bench.log"
  timeout "${BENCH_TIMEOUT:-150}" "$bin/backend" --bench cuda >>"$out/bench.log" 2>&1
  echo "backend bench: exit $?" | tee -a "$out/bench.log"
  VLRL_BENCH_BACKENDS=cuda timeout "${BENCH_TIMEOUT:-150}" "$bin/generate" --bench >>"$out/bench.log" 2>&1
  echo "generate bench: exit $?" | tee -a "$out/bench.log"
  timeout "${BENCH_TIMEOUT:-150}" python3 benches/compare/hf_generate.py --device cuda --threads 16 \
    --model qwen2-tiny=tests/fixtures/models/qwen2-tiny \
    --model qwen2-cpu512=target/bench-models/qwen2-cpu512 >>"$out/bench.log" 2>&1
  echo "hf_generate (cuda): exit $?" | tee -a "$out/bench.log"
}

case "$mode" in
  build) build ;;
  run) run "$@" ;;
  *) echo "usage: $0 build [BUNDLE] | run [BUNDLE] [OUT]" >&2; exit 2 ;;
esac
