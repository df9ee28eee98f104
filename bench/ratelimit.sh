#!/usr/bin/env bash
# Rate limit costs, in one run: throughput with no rule, one memory-store rule and one Redis
# rule (bench/ab.sh, interleaved rounds), and corral's memory after a spray of distinct
# client addresses through a trusted proxy (every request a new key).
#
#   bench/ratelimit.sh               # needs a release build, wrk, nginx, redis-server
#   SPRAY_SECONDS=40 bench/ratelimit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
cargo build --release -q -p corral -p corral-testapp
BIN=$PWD/target/release/corral
WORK=$(mktemp -d /tmp/corral-rl.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & PIDS+=($!)
sleep 0.5
RULE='[[rate_limits]]
name = "bench"
rate = "1000000/s"
burst = 1000000'

echo "## One memory-store rule against none"
B_TABLES="$RULE" bench/ab.sh "$BIN" "$BIN"
echo
echo "## One Redis rule against none"
B_TABLES="$RULE
[rate_limit_store]
kind = \"redis\"
url = \"redis://127.0.0.1:$RPORT\"" bench/ab.sh "$BIN" "$BIN"

echo
echo "## Memory after a spray of distinct keys"
PORT=$(free_port); ADMIN=$(free_port)
cat > "$WORK/spray.toml" <<TOML
[server]
listen = ["127.0.0.1:$PORT"]
admin = "127.0.0.1:$ADMIN"
control_socket = "$WORK/spray.sock"
runtime_dir = "$WORK/run"
threads = 1
trusted_proxies = ["127.0.0.1"]
[log]
access = false
level = "warn"
$RULE
[pools.bench]
command = ["$PWD/target/release/corral-testapp", "--port", "{port}"]
concurrency = 4096
ready = "tcp"
TOML
"$BIN" run -c "$WORK/spray.toml" >"$WORK/spray.log" 2>&1 & CPID=$!; PIDS+=("$CPID")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
before=$(awk '/VmRSS/ {print $2}' "/proc/$CPID/status")
wrk -t1 -c64 -d"${SPRAY_SECONDS:-40}s" -s bench/spray.lua "http://127.0.0.1:$PORT/" | grep -E "requests in|Requests/sec"
after=$(awk '/VmRSS/ {print $2}' "/proc/$CPID/status")
echo "corral RSS: $before kB before, $after kB after (max_keys 100000 by default)"
