#!/usr/bin/env bash
# Static files and routing (issue 34) in one run: nginx (one worker, `sendfile on`, the same
# files through `alias`) against corral with one static route ("one": `/static` and `/` to a
# pool) and corral with 51 routes ("fifty": the same two behind 20 exact-host, 10 `*.` host
# and 19 path-prefix routes, all tried before `/`), each with one proxy thread. Cells are
# interleaved in rounds (rotated, backwards every other round), so noise on this shared
# machine falls on all three alike; medians and spreads are reported, with CPU per request
# (user+system of the serving process), steadier than requests per second.
#
#   bench/static.sh CORRAL_BIN                 # e.g. target/release/corral
#   ROUNDS=5 DURATION=4 CONNS="16 64" bench/static.sh BIN
#   B=OTHER_BIN bench/static.sh BIN            # "fifty" runs OTHER_BIN
#   B=OLD_BIN B_ROUTES=2 bench/static.sh NEW   # "fifty" is OLD_BIN with the same 2 routes:
#                                              # the before/after of a change (fifty/one = old/new)
#
# Paths: /static/1k.bin and /static/1m.bin (files of 1 KiB and 1 MiB, no Accept-Encoding),
# and /bytes?n=0 proxied to corral-testapp (the routing cost on a proxied request; nginx
# proxies it too, for scale). Every server binds 127.0.0.1 and is stopped on exit; every
# load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
A=${1:?usage: bench/static.sh CORRAL_BIN}
B=${B:-$A}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
CONNS=${CONNS:-16}
PATHS=${PATHS:-"/static/1k.bin /static/1m.bin /bytes?n=0"}
work_dir static

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release -q -p corral-testapp
APP=$PWD/target/release/corral-testapp
TICK=$(getconf CLK_TCK)

