#!/usr/bin/env bash
# corral's own Python workers (crates/corral-python) against the Python servers they replace,
# on loopback, one machine, one run, interleaved rounds (issue 33, acceptance 3):
#
#   trivial WSGI app (bench/wsgi.py): corral → 4 corral workers, `gunicorn -w 4` alone,
#                                     `nginx → gunicorn -w 4` over a Unix socket
#   Flask hello (examples/flask `/health`): corral → 4 corral workers, `gunicorn -w 4`
#   FastAPI (bench/asgi.py):          corral → 4 corral ASGI workers, `uvicorn --workers 4`
#
#   bench/python_workers.sh                 # DURATION=4 s cells, ROUNDS=5
#   DURATION=3 ROUNDS=7 bench/python_workers.sh
#
# wrk, one thread, 32 connections. corral's pools are `command` pools running
# `python -m corral_worker.standalone` (one process per worker, no preload) unless
# APP_POOLS=1 asks for `app =` pools (the template forks the workers). Prints markdown:
# requests/s median (min-max) of the rounds, the ratio to the baseline taken per round,
# p50 / p99 latency, and CPU per request of the proxy (nginx's worker, corral) and of the
# four Python workers together. Needs a release build (`cargo build --release -p corral`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-32}
APP_POOLS=${APP_POOLS:-0}
VENV=${VENV:-${CORRAL_VENV:-target/venv}}
VENV=$(cd "$VENV" && pwd -P)
BIN=$PWD/target/release
[ -x "$BIN/corral" ] || { echo "build first: cargo build --release -p corral" >&2; exit 1; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx" >&2; exit 1; }
work_dir pyworkers
# nginx's worker runs as nobody: it must reach the gunicorn socket in here
chmod 755 "$WORK"
TICK=$(getconf CLK_TCK)
PKG=$PWD/crates/corral-python/python
declare -A URL CPU WCPU
mkdir -p "$WORK/cells"

# ticks of user+system time of PIDS (threads included)
ticks() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
# us_per_req BEFORE AFTER RPS -> µs of CPU per request over one cell
us_per_req() { awk -v b="$1" -v a="$2" -v r="$3" -v d="$DURATION" -v t="$TICK" 'BEGIN { n=r*d; if (n>0) printf "%.1f", (a-b)/t/n*1e6; else print "-" }'; }
# measure CELL KEY PATH: one wrk run -> $WORK/cells/CELL.KEY gets "rps p50 p99 errors proxy-µs workers-µs"
measure() {
  local cell=$1 key=$2 path=$3 rps p50 p99 p999 errors
  local -a proxy workers
  read -ra proxy <<< "${CPU[$key]:-}"; read -ra workers <<< "${WCPU[$key]:-}"
  local pb wb; pb=$(ticks "${proxy[@]}"); wb=$(ticks "${workers[@]}")
  read -r rps p50 p99 p999 errors < <(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/latency.lua "${URL[$key]}$path" 2>/dev/null | awk '/^RESULT/ {print $2, $3, $4, $5, $6}')
  local pc="-" wc="-"
  [ ${#proxy[@]} -gt 0 ] && pc=$(us_per_req "$pb" "$(ticks "${proxy[@]}")" "$rps")
  [ ${#workers[@]} -gt 0 ] && wc=$(us_per_req "$wb" "$(ticks "${workers[@]}")" "$rps")
  echo "$rps $p50 $p99 $errors $pc $wc" >> "$WORK/cells/$cell.$key"
}
# rounds CELL PATH "KEY..." : ROUNDS rounds, the stacks' order rotating each round
rounds() {
  local cell=$1 path=$2 r i; local -a keys; read -ra keys <<< "$3"
  for r in $(seq "$ROUNDS"); do
    for i in "${!keys[@]}"; do measure "$cell" "${keys[$(( (i + r) % ${#keys[@]} ))]}" "$path"; done
    echo "$cell: round $r done" >&2
  done
}
med() { stat "$WORK/cells/$1.$2" "$3"; }
mid() { med "$@" | cut -d' ' -f1; }
# vs CELL KEY BASE -> per-round requests/s ratio, "median (min-max)"
vs() {
  paste "$WORK/cells/$1.$2" "$WORK/cells/$1.$3" | awk '{ if ($7 > 0) printf "%.2f\n", $1/$7; else print 0 }' > "$WORK/ratio"
  stat "$WORK/ratio" 1
}
row() { echo "| $3 | $(med "$1" "$2" 1) | $(vs "$1" "$2" "$4") | $(mid "$1" "$2" 2) / $(mid "$1" "$2" 3) µs | $(mid "$1" "$2" 5) | $(mid "$1" "$2" 6) | $(awk '{e+=$4} END {print e}' "$WORK/cells/$1.$2") |"; }
head_row() {
  echo "| stack | rps | vs $1 | p50 / p99 | proxy µs/req | workers µs/req | errors |"
  echo "|---|---|---|---|---|---|---|"
}
stack() { URL[$1]=http://127.0.0.1:$2; CPU[$1]=${3:-}; WCPU[$1]=${4:-}; }
children() { pgrep -P "$1" | tr '\n' ' '; }
# wait_children PID N: until PID has N children (an app server's workers have forked)
wait_children() { for _ in $(seq 300); do [ "$(pgrep -P "$1" | wc -l)" -ge "$2" ] && return 0; sleep 0.1; done; echo "$1 never had $2 workers" >&2; return 1; }

# start_corral NAME POOL-BODY -> CORRAL_PID, CORRAL_PORT
start_corral() {
  CORRAL_PORT=$(free_port); local admin; admin=$(free_port)
  cat > "$WORK/$1.toml" <<TOML
[server]
listen = ["127.0.0.1:$CORRAL_PORT"]
admin = "127.0.0.1:$admin"
control_socket = "$WORK/$1.sock"
runtime_dir = "$WORK/$1-run"
threads = 1
[log]
access = false
level = "warn"
$2
TOML
  "$BIN/corral" run -c "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  CORRAL_PID=$!; PIDS+=("$CORRAL_PID")
  wait_port "$CORRAL_PORT"; wait_ready "$admin"
  sleep 1
}
# corral_pool APP(mod:callable) INTERFACE CWD CONCURRENCY -> a pool table of four workers
corral_pool() {
  local body
  if [ "$APP_POOLS" = 1 ]; then
    body="app = \"$1\"
interface = \"$2\"
python = \"$VENV/bin/python\""
  else
    body="command = [\"$VENV/bin/python\", \"-m\", \"corral_worker.standalone\", \"--app\", \"$1\", \"--interface\", \"$2\", \"--socket\", \"{socket}\"]
env = { PYTHONPATH = \"$PKG\" }"
  fi
  echo "[pools.app]
$body
cwd = \"$3\"
workers = 4
concurrency = $4
queue_size = 10000
ready = \"http\"
[pools.app.health]
path = \"$5\""
}
# workers_of CORRAL_PID -> the Python processes under corral (the workers, and a template)
workers_of() { local p all=""; for p in $(pgrep -P "$1"); do all="$all $p $(children "$p")"; done; echo "$all"; }
# gunicorn CHDIR APP BIND -> G_PID (the arbiter); its workers are its children
start_gunicorn() {
  "$VENV/bin/gunicorn" -w 4 --chdir "$1" -b "$3" "$2" >"$WORK/gunicorn-$RANDOM.log" 2>&1 &
  G_PID=$!; PIDS+=("$G_PID")
}
nginx_unix() { # LISTEN-PORT SOCKET NAME
  cat > "$WORK/nginx-$3.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx-$3.pid;
error_log $WORK/nginx-$3.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server unix:$2; keepalive 32; }
  server {
    listen 127.0.0.1:$1;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; $NGINX_FIELDS }
  }
}
NGINX
  nginx -c "$WORK/nginx-$3.conf" & NGINX_PID=$!; PIDS+=("$NGINX_PID")
  wait_port "$1"
  for _ in $(seq 50); do [ -s "$WORK/nginx-$3.pid" ] && break; sleep 0.1; done
  NGINX_WORKER=$(pgrep -P "$(cat "$WORK/nginx-$3.pid")" | head -1)
}
wait_get() { for _ in $(seq 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "$1 never answered" >&2; return 1; }

OUT=$WORK/out.md
POOLS_SAID="command pools (\`python -m corral_worker.standalone\`, one process per worker)"
[ "$APP_POOLS" = 1 ] && POOLS_SAID="\`app =\` pools (workers forked from a template)"
{
echo "corral's Python workers: wrk -t1 -c$CONNS, ${DURATION} s cells, $ROUNDS rounds interleaved;"
echo "corral with $POOLS_SAID, \`threads = 1\`, access log off."
echo "Python $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])'), gunicorn $("$VENV/bin/python" -c 'import gunicorn; print(gunicorn.__version__)'), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)."
} > "$OUT"

# --- 1. trivial WSGI app ---------------------------------------------------------------------
G=$(free_port); start_gunicorn "$PWD/bench" wsgi:app "127.0.0.1:$G"; GT_PID=$G_PID; wait_port "$G"; wait_children "$GT_PID" 4
stack g4 "$G" "" "$GT_PID $(children "$GT_PID")"
start_gunicorn "$PWD/bench" wsgi:app "unix:$WORK/g.sock"; GU_PID=$G_PID; wait_children "$GU_PID" 4
NG=$(free_port); for _ in $(seq 100); do [ -S "$WORK/g.sock" ] && break; sleep 0.1; done
nginx_unix "$NG" "$WORK/g.sock" wsgi; wait_get "http://127.0.0.1:$NG/"
stack ng4 "$NG" "$NGINX_WORKER" "$GU_PID $(children "$GU_PID")"
start_corral wsgi "$(corral_pool wsgi:app wsgi "$PWD/bench" 1 /)"
stack cw "$CORRAL_PORT" "$CORRAL_PID" "$(workers_of "$CORRAL_PID")"
rounds wsgi / "g4 ng4 cw"
{
echo
echo "### Trivial WSGI app (bench/wsgi.py)"
echo
head_row "gunicorn -w 4"
row wsgi g4 "gunicorn -w 4" g4
row wsgi ng4 "nginx → gunicorn -w 4 (Unix socket)" g4
row wsgi cw "corral → 4 corral WSGI workers (Unix sockets)" g4
echo
echo "corral / nginx → gunicorn, per round: $(vs wsgi cw ng4)"
} >> "$OUT"
kill "$GT_PID" "$GU_PID" "$CORRAL_PID" "$NGINX_PID" 2>/dev/null || true; sleep 2

# --- 2. Flask hello ----------------------------------------------------------------------------
FL=$PWD/examples/flask
G=$(free_port); start_gunicorn "$FL" app:app "127.0.0.1:$G"; wait_get "http://127.0.0.1:$G/health"; wait_children "$G_PID" 4
stack fg4 "$G" "" "$G_PID $(children "$G_PID")"
start_corral flask "$(corral_pool app:app wsgi "$FL" 1 /health)"
stack fcw "$CORRAL_PORT" "$CORRAL_PID" "$(workers_of "$CORRAL_PID")"
rounds flask /health "fg4 fcw"
{
echo
echo "### Flask hello (examples/flask, \`GET /health\`)"
echo
head_row "gunicorn -w 4"
row flask fg4 "gunicorn -w 4" fg4
row flask fcw "corral → 4 corral WSGI workers" fg4
} >> "$OUT"
kill "$G_PID" "$CORRAL_PID" 2>/dev/null || true; sleep 2

# --- 3. FastAPI ----------------------------------------------------------------------------------
U=$(free_port)
(cd bench && exec "$VENV/bin/uvicorn" --no-access-log --workers 4 --host 127.0.0.1 --port "$U" asgi:app) >"$WORK/uvicorn.log" 2>&1 &
U_PID=$!; PIDS+=("$U_PID"); wait_get "http://127.0.0.1:$U/"; wait_children "$U_PID" 4
stack u4 "$U" "" "$U_PID $(children "$U_PID")"
start_corral fastapi "$(corral_pool asgi:app asgi "$PWD/bench" 32 /)"
stack fa "$CORRAL_PORT" "$CORRAL_PID" "$(workers_of "$CORRAL_PID")"
rounds fastapi / "u4 fa"
{
echo
echo "### FastAPI (bench/asgi.py)"
echo
head_row "uvicorn --workers 4"
row fastapi u4 "uvicorn --workers 4" u4
row fastapi fa "corral → 4 corral ASGI workers (concurrency 32)" u4
echo
echo "| target | figure | bound | verdict |"
echo "|---|---|---|---|"
verdict() { awk -v f="${1%% *}" -v b="$2" 'BEGIN { print (f >= b) ? "met" : "**not met**" }'; }
f=$(vs wsgi cw g4); echo "| trivial WSGI, corral / gunicorn -w 4 | $f | 1.5 | $(verdict "$f" 1.5) |"
f=$(vs wsgi cw ng4); echo "| trivial WSGI, corral / nginx → gunicorn -w 4 | $f | 1.4 | $(verdict "$f" 1.4) |"
f=$(vs flask fcw fg4); echo "| Flask hello, corral / gunicorn -w 4 | $f | 1.3 | $(verdict "$f" 1.3) |"
f=$(vs fastapi fa u4); echo "| FastAPI, corral / uvicorn --workers 4 | $f | (figure) | - |"
} >> "$OUT"
cat "$OUT"
