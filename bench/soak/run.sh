#!/bin/sh
# bench/soak/run.sh [DURATION_SECONDS] [SEED]: builds the release binary and runs the fault
# soak (bench/soak/soak.py) for DURATION seconds (120 by default; 600 for the figures in
# docs/BENCHMARKS.md), bounded by a timeout. The JSON report goes to $OUT
# (/tmp/corral-soak.json by default). Exit 0 when it passes.
set -eu
cd "$(dirname "$0")/../.."
DURATION=${1:-120}
SEED=${2:-37}
VENV=${CORRAL_VENV:-target/venv}
for tool in redis-server node openssl; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is needed (cargo xtask setup test installs it)" >&2; exit 2; }
done
timeout 1800 cargo build --release --bin corral
exec timeout $((DURATION + 300)) "$VENV/bin/python" bench/soak/soak.py \
  --seconds "$DURATION" --seed "$SEED" --venv "$VENV" --out "${OUT:-/tmp/corral-soak.json}"
