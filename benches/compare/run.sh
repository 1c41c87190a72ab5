#!/usr/bin/env bash
# Side-by-side generation benchmark: vlrl (criterion, benches/generate.rs)
# and Hugging Face transformers `generate` (hf_generate.py) on the same
# checkpoints, prompts and token counts, then one table with the ratios.
#
#   benches/compare/run.sh            # from anywhere in the repository
#   PYTHON=/path/to/python VLRL_BENCH_BACKENDS=flex,ndarray benches/compare/run.sh
#
# Outputs (machine info, raw logs, hf.json, table.md) go to
# $CARGO_TARGET_DIR/bench-compare (default target/bench-compare).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=${PYTHON:-/work/pyref/bin/python}
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-$ROOT/target}")
export VLRL_BENCH_MODELS=${VLRL_BENCH_MODELS:-$TARGET/bench-models}
BACKEND=${VLRL_BENCH_BACKENDS:-flex}
export VLRL_BENCH_BACKENDS=$BACKEND
OUT=$TARGET/bench-compare
mkdir -p "$OUT"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "load before: $(uptime)"
} | tee "$OUT/machine.txt"

# vlrl first: it also writes the CPU-scale checkpoint that HF then loads.
cargo bench -p vlrl --bench generate 2>&1 | tee "$OUT/vlrl.txt"
echo "load after vlrl: $(uptime)" | tee -a "$OUT/machine.txt"

"$PY" benches/compare/hf_generate.py \
    --model "qwen2-tiny=$ROOT/tests/fixtures/models/qwen2-tiny" \
    --model "qwen2-cpu512=$VLRL_BENCH_MODELS/qwen2-cpu512" \
    --threads 2 --json "$OUT/hf.json" 2>&1 | tee "$OUT/hf.txt"
echo "load after hf: $(uptime)" | tee -a "$OUT/machine.txt"

for b in ${BACKEND//,/ }; do
    "$PY" benches/compare/compare.py --criterion "$TARGET/criterion" --hf "$OUT/hf.json" --backend "$b"
    echo
done | tee "$OUT/table.md"
