#!/usr/bin/env bash
# Two corral binaries against nginx in one run: the before/after check of a change to the
# request path. Cells are interleaved in rounds (nginx, A, B in a rotating order), so noise
# on this shared machine falls on all three alike; medians and spreads are reported, with
# CPU per request, which is steadier than requests per second. One binary in both places
# (A A) has come out 0.93-0.98 in front of gunicorn over Unix sockets: for an effect of a few
# percent, run both ways (A B, then B A) and read the two together.
#
#   bench/ab.sh BEFORE_BIN AFTER_BIN          # e.g. a release build of main's parent
#   ROUNDS=5 DURATION=4 CONNS="16 64" bench/ab.sh A B
#   B_SERVER='trusted_proxies = ["127.0.0.1"]' B_TABLES='[headers]
#   preset = "strict"' bench/ab.sh BIN BIN     # one build, a setting off (A) and on (B)
#   WRK_HEADER='X-Forwarded-For: 203.0.113.9'  # a field every request carries
#   NGINX_HTTP='gzip on;'                      # lines for nginx's http block
#   B_ACCESS=true bench/ab.sh BIN BIN          # the access log off (A) and on (B); level info,
#                                              # as builds before 97dddfe dropped access lines at warn
#   THREADS=2 UPSTREAM=remote bench/ab.sh A B  # two proxy threads (nginx: 2 workers), each corral
#                                              # in front of nginx's upstream as a remote pool
#   UPSTREAM=gunicorn BIND=unix bench/ab.sh A B  # in front of Python: each corral supervises four
#                                              # `gunicorn -w 1` sync workers (`concurrency = 1`, over
#                                              # BIND = tcp or unix), nginx proxies `gunicorn -w 4`;
#                                              # `/` at 32 connections unless PATH_Q / CONNS say
#
# Every server binds 127.0.0.1 and is stopped on exit; every load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
A=${1:?usage: bench/ab.sh BEFORE_CORRAL AFTER_CORRAL}
B=${2:?usage: bench/ab.sh BEFORE_CORRAL AFTER_CORRAL}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
UPSTREAM=${UPSTREAM:-testapp}
case $UPSTREAM in
  testapp|remote) CONNS=${CONNS:-"16 64"}; PATH_Q=${PATH_Q:-/bytes?n=0} ;;
  gunicorn) CONNS=${CONNS:-32}; PATH_Q=${PATH_Q:-/} ;;
  *) echo "UPSTREAM is testapp, remote or gunicorn, not $UPSTREAM" >&2; exit 2 ;;
esac
work_dir ab

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release -q -p corral-testapp
APP=$PWD/target/release/corral-testapp
if [ "$UPSTREAM" = gunicorn ]; then
  VENV=bench/.venv
  [ -x "$VENV/bin/gunicorn" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q gunicorn; }
  GUNICORN=$PWD/$VENV/bin/gunicorn
  case ${BIND:-tcp} in
    tcp) listen='"127.0.0.1:{port}"' ;;
    unix) listen='"unix:{socket}"' ;;
    *) echo "BIND is tcp or unix, not $BIND" >&2; exit 2 ;;
  esac
  POOL="command = [\"$GUNICORN\", \"-w\", \"1\", \"-b\", $listen, \"--chdir\", \"$PWD/bench\", \"wsgi:app\"]
bind = \"${BIND:-tcp}\"
workers = 4
concurrency = 1
queue_size = 10000
ready = \"http\"
[pools.bench.health]
path = \"/\""
else
  POOL="command = [\"$APP\", \"--port\", \"{port}\"]
workers = 1
concurrency = 4096
ready = \"tcp\""
fi
TICK=$(getconf CLK_TCK)

