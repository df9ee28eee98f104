#!/usr/bin/env bash
# Compression costs, in one run each (bench/ab.sh: interleaved rounds, medians, spreads):
#   1. a 64 KiB JSON answer compressed with gzip level 1, corral against nginx's `gzip on`
#      at the same level (nginx's default `gzip_comp_level`); A and B are the same corral
#      config, so their difference shows the noise of the run;
#   2. compression on but the answer an image (not compressed), against compression off:
#      what qualifying an answer costs on the plain path.
#
#   bench/compression.sh                 # both; needs a release build, wrk, nginx
#   ROUNDS=9 bench/compression.sh image  # or: json
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p corral -p corral-testapp
BIN=$PWD/target/release/corral
LEVEL=${LEVEL:-1}
GZIP="[compression]
enabled = true
algorithms = [\"gzip\"]
level = { gzip = $LEVEL }"

SECTIONS=${*:-json image}

if [[ " $SECTIONS " == *" json "* ]]; then
echo "## 64 KiB JSON, gzip level $LEVEL: corral (A and B alike) against nginx gzip"
NGINX_HTTP="gzip on; gzip_comp_level $LEVEL; gzip_types application/json; gzip_min_length 1024; gzip_proxied any; gzip_vary on;" \
  A_TABLES="$GZIP" B_TABLES="$GZIP" WRK_HEADER='Accept-Encoding: gzip' \
  PATH_Q='/payload?n=65536' bench/ab.sh "$BIN" "$BIN"
echo
fi

if [[ " $SECTIONS " == *" image "* ]]; then
echo "## A 4 KiB image with compression off (A) and on (B); nginx without gzip"
B_TABLES="[compression]
enabled = true" WRK_HEADER='Accept-Encoding: gzip, br, zstd' \
  PATH_Q='/payload?n=4096&type=image/png' bench/ab.sh "$BIN" "$BIN"
fi
