#!/usr/bin/env bash
# Slow clients in front of four gunicorn sync workers, corral against nginx with its defaults
# (proxy_buffering and proxy_request_buffering on) in one run: issue 32's acceptance 3 and 6.
# READERS slow readers of SIZE bytes and UPLOADERS slow uploaders of SIZE_UP bytes, each at
# RATE bytes/s (bench/slow_clients.py, every byte checked), arriving evenly over RAMP s (as
# phones do; RAMP=0 sends them all at once: then the fast load also waits, under either
# proxy, behind the workers producing READERS x SIZE bytes, which is worker time, not
# slow-client time), while wrk runs a fast load on `/` (CONNS connections for DURATION s,
# from 1 s after the first slow client). For each proxy: the fast load's requests/s and p99 alone
# and with the slow clients, the slow clients' results; for corral its peak RSS (VmHWM) and
# the temp files it holds after the clients are done.
#
#   bench/slow_clients.sh [CORRAL_BIN]            # default target/release/corral
#   READERS=100 SIZE=8388608 UPLOADERS=10 RATE=524288 RAMP=10 DURATION=20 ROUNDS=1 bench/slow_clients.sh
#
# Every server binds 127.0.0.1 and is stopped on exit; every load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
CORRAL=${1:-target/release/corral}
READERS=${READERS:-100}; SIZE=${SIZE:-8388608}
UPLOADERS=${UPLOADERS:-10}; SIZE_UP=${SIZE_UP:-1048576}
RATE=${RATE:-524288}; DURATION=${DURATION:-20}; CONNS=${CONNS:-16}; RAMP=${RAMP:-10}; ROUNDS=${ROUNDS:-1}
MEMORY=${MEMORY:-128MiB}
GUNICORN=${CORRAL_VENV:-$PWD/target/venv}/bin/gunicorn
command -v wrk >/dev/null && command -v nginx >/dev/null && [ -x "$GUNICORN" ] ||
  { echo "needs wrk, nginx and $GUNICORN" >&2; exit 2; }
[ -x "$CORRAL" ] || { echo "no corral binary at $CORRAL" >&2; exit 2; }
work_dir slow

# fast LABEL PORT: wrk on `/`, "requests/s p99_ms".
fast() {
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/" >"$WORK/$1.wrk"
  awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {
    if (p ~ /ms$/) { sub(/ms$/,"",p) } else if (p ~ /us$/) { sub(/us$/,"",p); p=p/1000 } else if (p ~ /s$/) { sub(/s$/,"",p); p=p*1000 }
    printf "%s %s", r, p }' "$WORK/$1.wrk"
}

# run LABEL PORT: the fast load alone, then with the slow clients; one result line.
run() {
  local alone with slow
  wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$2/" >/dev/null  # warm-up
  alone=$(fast "$1-alone" "$2")
  timeout $((DURATION * 20)) python3 bench/slow_clients.py "$2" "$READERS" "$SIZE" "$UPLOADERS" "$SIZE_UP" "$RATE" "$RAMP" >"$WORK/$1.slow" &
  local clients=$!
  sleep 1
  with=$(fast "$1-with" "$2")
  wait "$clients" || true
  slow=$(cat "$WORK/$1.slow")
  printf "%-7s alone: %s  with slow clients: %s  slow readers, uploads whole, seconds: %s\n" "$1" "$alone" "$with" "$slow"
  echo "$alone $with" >>"$WORK/$1.rounds"
}

# summary LABEL: medians (and ranges) over the rounds, and the p99 ratio with/alone.
summary() {
  local f="$WORK/$1.rounds"
  awk '{print $4 / $2}' "$f" >"$f.ratio"
  printf "%-7s median of %s rounds: alone %s req/s, p99 %s ms; with slow clients %s req/s, p99 %s ms; p99 with/alone %s\n" \
    "$1" "$(wc -l <"$f")" "$(stat "$f" 1)" "$(stat "$f" 2)" "$(stat "$f" 3)" "$(stat "$f" 4)" "$(stat "$f.ratio" 1)"
}

# nginx, its defaults, in front of `gunicorn -w 4` (four sync workers).
UP=$(free_port); NGINX_PORT=$(free_port)
"$GUNICORN" -w 4 -b "127.0.0.1:$UP" --chdir bench slow_app:app >"$WORK/gunicorn.log" 2>&1 & PIDS+=($!)
wait_port "$UP"
nginx_conf "$WORK" "$NGINX_PORT" "$UP" "client_max_body_size 16m;"
nginx -c "$WORK/nginx.conf" & PIDS+=($!)
wait_port "$NGINX_PORT"

# corral in front of four `gunicorn -w 1` (concurrency 1 each), temp files in its own dir.
PORT=$(free_port); ADMIN=$(free_port); mkdir -p "$WORK/temp"
cat > "$WORK/corral.toml" <<TOML
[server]
listen = ["127.0.0.1:$PORT"]
admin = "127.0.0.1:$ADMIN"
control_socket = "$WORK/corral.sock"
runtime_dir = "$WORK/run"
[server.limits]
body_size = "16MiB"
[server.buffering]
memory = "$MEMORY"
temp_dir = "$WORK/temp"
[log]
access = false
level = "warn"
[pools.bench]
command = ["$GUNICORN", "-w", "1", "-b", "127.0.0.1:{port}", "--chdir", "$PWD/bench", "slow_app:app"]
workers = 4
concurrency = 1
queue_timeout = "60s"
ready = "tcp"
TOML
"$CORRAL" run -c "$WORK/corral.toml" >"$WORK/corral.log" 2>&1 & PIDS+=($!)
CORRAL_PID=$!
wait_port "$PORT"; wait_ready "$ADMIN"

echo "slow clients: $READERS readers of $SIZE bytes, $UPLOADERS uploads of $SIZE_UP bytes, at $RATE bytes/s, arriving over ${RAMP}s; fast load: wrk -c$CONNS ${DURATION}s on /; requests/s p99_ms"
# Rounds alternate the two proxies, so a change in the shared machine's load hits both.
for _ in $(seq "$ROUNDS"); do
  run nginx "$NGINX_PORT"
  run corral "$PORT"
done
summary nginx
summary corral
rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$CORRAL_PID/status")
left=$(find "/proc/$CORRAL_PID/fd" -lname "$WORK/temp/*" 2>/dev/null | wc -l)
echo "corral: peak RSS ${rss} MiB (memory budget $MEMORY), temp files open after the clients: $left, named in temp_dir: $(find "$WORK/temp" -type f | wc -l)"
kill -TERM "$CORRAL_PID"
running() { case $(ps -o stat= -p "$CORRAL_PID" 2>/dev/null) in ""|Z*) return 1 ;; esac; }
for _ in $(seq 150); do running || break; sleep 0.1; done
echo "corral stopped on SIGTERM: $(running && echo no || echo yes), files in temp_dir after: $(find "$WORK/temp" -type f | wc -l)"
