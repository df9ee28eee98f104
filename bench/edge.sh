#!/usr/bin/env bash
# The edge's cost, in one run (bench/ab.sh: interleaved rounds, medians, spreads): the proxy
# table with `trusted_proxies` and the strict `[headers]` preset on (B) against neither (A).
# wrk's own peer, 127.0.0.1, is the trusted proxy, so every request takes the trusted path.
#
#   bench/edge.sh                          # needs a release build, wrk, nginx
#   ROUNDS=15 DURATION=3 CONNS=32 bench/edge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p corral -p corral-testapp
BIN=$PWD/target/release/corral
B_SERVER='trusted_proxies = ["127.0.0.1"]' B_TABLES='[headers]
preset = "strict"' bench/ab.sh "$BIN" "$BIN"
