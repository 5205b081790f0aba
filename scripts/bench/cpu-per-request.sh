#!/usr/bin/env bash
# CPU cost per request, counted in instructions by callgrind: repeatable whatever else the
# machine is doing (wall-clock benchmarks on a shared 2-core box are not). Runs Egret (WAF off,
# and WAF at paranoia 1) and the bare pingora proxy under `valgrind --tool=callgrind`, drives
# each with wrk for a fixed time on loopback, and prints instructions per request and the ratio
# to bare pingora. Profiles are kept for callgrind_annotate.
#
#   scripts/bench/cpu-per-request.sh [TARGET...]     (default: bare-pingora egret egret-waf-pl1)
#
# Environment: DURATION=15 (seconds of wrk per target), CONNS=4, WORKLOADS="small query form",
# BIN_DIR (default target/prof/release: build it with
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/prof \
#     cargo build --release --bin egret --example bare_pingora).
# Needs nginx (origin), wrk, valgrind, curl. Loopback only; stops only what it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/target/prof/release}
DURATION=${DURATION:-15}
CONNS=${CONNS:-4}
WORKLOADS=${WORKLOADS:-"small query form"}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(bare-pingora egret egret-waf-pl1)
HOST=www.bench.gov.cn
OUT=$ROOT/target/bench/callgrind
mkdir -p "$OUT"

for tool in nginx wrk valgrind curl callgrind_control; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx wrk valgrind curl)" >&2; exit 1; }
done
[ -x "$BIN_DIR/egret" ] && [ -x "$BIN_DIR/examples/bare_pingora" ] ||
    { echo "build first: see the header of $0" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Origin: nginx serving the same bodies as scripts/bench/e2e.sh.
ORIGIN_PORT=$(free_port)
mkdir -p "$WORK/www" "$WORK/origin/tmp"
head -c 200 /dev/zero | tr '\0' 'x' > "$WORK/www/small"
cat > "$WORK/origin/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/origin/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/origin/tmp; proxy_temp_path $WORK/origin/tmp;
    fastcgi_temp_path $WORK/origin/tmp; uwsgi_temp_path $WORK/origin/tmp; scgi_temp_path $WORK/origin/tmp;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $WORK/www;
        location = /small { }
        location /form { return 200 "ok\n"; }
        location = /q { alias $WORK/www/small; }
    }
}
EOF
nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf" -g 'daemon off;' &
PIDS+=($!)

write_egret_conf() {   # $1 dir, $2 port, $3 extra global, $4 extra site
    mkdir -p "$1/sites"
    cat > "$1/egret.toml" <<EOF
sites_dir = "sites"
$3
[listen]
http = ["127.0.0.1:$2"]
[log]
access_log = "off"
level = "warn"
[server]
threads = 1
work_stealing = false
grace_period = "1s"
shutdown_timeout = "1s"
[reload]
watch = false
EOF
    cat > "$1/sites/bench.toml" <<EOF
name = "bench"
hosts = ["$HOST"]
[pools.web]
backends = ["127.0.0.1:$ORIGIN_PORT"]
$4
EOF
}

# Workloads: the same requests as e2e.sh (small GET, ten percent-encoded Chinese parameters,
# a 2 KB urlencoded form POST).
FORM=$(for i in $(seq -w 1 40); do printf 'field%s=%s&' "$i" '%E6%94%BF%E5%8A%A1%E5%85%AC%E5%BC%80abc'; done)
FORM="${FORM}pad=$(head -c $(( 2048 - ${#FORM} - 4 )) /dev/zero | tr '\0' 'a')"
QUERY="/q?q1=%E6%94%BF%E5%8A%A1&q2=%E5%85%AC%E5%BC%80&q3=%E6%9C%8D%E5%8A%A1&q4=%E5%8A%9E%E4%BA%8B&q5=%E6%8C%87%E5%8D%97"
QUERY="$QUERY&q6=%E9%80%9A%E7%9F%A5&q7=%E5%85%AC%E5%91%8A&q8=%E6%95%99%E8%82%B2&q9=%E5%8C%BB%E7%96%97&q10=%E4%BA%A4%E9%80%9A"
FORM_LUA=$WORK/form.lua
printf 'wrk.method = "POST"\nwrk.body = "%s"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n' \
    "$FORM" > "$FORM_LUA"

printf '%-15s %-6s %10s %14s %10s\n' target work requests instr/request vs-bare
declare -A BARE=()
for t in "${TARGETS[@]}"; do
    port=$(free_port)
    case "$t" in
        bare-pingora) cmd=("$BIN_DIR/examples/bare_pingora" "127.0.0.1:$port" "127.0.0.1:$ORIGIN_PORT") ;;
        egret) write_egret_conf "$WORK/$t" "$port" "" $'[waf]\nmode = "off"'
               cmd=("$BIN_DIR/egret" run -c "$WORK/$t/egret.toml") ;;
        egret-waf-pl1) write_egret_conf "$WORK/$t" "$port" "rulesets_dir = \"$ROOT/rulesets\"" $'[waf]\nmode = "block"\nparanoia = 1'
               cmd=("$BIN_DIR/egret" run -c "$WORK/$t/egret.toml") ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    for w in $WORKLOADS; do
        out="$OUT/$t-$w.out"
        rm -f "$out"
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "${cmd[@]}" \
            > "$WORK/$t.log" 2>&1 &
        vpid=$!
        PIDS+=($vpid)
        for _ in $(seq 300); do
            curl -s -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$port/small" && break
            sleep 0.2
        done
        case "$w" in
            small) args=("http://127.0.0.1:$port/small") ;;
            query) args=("http://127.0.0.1:$port$QUERY") ;;
            form)  args=(-s "$FORM_LUA" "http://127.0.0.1:$port/form") ;;
        esac
        # Warm up (connection pools, lazy statics), then count only the measured run.
        wrk -t1 -c"$CONNS" -d2s -H "Host: $HOST" "${args[@]}" > /dev/null
        callgrind_control -i on "$vpid" > /dev/null 2>&1
        reqs=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Host: $HOST" "${args[@]}" |
            awk '/requests in/ {print $1}')
        callgrind_control -i off "$vpid" > /dev/null 2>&1
        callgrind_control -d "$vpid" > /dev/null 2>&1
        kill -TERM "$vpid" 2>/dev/null || true
        wait "$vpid" 2>/dev/null || true
        ir=$(cat "$out"* 2>/dev/null | awk '/^totals:/ {s += $2} END {print s + 0}')
        per=$(( reqs > 0 ? ir / reqs : 0 ))
        [ "$t" = bare-pingora ] && BARE[$w]=$per
        ratio="-"
        [ -n "${BARE[$w]:-}" ] && [ "$per" -gt 0 ] && ratio=$(awk -v b="${BARE[$w]}" -v e="$per" 'BEGIN {printf "%.2fx", b / e}')
        printf '%-15s %-6s %10s %14s %10s\n' "$t" "$w" "$reqs" "$per" "$ratio"
    done
done
echo "profiles: $OUT (callgrind_annotate --inclusive=yes FILE | head -60)"
