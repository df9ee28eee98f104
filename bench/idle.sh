#!/usr/bin/env bash
# Memory per idle keep-alive connection of two corral builds and nginx, in interleaved rounds
# (issue 36, target 3): each round starts every stack afresh in front of one test app, holds N
# connections open (`idle_conns.py`: one request each, then quiet; PATH "-": connect only),
# and takes (RSS with them open - RSS before) / N, SETTLE seconds (default 3) after the last
# one opened: an idle connection is measured idle (corral parks one after a quiet second,
# `forward/park.rs`, and gives the freed memory back at its next sweep). Prints one line per
# stack and count: the median over the rounds, its spread, and the connections held.
#
#   bench/idle.sh BEFORE_BIN AFTER_BIN            # N = 1000 and 10000, 3 rounds
#   COUNTS="10000" ROUNDS=5 PATH_SENT=- SETTLE=1 bench/idle.sh A B
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
A=$(realpath "${1:?usage: bench/idle.sh BEFORE_BIN AFTER_BIN}"); B=$(realpath "${2:?}")
COUNTS=${COUNTS:-"1000 10000"}; ROUNDS=${ROUNDS:-3}; PATH_SENT=${PATH_SENT:-/bytes?n=0}; SETTLE=${SETTLE:-3}
work_dir idle
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p corral-testapp
UP=$(free_port)
target/release/corral-testapp --port "$UP" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$UP"
rss_of() { local s=0 p; for p in "$@"; do s=$((s + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$s"; }

# start STACK -> PORT and the pids whose memory counts, in START_PORT / START_PIDS
start() {
  START_PORT=$(free_port)
  case $1 in
    nginx)
      mkdir -p "$WORK/nginx"; nginx_conf "$WORK/nginx" "$START_PORT" "$UP"
      nginx -c "$WORK/nginx/nginx.conf" & PIDS+=($!); STACK_PID=$!
      wait_port "$START_PORT"
      for _ in $(seq 50); do [ -s "$WORK/nginx/nginx.pid" ] && break; sleep 0.1; done
      START_PIDS=$(pgrep -P "$(cat "$WORK/nginx/nginx.pid")" | xargs) ;;
    *)
      local bin=$A admin; [ "$1" = after ] && bin=$B
      admin=$(free_port)
      cat > "$WORK/$1.toml" <<TOML
[server]
listen = ["127.0.0.1:$START_PORT"]
admin = "127.0.0.1:$admin"
control_socket = "$WORK/$1.sock"
runtime_dir = "$WORK/$1-run"
threads = 1
max_connections = 16384
[server.limits]
keepalive_timeout = "75s"
[log]
level = "warn"
[pools.bench]
upstreams = ["127.0.0.1:$UP"]
concurrency = 4096
TOML
      "$bin" run -c "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 & PIDS+=($!); STACK_PID=$!
      wait_port "$START_PORT"; wait_ready "$admin"
      START_PIDS=$STACK_PID ;;
  esac
}

for n in $COUNTS; do
  for r in $(seq "$ROUNDS"); do
    order="before after nginx"; [ $((r % 3)) = 2 ] && order="after nginx before"; [ $((r % 3)) = 0 ] && order="nginx before after"
    for stack in $order; do
      start "$stack"
      sleep 0.5
      base=$(rss_of $START_PIDS)
      python3 bench/idle_conns.py "$START_PORT" "$n" 600 "$PATH_SENT" > "$WORK/held.out" 2>&1 & holder=$!; PIDS+=("$holder")
      for _ in $(seq 900); do grep -q OPEN "$WORK/held.out" && break; sleep 0.1; done
      sleep "$SETTLE"
      held=$(awk '/OPEN/ {print $2}' "$WORK/held.out")
      rss=$(rss_of $START_PIDS)
      awk -v r="$rss" -v b="$base" -v n="${held:-0}" 'BEGIN { if (n>0) printf "%.2f %d\n", (r-b)/n, n; else print "0 0" }' >> "$WORK/$stack-$n"
      kill "$holder"; wait "$holder" 2>/dev/null || true
      kill "$STACK_PID"; wait "$STACK_PID" 2>/dev/null || true
    done
  done
  for stack in before after nginx; do
    echo "$stack, $n idle connections ($PATH_SENT): kB per connection $(stat "$WORK/$stack-$n" 1), held $(stat "$WORK/$stack-$n" 2)"
  done
done
