#!/usr/bin/env bash
# Instructions per request of one corral build, counted by callgrind over the whole corral
# process (every thread, user space only): the figure that does not move with the machine's
# noise, for before/after checks of the request path (docs/BENCHMARKS.md, tuning log).
#
#   bench/callgrind.sh BIN [CONNS] [REQUESTS]     # default 16 connections, 20000 requests
#   POOL=remote bench/callgrind.sh BIN            # a remote pool (`upstreams`) instead
#   ACCESS=true bench/callgrind.sh BIN            # with the access log on
#   ROUTES=2 REQ_PATH=/static/1k.bin bench/callgrind.sh BIN
#                                    # behind [[routes]]: /static (a 1 KiB file) and / (the pool);
#                                    # ROUTES=51 puts bench/static.sh's 49 other routes first
#
# One proxy thread; h2load --h1 on /bytes?n=0 of the release test app; 2,000 requests to
# warm up, then the counters zeroed, REQUESTS counted, and dumped. Prints the total and the
# per-request figure, and keeps the dump (read it with callgrind_annotate) in $KEEP (default
# /tmp/corral-callgrind-NAME, NAME the binary's file name).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
BIN=$(realpath "${1:?usage: bench/callgrind.sh BIN [CONNS] [REQUESTS]}")
CONNS=${2:-16}
REQUESTS=${3:-20000}
KEEP=${KEEP:-/tmp/corral-callgrind-$(basename "$BIN")}
work_dir callgrind
cargo build --release -q -p corral-testapp
APP=$PWD/target/release/corral-testapp
PORT=$(free_port); ADMIN=$(free_port)
if [ "${POOL:-supervised}" = remote ]; then
  UP=$(free_port)
  "$APP" --port "$UP" >/dev/null 2>&1 & PIDS+=($!)
  wait_port "$UP"
  pool="upstreams = [\"127.0.0.1:$UP\"]
concurrency = 4096"
else
  pool="command = [\"$APP\", \"--port\", \"{port}\"]
workers = 1
concurrency = 4096
ready = \"tcp\""
fi
routes=""
if [ -n "${ROUTES:-}" ]; then
  mkdir -p "$WORK/files"; head -c 1024 /dev/urandom >"$WORK/files/1k.bin"
  if [ "$ROUTES" = 51 ]; then
    for i in $(seq 20); do routes+=$(printf '[[routes]]\nhost = "h%d.example.com"\nredirect = "https://example.com{path}"\n' "$i")$'\n'; done
    for i in $(seq 10); do routes+=$(printf '[[routes]]\nhost = "*.w%d.example.com"\nredirect = "https://example.com{path}"\n' "$i")$'\n'; done
    for i in $(seq 19); do routes+=$(printf '[[routes]]\npath_prefix = "/section%d/sub"\nredirect = "https://example.com{path}"\n' "$i")$'\n'; done
  fi
  routes+="[[routes]]
path_prefix = \"/static\"
static = \"$WORK/files\"
[[routes]]
pools = [\"bench\"]"
fi
REQ_PATH=${REQ_PATH:-/bytes?n=0}
cat > "$WORK/corral.toml" <<TOML
[server]
listen = ["127.0.0.1:$PORT"]
admin = "127.0.0.1:$ADMIN"
control_socket = "$WORK/corral.sock"
runtime_dir = "$WORK/run"
threads = 1
[log]
access = ${ACCESS:-false}
level = "warn"
$routes
[pools.bench]
$pool
TOML
timeout 900 valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
  "$BIN" run -c "$WORK/corral.toml" >"$WORK/corral.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT"
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.2; done
# valgrind runs corral in its own process (timeout is its parent)
VG=$(pgrep -P "${PIDS[-1]}" | head -1)
# A static route keeps a small file in memory once it has been unchanged for 2 s: the
# file made above has settled before the count starts.
[ -n "${ROUTES:-}" ] && sleep 2
h2load --h1 -c"$CONNS" -n2000 "http://127.0.0.1:$PORT$REQ_PATH" >/dev/null
callgrind_control --zero "$VG" >/dev/null
h2load --h1 -c"$CONNS" -n"$REQUESTS" "http://127.0.0.1:$PORT$REQ_PATH" | grep -E "^requests:|^status codes:"
callgrind_control --dump "$VG" >/dev/null
sleep 1
dump=$(find "$WORK" -name 'cg.out.*' | sort | tail -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
mkdir -p "$KEEP"; cp "$dump" "$KEEP/cg.out"
echo "$(basename "$BIN") c=$CONNS ${POOL:-supervised}${ROUTES:+ routes=$ROUTES} $REQ_PATH: $total instructions, $((total / REQUESTS)) per request (dump: $KEEP/cg.out)"