FILES=$WORK/files
mkdir -p "$FILES"
head -c 1024 /dev/urandom > "$FILES/1k.bin"
head -c 1048576 /dev/urandom > "$FILES/1m.bin"
# nginx's worker runs as nobody: it must be able to read them.
chmod 755 "$WORK" "$FILES"; chmod 644 "$FILES"/*

UP=$(free_port); NGINX_PORT=$(free_port)
"$APP" --port "$UP" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$UP"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  types { application/octet-stream bin; }
  upstream app { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /static/ { alias $FILES/; }
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; $NGINX_FIELDS }
  }
}
NGINX
nginx -c "$WORK/nginx.conf" & PIDS+=($!)
wait_port "$NGINX_PORT"
for _ in $(seq 50); do [ -s "$WORK/nginx.pid" ] && break; sleep 0.1; done
PID_nginx=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)
PORT_nginx=$NGINX_PORT

# The routes "fifty" has ahead of the two it serves with.
many_routes() {
  for i in $(seq 20); do printf '[[routes]]\nhost = "h%d.example.com"\nredirect = "https://example.com{path}"\n' "$i"; done
  for i in $(seq 10); do printf '[[routes]]\nhost = "*.w%d.example.com"\nredirect = "https://example.com{path}"\n' "$i"; done
  for i in $(seq 19); do printf '[[routes]]\npath_prefix = "/section%d/sub"\nredirect = "https://example.com{path}"\n' "$i"; done
}

# start_corral NAME BIN ROUTES -> sets PORT_<NAME>, PID_<NAME>
start_corral() {
  local port admin
  port=$(free_port); admin=$(free_port)
  cat > "$WORK/$1.toml" <<TOML
[server]
listen = ["127.0.0.1:$port"]
admin = "127.0.0.1:$admin"
control_socket = "$WORK/$1.sock"
runtime_dir = "$WORK/$1-run"
state_dir = "$WORK/$1-state"
threads = 1
[log]
access = false
level = "warn"
$3
[[routes]]
path_prefix = "/static"
static = "$FILES"
[[routes]]
pools = ["bench"]
[pools.bench]
command = ["$APP", "--port", "{port}"]
workers = 1
concurrency = 4096
ready = "tcp"
TOML
  "$2" run -c "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  wait_port "$port"; wait_ready "$admin"
  printf -v "PORT_$1" %s "$port"; printf -v "PID_$1" %s "$pid"
}
start_corral one "$A" ""
if [ "${B_ROUTES:-51}" = 2 ]; then start_corral fifty "$B" ""; else start_corral fifty "$B" "$(many_routes)"; fi
echo "fifty has $(grep -c '^\[\[routes\]\]' "$WORK/fifty.toml") routes" >&2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# cell NAME CONNS PATH KEY -> appends "rps us_per_req p50_us p99_us errors" to $WORK/NAME-KEY-CONNS
cell() {
  local port_var="PORT_$1" pid_var="PID_$1" before after rps p50 p99 p999 errs
  before=$(cpu_ticks "${!pid_var}")
  read -r rps p50 p99 p999 errs < <(wrk -t1 -c"$2" -d"${DURATION}s" -s bench/latency.lua "http://127.0.0.1:${!port_var}$3" 2>/dev/null | awk '/^RESULT/ {print $2, $3, $4, $5, $6}')
  after=$(cpu_ticks "${!pid_var}")
  awk -v r="$rps" -v b="$before" -v a="$after" -v t="$TICK" -v d="$DURATION" -v p50="$p50" -v p99="$p99" -v e="$errs" \
    'BEGIN { printf "%s %.2f %d %d %d\n", r, (a-b)/t/(r*d)*1e6, p50, p99, e }' >> "$WORK/$1-$4-$2"
}

key() { echo "$1" | tr -c 'a-z0-9\n' '_'; }

# corral keeps a small file in memory once it has been unchanged for 2 s (its first
# requests before then go to disk): the files have settled before anything is measured.
sleep 2
# Each stack answers each path alike before anything is measured.
for p in $PATHS; do
  for name in nginx one fifty; do
    port_var="PORT_$name"
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:${!port_var}$p")
    echo "$name $p: $got" >&2
    case $got in 200\ *) ;; *) echo "$name does not answer $p with 200" >&2; exit 1 ;; esac
  done
done

stacks=(nginx one fifty)
for round in $(seq "$ROUNDS"); do
  order=()
  for i in 0 1 2; do order+=("${stacks[$(( (i + round) % 3 ))]}"); done
  [ $((round % 2)) -eq 0 ] && order=("${order[2]}" "${order[1]}" "${order[0]}")
  for p in $PATHS; do
    for c in $CONNS; do
      for name in "${order[@]}"; do cell "$name" "$c" "$p" "$(key "$p")"; done
    done
  done
  echo "round $round of $ROUNDS done" >&2
done

echo
echo "$ROUNDS rounds of ${DURATION} s cells, wrk -t1, keep-alive; corral 1 proxy thread, nginx 1 worker (sendfile on)."
echo "Requests/s and CPU µs per request (user+system) of the serving process: median (min-max); ratios per round, then the median."
echo
echo "| path | conns | nginx rps | corral rps | corral/nginx rps | nginx µs/req | corral µs/req | corral/nginx CPU | errors (nginx/corral) |"
echo "|---|---|---|---|---|---|---|---|---|"
for p in $PATHS; do
  k=$(key "$p")
  for c in $CONNS; do
    paste "$WORK/one-$k-$c" "$WORK/nginx-$k-$c" | awk '{printf "%.3f %.3f\n", $1/$6, $2/$7}' > "$WORK/r-$k-$c"
    en=$(awk '{s+=$5} END {print s+0}' "$WORK/nginx-$k-$c"); eo=$(awk '{s+=$5} END {print s+0}' "$WORK/one-$k-$c")
    echo "| $p | $c | $(stat "$WORK/nginx-$k-$c" 1) | $(stat "$WORK/one-$k-$c" 1) | $(stat "$WORK/r-$k-$c" 1) | $(stat "$WORK/nginx-$k-$c" 2) | $(stat "$WORK/one-$k-$c" 2) | $(stat "$WORK/r-$k-$c" 2) | $en/$eo |"
  done
done
echo
echo "The routing cost: 51 routes (fifty) against 2 (one), the same requests; per round, then the median."
echo
echo "| path | conns | one rps | fifty rps | fifty/one rps | one µs/req | fifty µs/req | fifty/one CPU |"
echo "|---|---|---|---|---|---|---|---|"
for p in $PATHS; do
  k=$(key "$p")
  for c in $CONNS; do
    paste "$WORK/fifty-$k-$c" "$WORK/one-$k-$c" | awk '{printf "%.3f %.3f\n", $1/$6, $2/$7}' > "$WORK/f-$k-$c"
    echo "| $p | $c | $(stat "$WORK/one-$k-$c" 1) | $(stat "$WORK/fifty-$k-$c" 1) | $(stat "$WORK/f-$k-$c" 1) | $(stat "$WORK/one-$k-$c" 2) | $(stat "$WORK/fifty-$k-$c" 2) | $(stat "$WORK/f-$k-$c" 2) |"
  done
done
