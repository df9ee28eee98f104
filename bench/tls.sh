#!/usr/bin/env bash
# HTTPS against nginx, both terminating TLS with the same ECDSA P-256 certificate in front of
# the same test app, one core each (corral: 1 proxy thread; nginx: 1 worker), in one run:
#   ka   keep-alive HTTPS requests/s (wrk, HTTP/1.1);
#   new  a new TLS connection per request (wrk with `Connection: close`): handshakes/s;
#   h2   HTTP/2, h2load with 4 connections of 25 streams each.
# Cells are interleaved in rounds (nginx, corral, then corral, nginx, ...); medians and
# spreads are reported, with CPU per request of the proxy process.
#
#   bench/tls.sh                        # needs wrk, nginx, h2load (nghttp2-client), openssl
#   ROUNDS=7 DURATION=5 bench/tls.sh
#   KINDS=h2 bench/tls.sh               # only some of the cells
#
# Every server binds 127.0.0.1 and is stopped on exit; every load is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
CONNS=${CONNS:-16}
PATH_Q=${PATH_Q:-/bytes?n=0}
KINDS=${KINDS:-ka new h2}
work_dir tls-bench

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release -q -p corral -p corral-testapp
BIN=$PWD/target/release/corral
APP=$PWD/target/release/corral-testapp
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$WORK/site.key" -out "$WORK/site.pem" -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test 2>/dev/null

UP=$(free_port)
"$APP" --port "$UP" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$UP"

PORT_nginx=$(free_port)
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$PORT_nginx ssl http2;
    ssl_certificate $WORK/site.pem;
    ssl_certificate_key $WORK/site.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    keepalive_requests 100000;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; $NGINX_FIELDS }
  }
}
NGINX
nginx -c "$WORK/nginx.conf" & PIDS+=($!)
wait_port "$PORT_nginx"
for _ in $(seq 50); do [ -s "$WORK/nginx.pid" ] && break; sleep 0.1; done
PID_nginx=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)

PORT_corral=$(free_port); plain=$(free_port); admin=$(free_port)
cat > "$WORK/corral.toml" <<TOML
[server]
listen = ["127.0.0.1:$plain"]
admin = "127.0.0.1:$admin"
control_socket = "$WORK/corral.sock"
runtime_dir = "$WORK/corral-run"
threads = 1
[server.tls]
listen = ["127.0.0.1:$PORT_corral"]
cert = "$WORK/site.pem"
key = "$WORK/site.key"
[log]
access = false
level = "warn"
[pools.bench]
upstreams = ["127.0.0.1:$UP"]
concurrency = 4096
TOML
"$BIN" run -c "$WORK/corral.toml" >"$WORK/corral.log" 2>&1 &
PID_corral=$!; PIDS+=("$PID_corral")
wait_port "$PORT_corral"; wait_ready "$admin"

# cell KIND NAME -> appends "rps us_per_req" to $WORK/KIND-NAME
cell() {
  local port_var="PORT_$2" pid_var="PID_$2" before after rps url
  url="https://127.0.0.1:${!port_var}$PATH_Q"
  before=$(cpu_ticks "${!pid_var}")
  case $1 in
    ka) rps=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/latency.lua "$url" 2>/dev/null | awk '/^RESULT/ {print $2}') ;;
    new) rps=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/latency.lua -H 'Connection: close' "$url" 2>/dev/null | awk '/^RESULT/ {print $2}') ;;
    h2) rps=$(h2load -c 4 -m 25 -D "$DURATION" --warm-up-time=0 "$url" 2>/dev/null | awk '/^finished in/ {gsub(",", "", $4); print $4}') ;;
  esac
  after=$(cpu_ticks "${!pid_var}")
  awk -v r="${rps:-0}" -v b="$before" -v a="$after" -v t="$TICK" -v d="$DURATION" \
    'BEGIN { if (r > 0) printf "%s %.2f\n", r, (a-b)/t/(r*d)*1e6; else print "0 0" }' >> "$WORK/$1-$2"
}

# Both answer the same request over both protocols before anything is measured.
for name in nginx corral; do
  port_var="PORT_$name"
  curl -sk --http1.1 -o /dev/null -w "$name HTTP/%{http_version} %{http_code}\n" "https://127.0.0.1:${!port_var}$PATH_Q" >&2
  curl -sk --http2 -o /dev/null -w "$name HTTP/%{http_version} %{http_code}\n" "https://127.0.0.1:${!port_var}$PATH_Q" >&2
done

order=(nginx corral)
for round in $(seq "$ROUNDS"); do
  for kind in $KINDS; do
    for name in "${order[@]}"; do cell "$kind" "$name"; done
  done
  order=("${order[@]:1}" "${order[0]}")
  echo "round $round of $ROUNDS done" >&2
done

echo
echo "$ROUNDS rounds of ${DURATION} s cells, $PATH_Q, ECDSA P-256 certificate, TLS 1.3; corral 1 proxy"
echo "thread, nginx 1 worker; wrk -t1 -c$CONNS (ka, new), h2load -c4 -m25 (h2). Requests/s and CPU µs"
echo "per request (user+system) of the proxy process: median (min-max); ratios taken per round."
echo
echo "| cell | nginx rps | corral rps | corral/nginx rps | nginx µs/req | corral µs/req | corral/nginx CPU |"
echo "|---|---|---|---|---|---|---|"
for kind in $KINDS; do
  paste "$WORK/$kind-corral" "$WORK/$kind-nginx" | awk '{ if ($3 > 0 && $4 > 0) printf "%.3f %.3f\n", $1/$3, $2/$4; else print "0 0" }' > "$WORK/r-$kind"
  echo "| $kind | $(stat "$WORK/$kind-nginx" 1) | $(stat "$WORK/$kind-corral" 1) | $(stat "$WORK/r-$kind" 1) | $(stat "$WORK/$kind-nginx" 2) | $(stat "$WORK/$kind-corral" 2) | $(stat "$WORK/r-$kind" 2) |"
done
