#!/usr/bin/env bash
# Slow clients in front of four gunicorn sync workers, corral against nginx with its defaults
# (proxy_buffering and proxy_request_buffering on) in one run: issue 32's acceptance 3 and 6.
# The four workers come in two shapes, each behind both proxies, since the shape alone
# changes the workers' CPU per request (docs/BENCHMARKS.md section 5):
#   nginx    nginx -> `gunicorn -w 4` (one accept queue shared by four forked workers)
#   corral1  corral -> the same `gunicorn -w 4` as one worker, `concurrency = 16`
#            (SHARED_CONCURRENCY), so requests wait in its shared accept queue as behind nginx
#   nginx4   nginx -> four `gunicorn -w 1` (an upstream of four servers)
#   corral   corral -> four `gunicorn -w 1` it supervises, `concurrency = 1` each
# READERS slow readers of SIZE bytes and UPLOADERS slow uploaders of SIZE_UP bytes, each at
# RATE bytes/s (bench/slow_clients.py, every byte checked), arriving evenly over RAMP s (as
# phones do; RAMP=0 sends them all at once: then the fast load also waits, under either
# proxy, behind the workers producing READERS x SIZE bytes, which is worker time, not
# slow-client time), while wrk runs a fast load on `/` (CONNS connections for DURATION s,
# from 1 s after the first slow client). For each proxy: the fast load's requests/s and p99 alone
# and with the slow clients, the slow clients' results; for corral its peak RSS (VmHWM) and
# the temp files it holds after the clients are done.
#
#   bench/slow_clients.sh [CORRAL_BIN [CORRAL_BIN2]]   # default target/release/corral
#   PROXIES="nginx corral" bench/slow_clients.sh        # default: nginx corral1 nginx4 corral
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
PROXIES=${PROXIES:-nginx corral1 nginx4 corral}
SHARED_CONCURRENCY=${SHARED_CONCURRENCY:-16}
# DIAG=DIR keeps the access logs of corral and of the gunicorn workers (with each request's
# time in the worker, `%(L)s`) in DIR, to tell where the fast requests waited; it costs the
# workers a log line per request, so figures are taken without it.
DIAG=${DIAG:-}
GUNICORN_LOG=(); ACCESS="access = false"
if [ -n "$DIAG" ]; then
  mkdir -p "$DIAG"; DIAG=$(cd "$DIAG" && pwd)
  GUNICORN_LOG=(--access-logformat '%(t)s %(m)s %(U)s %(q)s %(s)s %(B)s %(L)s')
  ACCESS="access = true
access_file = \"$DIAG/corral-access.log\""
fi
GUNICORN=${CORRAL_VENV:-$PWD/target/venv}/bin/gunicorn
command -v wrk >/dev/null && command -v nginx >/dev/null && [ -x "$GUNICORN" ] ||
  { echo "needs wrk, nginx and $GUNICORN" >&2; exit 2; }
[ -x "$CORRAL" ] || { echo "no corral binary at $CORRAL" >&2; exit 2; }
work_dir slow

# ticks PID...: user+system CPU of these processes and all their descendants, in 1/100 s.
ticks() {
  local pids
  pids=$(ps -e -o pid=,ppid= | awk -v roots="$*" '{pp[$1]=$2} END {
    n=split(roots, r, " "); for (i=1; i<=n; i++) t[r[i]]=1
    do { c=0; for (p in pp) if (!(p in t) && (pp[p] in t)) { t[p]=1; c=1 } } while (c)
    for (p in t) print p }')
  # shellcheck disable=SC2086 # one pid a word
  own $pids
}
# own PID...: user+system CPU of these processes alone (all their threads), in 1/100 s.
own() {
  for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null; done | awk '{s+=$12+$13} END {print s+0}'
}

# fast LABEL PORT: wrk on `/`, "requests/s p99_ms"; wrk's own CPU seconds in $WORK/LABEL.wrkcpu.
fast() {
  /usr/bin/time -f "%U %S" -o "$WORK/$1.time" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/" >"$WORK/$1.wrk"
  awk '{printf "%.1f", $1 + $2}' "$WORK/$1.time" >"$WORK/$1.wrkcpu"
  awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {
    if (p ~ /ms$/) { sub(/ms$/,"",p) } else if (p ~ /us$/) { sub(/us$/,"",p); p=p/1000 } else if (p ~ /s$/) { sub(/s$/,"",p); p=p*1000 }
    printf "%s %s", r, p }' "$WORK/$1.wrk"
}

