# Shared by bench/run.sh, bench/ab.sh and bench/tls.sh: the work dir and its cleanup, ports,
# readiness, and the nginx proxy every table
# compares against. Sourced, not run.

# work_dir NAME: a temp dir in $WORK, the pids in PIDS killed (then killed hard) and the dir
# removed when the script exits, however it exits.
work_dir() {
  WORK=$(mktemp -d "/tmp/corral-$1.XXXXXX")
  PIDS=()
  trap cleanup EXIT
}
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# stat FILE COL: the median and spread of column COL, as "median (min-max)".
stat() { sort -n -k"$2" "$1" | awk -v c="$2" '{v[NR]=$c} END { m = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%s (%s-%s)", m, v[1], v[NR] }'; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
wait_ready() { for _ in $(seq 300); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done; echo "corral on admin $1 never ready" >&2; return 1; }

# The fields corral adds to every request it forwards (X-Forwarded-For, -Proto, -Host, -Port,
# X-Real-IP, X-Request-Id) and the client's own Host, sent by nginx and HAProxy too, so that
# every stack hands the worker the same request: the worker parses each field, and under
# gunicorn the six cost ~50 µs of its CPU per request (docs/BENCHMARKS.md, tuning log). BENCH_FIELDS=none gives
# the tables before 2026-12-03's sixth session, where nginx and HAProxy sent only Host.
if [ "${BENCH_FIELDS:-same}" = none ]; then
  NGINX_FIELDS=""; HAPROXY_FIELDS=""
else
  # shellcheck disable=SC2016 # nginx's variables, not the shell's
  NGINX_FIELDS='proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $http_host; proxy_set_header X-Forwarded-Port $server_port; proxy_set_header X-Request-Id $request_id;'
  HAPROXY_FIELDS='  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Request-Id %[uuid]'
fi

# nginx_conf DIR LISTEN_PORT UPSTREAM_PORT [HTTP_LINES]: one worker (NGINX_WORKERS), upstream keep-alive, no
# access log, corral's forwarded fields; HTTP_LINES (e.g. gzip settings) go into the http block.
nginx_conf() {
  cat > "$1/nginx.conf" <<NGINX
worker_processes ${NGINX_WORKERS:-1};
daemon off;
pid $1/nginx.pid;
error_log $1/nginx.err warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  ${4:-}
  upstream app { server 127.0.0.1:$3; keepalive 128; }
  server {
    listen 127.0.0.1:$2;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; $NGINX_FIELDS }
  }
}
NGINX
}
