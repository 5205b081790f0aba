#!/usr/bin/env bash
# Throughput of a protected page (fetched, verdict from the cache, served by Egret) against the
# same kind of page unprotected (proxied), on one Egret with one worker thread; wrk on loopback.
# Prints req/s of each and the ratio. Uses the demo origins (egret demo) as the origin.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
[ -x target/release/egret ] || cargo build --release
work="$(mktemp -d /tmp/egret-deface-bench.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# The demo brings up origins on 127.0.0.1:18081-18084 (and its own gateway, unused here).
target/release/egret demo >"$work/demo.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18081/ && break; sleep 0.1; done
mkdir -p "$work/sites"
cat >"$work/egret.toml" <<CONF
sites_dir = "sites"
rulesets_dir = "$(pwd)/rulesets"
[listen]
http = ["127.0.0.1:28080"]
[admin]
listen = "127.0.0.1:29901"
[log]
access_log = "off"
[server]
threads = 1
work_stealing = false
[deface]
state_dir = "$work/state"
probe_interval = "1h"
CONF
cat >"$work/sites/www.toml" <<CONF
name = "www"
hosts = ["www.bench.gov.cn"]
[pools.main]
backends = ["127.0.0.1:18081"]
[waf]
mode = "off"
[deface]
dynamic_selectors = [".served-by", ".news-list"]
[[deface.pages]]
path = "/"
mode = "protect"
CONF
target/release/egret run -c "$work/egret.toml" >"$work/egret.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:29901/readyz && break; sleep 0.1; done
target/release/egret deface baseline --site www -c "$work/egret.toml" >/dev/null
check() { curl -s -o /dev/null -D - -H 'Host: www.bench.gov.cn' "http://127.0.0.1:28080$1" | tr -d '\r' | grep -i '^x-egret-deface' || echo "x-egret-deface: (none)"; }
echo "protected  /          -> $(check /)"
echo "unprotected /plain.htm -> $(check /plain.htm)"
run() { wrk -t1 -c32 -d"${DURATION}s" -H 'Host: www.bench.gov.cn' "http://127.0.0.1:28080$1" | awk '/Requests\/sec/ {print $2}'; }
prot=(); plain=()
for r in $(seq "$ROUNDS"); do
  plain+=("$(run /plain.htm)"); prot+=("$(run /)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mp=$(median "${prot[@]}"); mu=$(median "${plain[@]}")
echo "unprotected page (proxied):        ${mu} req/s  (runs: ${plain[*]})"
echo "protected page (checked, cached):  ${mp} req/s  (runs: ${prot[*]})"
awk -v a="$mp" -v b="$mu" 'BEGIN {printf "ratio protected / unprotected: %.2f\n", a/b}'