# run LABEL PORT "PROXY_PIDS" "WORKER_PIDS": the fast load alone, then with the slow clients;
# one result line, and one line of CPU seconds spent in each phase: the proxy's processes',
# the workers' (their process trees), wrk's (the slow clients' is in the result line).
run() {
  local alone with slow p0 w0 p1 w1 p2 w2
  wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$2/" >/dev/null  # warm-up
  # shellcheck disable=SC2086 # pid lists
  p0=$(own $3); w0=$(ticks $4)
  alone=$(fast "$1-alone" "$2")
  # shellcheck disable=SC2086
  p1=$(own $3); w1=$(ticks $4)
  timeout $((DURATION * 20)) /usr/bin/time -f "%U %S" -o "$WORK/$1.clientcpu" \
    python3 "${CLIENTS:-bench/slow_clients.py}" "$2" "$READERS" "$SIZE" "$UPLOADERS" "$SIZE_UP" "$RATE" "$RAMP" >"$WORK/$1.slow" &
  local clients=$!
  sleep 1
  with=$(fast "$1-with" "$2")
  wait "$clients" || true
  # shellcheck disable=SC2086
  p2=$(own $3); w2=$(ticks $4)
  slow="$(cat "$WORK/$1.slow"), CPU $(awk '{printf "%.1f", $1 + $2}' "$WORK/$1.clientcpu") s"
  printf "%-7s alone: %s  with slow clients: %s  slow readers, uploads whole, seconds: %s\n" "$1" "$alone" "$with" "$slow"
  printf "%-7s CPU s alone (%ss): proxy %s, workers %s, wrk %s; with the slow clients (until the last is done): proxy %s, workers %s, wrk %s\n" "$1" "$DURATION" \
    "$(awk -v a="$p0" -v b="$p1" -v w="$w0" 'BEGIN {printf "%.1f", (b - a) / 100}')" \
    "$(awk -v a="$w0" -v b="$w1" 'BEGIN {printf "%.1f", (b - a) / 100}')" "$(cat "$WORK/$1-alone.wrkcpu")" \
    "$(awk -v a="$p1" -v b="$p2" 'BEGIN {printf "%.1f", (b - a) / 100}')" \
    "$(awk -v a="$w1" -v b="$w2" 'BEGIN {printf "%.1f", (b - a) / 100}')" "$(cat "$WORK/$1-with.wrkcpu")"
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
"$GUNICORN" -w 4 -b "127.0.0.1:$UP" --chdir bench ${DIAG:+--access-logfile "$DIAG/gunicorn-nginx.log"} "${GUNICORN_LOG[@]}" slow_app:app >"$WORK/gunicorn.log" 2>&1 & PIDS+=($!)
GUNICORN_PID=$!
wait_port "$UP"
nginx_conf "$WORK" "$NGINX_PORT" "$UP" "client_max_body_size 16m;"
nginx -c "$WORK/nginx.conf" & PIDS+=($!)
NGINX_PID=$!
wait_port "$NGINX_PORT"

# nginx, the same, in front of four `gunicorn -w 1` (an upstream of four servers, round robin).
NGINX4_PORT=$(free_port); GUNICORN4_PIDS=""; SERVERS=""
for _ in 1 2 3 4; do
  port=$(free_port)
  "$GUNICORN" -w 1 -b "127.0.0.1:$port" --chdir bench slow_app:app >>"$WORK/gunicorn4.log" 2>&1 & PIDS+=($!)
  GUNICORN4_PIDS="$GUNICORN4_PIDS $!"; SERVERS="$SERVERS server 127.0.0.1:$port;"
  wait_port "$port"
done
mkdir -p "$WORK/nginx4"
nginx_conf "$WORK/nginx4" "$NGINX4_PORT" 0 "client_max_body_size 16m;"
sed -i "s|server 127.0.0.1:0;|$SERVERS|" "$WORK/nginx4/nginx.conf"
nginx -c "$WORK/nginx4/nginx.conf" & PIDS+=($!)
NGINX4_PID=$!
wait_port "$NGINX4_PORT"

# start_corral LABEL BIN [SHAPE]: corral in front of four `gunicorn -w 1` (concurrency 1
# each), or with SHAPE "shared" of one `gunicorn -w 4` (concurrency SHARED_CONCURRENCY); temp
# files in its own dir; sets PORT_<LABEL> and PID_<LABEL>.
start_corral() {
  local dir="$WORK/$1" port admin pid gw=1 workers=4 concurrency=1
  if [ "${3:-}" = shared ]; then gw=4; workers=1; concurrency=$SHARED_CONCURRENCY; fi
  port=$(free_port); admin=$(free_port); mkdir -p "$dir/temp"
  cat > "$dir/corral.toml" <<TOML
[server]
listen = ["127.0.0.1:$port"]
admin = "127.0.0.1:$admin"
control_socket = "$dir/corral.sock"
runtime_dir = "$dir/run"
[server.limits]
body_size = "16MiB"
[server.buffering]
memory = "$MEMORY"
temp_dir = "$dir/temp"
[log]
${ACCESS//corral-access/$1-access}
level = "warn"
[pools.bench]
command = ["$GUNICORN", "-w", "$gw", "-b", "127.0.0.1:{port}", "--chdir", "$PWD/bench", $([ -n "$DIAG" ] && printf '"--access-logfile", "%s", "--access-logformat", "%s", ' "$DIAG/gunicorn-$1.log" "${GUNICORN_LOG[1]}")"slow_app:app"]
workers = $workers
concurrency = $concurrency
queue_timeout = "60s"
ready = "tcp"
TOML
  "$2" run -c "$dir/corral.toml" >"$dir/corral.log" 2>&1 & PIDS+=($!)
  pid=$!
  wait_port "$port"; wait_ready "$admin"
  printf -v "PORT_$1" %s "$port"; printf -v "PID_$1" %s "$pid"
}
# A second binary (CORRAL_BIN2, e.g. the build before a change) runs as `corral2`, in the same
# rounds, against four workers of its own.
CORRALS=""
for p in $PROXIES; do
  case $p in
    corral) CORRALS="$CORRALS corral"; start_corral corral "$CORRAL" ;;
    corral1) CORRALS="$CORRALS corral1"; start_corral corral1 "$CORRAL" shared ;;
  esac