# CPU ticks of some processes (nginx: all its workers)
cpu_ticks() { local s=0 p; for p in $1; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$s"; }

# start_corral NAME BIN SERVER_LINES TABLES [ACCESS] -> sets PORT_<NAME>, PID_<NAME>
start_corral() {
  local port admin
  port=$(free_port); admin=$(free_port)
  cat > "$WORK/$1.toml" <<TOML
[server]
listen = ["127.0.0.1:$port"]
admin = "127.0.0.1:$admin"
control_socket = "$WORK/$1.sock"
runtime_dir = "$WORK/$1-run"
threads = ${THREADS:-1}
$3
[log]
access = ${5:-false}
level = "$([ "${5:-false}" = true ] && echo info || echo warn)"
$4
[pools.bench]
$POOL
TOML
  "$2" run -c "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  wait_port "$port"; wait_ready "$admin"
  printf -v "PORT_$1" %s "$port"; printf -v "PID_$1" %s "$pid"
}

UP=$(free_port); NGINX_PORT=$(free_port)
if [ "$UPSTREAM" = gunicorn ]; then
  "$GUNICORN" -w 4 -b "127.0.0.1:$UP" --chdir bench wsgi:app >"$WORK/gunicorn.log" 2>&1 & PIDS+=($!)
else
  "$APP" --port "$UP" >/dev/null 2>&1 & PIDS+=($!)
fi
wait_port "$UP"
[ "$UPSTREAM" = remote ] && POOL="upstreams = [\"127.0.0.1:$UP\"]
concurrency = 4096"
NGINX_WORKERS=${THREADS:-1} nginx_conf "$WORK" "$NGINX_PORT" "$UP" "${NGINX_HTTP:-}"
nginx -c "$WORK/nginx.conf" & PIDS+=($!)
wait_port "$NGINX_PORT"
for _ in $(seq 50); do [ -s "$WORK/nginx.pid" ] && break; sleep 0.1; done
PID_nginx=$(pgrep -P "$(cat "$WORK/nginx.pid")" | xargs)
PORT_nginx=$NGINX_PORT
start_corral before "$A" "${A_SERVER:-}" "${A_TABLES:-}" "${A_ACCESS:-false}"
start_corral after "$B" "${B_SERVER:-}" "${B_TABLES:-}" "${B_ACCESS:-false}"

# cell NAME CONNS -> appends "rps us_per_req p50_us p99_us" to $WORK/NAME-CONNS
cell() {
  local port_var="PORT_$1" pid_var="PID_$1" before after rps
  before=$(cpu_ticks "${!pid_var}")
  local extra=(); [ -n "${WRK_HEADER:-}" ] && extra=(-H "$WRK_HEADER")
  read -r rps p50 p99 < <(wrk -t1 -c"$2" -d"${DURATION}s" -s bench/latency.lua "${extra[@]}" "http://127.0.0.1:${!port_var}$PATH_Q" 2>/dev/null | awk '/^RESULT/ {print $2, $3, $4}')
  after=$(cpu_ticks "${!pid_var}")
  awk -v r="$rps" -v b="$before" -v a="$after" -v t="$TICK" -v d="$DURATION" -v p50="$p50" -v p99="$p99" \
    'BEGIN { printf "%s %.2f %d %d\n", r, (a-b)/t/(r*d)*1e6, p50, p99 }' >> "$WORK/$1-$2"
}

# What one answer weighs on each stack (compressed or not), with the load's own header.
sizes=()
for name in nginx before after; do
  port_var="PORT_$name"
  hdr=(); [ -n "${WRK_HEADER:-}" ] && hdr=(-H "$WRK_HEADER")
  sizes+=("$name $(curl -s -o /dev/null -w '%{size_download}' "${hdr[@]}" "http://127.0.0.1:${!port_var}$PATH_Q")")
done

stacks=(nginx before after)
for round in $(seq "$ROUNDS"); do
  # Rotated each round and run backwards every other round, so that each stack follows each
  # other one as often: in a plain rotation "after" always runs right after "before".
  order=()
  for i in 0 1 2; do order+=("${stacks[$(( (i + round) % 3 ))]}"); done
  [ $((round % 2)) -eq 0 ] && order=("${order[2]}" "${order[1]}" "${order[0]}")
  for c in $CONNS; do
    for name in "${order[@]}"; do cell "$name" "$c"; done
  done
  echo "round $round of $ROUNDS done" >&2
done

echo
echo "$ROUNDS rounds of ${DURATION} s cells, wrk -t1, $PATH_Q, keep-alive; corral ${THREADS:-1} proxy thread(s), nginx ${THREADS:-1} worker(s); upstream: $UPSTREAM${BIND:+ over $BIND}."
echo "Requests/s and CPU µs per request (user+system) of the proxy process: median (min-max)."
echo "Body bytes of one answer: ${sizes[*]}."
echo
echo "| conns | nginx rps | before rps | after rps | before/nginx | after/nginx | nginx µs/req | before µs/req | after µs/req |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in $CONNS; do
  # Ratios are taken per round (the cells of one round ran side by side), then the median.
  paste "$WORK/before-$c" "$WORK/nginx-$c" | awk '{printf "%.3f\n", $1/$5}' > "$WORK/rb-$c"
  paste "$WORK/after-$c" "$WORK/nginx-$c" | awk '{printf "%.3f\n", $1/$5}' > "$WORK/ra-$c"
  echo "| $c | $(stat "$WORK/nginx-$c" 1) | $(stat "$WORK/before-$c" 1) | $(stat "$WORK/after-$c" 1) | $(stat "$WORK/rb-$c" 1) | $(stat "$WORK/ra-$c" 1) | $(stat "$WORK/nginx-$c" 2) | $(stat "$WORK/before-$c" 2) | $(stat "$WORK/after-$c" 2) |"
done
echo
echo "After against before, per round (the two ran back to back), median (min-max): rps ratio above"
echo "1 and CPU ratio below 1 favour after."
echo
echo "| conns | after/before rps | after/before CPU µs/req |"
echo "|---|---|---|"
for c in $CONNS; do
  paste "$WORK/after-$c" "$WORK/before-$c" | awk '{printf "%.3f %.3f\n", $1/$5, $2/$6}' > "$WORK/ab-$c"
  echo "| $c | $(stat "$WORK/ab-$c" 1) | $(stat "$WORK/ab-$c" 2) |"
done
echo
echo "Latency, p50 / p99 in µs, medians of the rounds."
echo
echo "| conns | nginx | before | after |"
echo "|---|---|---|---|"
# lat NAME CONNS -> "p50 / p99", the medians
lat() { echo "$(stat "$WORK/$1-$2" 3 | cut -d' ' -f1) / $(stat "$WORK/$1-$2" 4 | cut -d' ' -f1)"; }
for c in $CONNS; do
  echo "| $c | $(lat nginx "$c") | $(lat before "$c") | $(lat after "$c") |"
done