done
if [ -n "${2:-}" ]; then CORRALS="$CORRALS corral2"; PROXIES="$PROXIES corral2"; start_corral corral2 "$2"; fi

echo "slow clients: $READERS readers of $SIZE bytes, $UPLOADERS uploads of $SIZE_UP bytes, at $RATE bytes/s, arriving over ${RAMP}s; fast load: wrk -c$CONNS ${DURATION}s on /; requests/s p99_ms"
# Rounds alternate the proxies, so a change in the shared machine's load hits each.
for _ in $(seq "$ROUNDS"); do
  for p in $PROXIES; do
    case $p in
      nginx) run nginx "$NGINX_PORT" "$NGINX_PID $(ps -o pid= --ppid "$NGINX_PID")" "$GUNICORN_PID" ;;
      nginx4) run nginx4 "$NGINX4_PORT" "$NGINX4_PID $(ps -o pid= --ppid "$NGINX4_PID")" "$GUNICORN4_PIDS" ;;
      corral*) pid_var="PID_$p"; port_var="PORT_$p"
        run "$p" "${!port_var}" "${!pid_var}" "$(ps -o pid= --ppid "${!pid_var}" | tr '\n' ' ')" ;;
    esac
  done
done
for p in $PROXIES; do summary "$p"; done
# ratio A B: A's fast-load requests/s with the slow clients over B's, per round; median (range).
ratio() {
  [ -f "$WORK/$1.rounds" ] && [ -f "$WORK/$2.rounds" ] || return 0
  paste -d' ' "$WORK/$1.rounds" "$WORK/$2.rounds" | awk '{print $3 / $7}' >"$WORK/$1-$2.ratio"
  printf "requests/s with slow clients, %s over %s, per round: %s; median %s\n" "$1" "$2" \
    "$(awk '{printf "%s%.2f", (NR > 1 ? ", " : ""), $1}' "$WORK/$1-$2.ratio")" "$(stat "$WORK/$1-$2.ratio" 1)"
}
ratio corral1 nginx; ratio corral nginx4; ratio corral nginx; ratio nginx4 nginx
for c in $CORRALS; do
  pid_var="PID_$c"; pid=${!pid_var}
  rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
  left=$(find "/proc/$pid/fd" -lname "$WORK/$c/temp/*" 2>/dev/null | wc -l)
  echo "$c: peak RSS ${rss} MiB (memory budget $MEMORY), temp files open after the clients: $left, named in temp_dir: $(find "$WORK/$c/temp" -type f | wc -l)"
  kill -TERM "$pid"
  running() { case $(ps -o stat= -p "$pid" 2>/dev/null) in ""|Z*) return 1 ;; esac; }
  for _ in $(seq 150); do running || break; sleep 0.1; done
  echo "$c stopped on SIGTERM: $(running && echo no || echo yes), files in temp_dir after: $(find "$WORK/$c/temp" -type f | wc -l)"
done
