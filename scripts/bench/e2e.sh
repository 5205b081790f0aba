#!/usr/bin/env bash
# End-to-end benchmark: Egret against nginx, nginx + ModSecurity v3 + OWASP CRS and a bare
# pingora proxy, side by side on loopback, one worker each. See docs/performance.md.
#
#   scripts/bench/e2e.sh [--out FILE] [--no-build] [--no-install] [--keep]
#
# Environment:
#   DURATION=10       seconds per wrk run (DURATION=2 is the quick check)
#   TLS_DURATION      seconds per TLS run (default DURATION/2, at least 2)
#   ROUNDS=3          rounds; every figure is the median over the rounds
#   CONNS=32          connections per run (wrk -t1 -cCONNS; h2load -t1 -cCONNS)
#   TARGETS           plain-HTTP targets, in order (default below)
#   TLS_TARGETS       HTTPS targets (default "nginx-tls egret-tls")
#   WORKLOADS         default "small page query form"
#   TLS_WORKLOADS     default "https-get handshake"
#
# It installs what it needs with apt-get (nginx, libnginx-mod-http-modsecurity, modsecurity-crs,
# wrk, nghttp2-client, curl), builds Egret and the bare pingora example in release mode, writes
# every config into a temporary directory, listens on 127.0.0.1 only (free high ports), and stops
# only the processes it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="$ROOT/target/bench/e2e.json"
BUILD=1
INSTALL=1
KEEP=0
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        --no-build) BUILD=0; shift ;;
        --no-install) INSTALL=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

DURATION=${DURATION:-7}
TLS_DURATION=${TLS_DURATION:-$(( DURATION / 2 > 2 ? DURATION / 2 : 2 ))}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WORKLOADS=${WORKLOADS-"small page query form"}
TLS_WORKLOADS=${TLS_WORKLOADS-"https-get handshake"}

# ---------------------------------------------------------------------------------------------
# Targets. Each name is started by start_target() below.
#   nginx         nginx 1 worker as a plain reverse proxy (upstream keepalive 64)
#   nginx-crs     the same + ModSecurity v3 + OWASP CRS 3.3.4 (Debian), paranoia 1, blocking
#   bare-pingora  benches/bare_pingora.rs: ProxyHttp with only upstream_peer, threads = 1
#   egret         Egret, WAF off, threads = 1, work_stealing = false, access log off
#   nginx-tls     the nginx proxy's TLS listener (HTTP/2 and HTTP/1.1)
#   egret-tls     Egret with an https listener (same config + certificate)
#
#   egret-waf-pl1 Egret with its shipped rulesets, paranoia 1, blocking
#   egret-crs-pl1 Egret with the OWASP CRS v4 from CRS_DIR, paranoia 1, blocking (only when
#                 CRS_DIR, default ../shared/crs, exists)
# Every target whose name starts with "egret" also gets a ratio to bare-pingora. With the six
# plain targets the default DURATION=7 keeps the run under ten minutes.
_crs_default=""
[ -d "${CRS_DIR:-$ROOT/../shared/crs}/rules" ] && _crs_default=" egret-crs-pl1"
TARGETS=${TARGETS-"nginx nginx-crs bare-pingora egret egret-waf-pl1$_crs_default"}
TLS_TARGETS=${TLS_TARGETS-"nginx-tls egret-tls"}
# <<< HOOK

HOST=www.bench.gov.cn          # Host header / site name every request carries
UA="egret-bench/1 (wrk)"

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --------------------------------------------------------------------------- processes + cleanup
PIDS=()          # every process this script started (and only those) is stopped on exit
declare -A PID_OF=()
WORK=""
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
            log "kept $WORK (configs and logs)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------- packages
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }
MODSEC_SO=""
find_modsec_so() {
    for d in /usr/share/nginx/modules /usr/lib/nginx/modules; do
        [ -f "$d/ngx_http_modsecurity_module.so" ] && { MODSEC_SO="$d/ngx_http_modsecurity_module.so"; return 0; }
    done
    return 1
}
install_packages() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    find_modsec_so || missing+=(libnginx-mod-http-modsecurity)
    [ -d /usr/share/modsecurity-crs/rules ] || missing+=(modsecurity-crs)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$INSTALL" = 1 ] || die "missing packages: ${missing[*]} (run without --no-install)"
        log "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
            { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
    fi
    find_modsec_so || die "ngx_http_modsecurity_module.so not found"
}
install_packages

# --------------------------------------------------------------------------- build
EGRET_BIN=${EGRET_BIN:-"$ROOT/target/release/egret"}     # override to measure another build
BARE_BIN=${BARE_BIN:-"$ROOT/target/release/examples/bare_pingora"}
if [ "$BUILD" = 1 ]; then
    log "building (cargo build --release; cargo build --release --example bare_pingora)"
    (cd "$ROOT" && nice cargo build --release -q && nice cargo build --release -q --example bare_pingora)
fi
case " $TARGETS $TLS_TARGETS " in *" egret"*) [ -x "$EGRET_BIN" ] || die "$EGRET_BIN missing (cargo build --release)" ;; esac
case " $TARGETS " in *" bare-pingora "*) [ -x "$BARE_BIN" ] || die "$BARE_BIN missing (cargo build --release --example bare_pingora)" ;; esac

# --------------------------------------------------------------------------- work dir, ports
WORK=$(mktemp -d /tmp/egret-bench.XXXXXX)
chmod 755 "$WORK"           # nginx workers (www-data when run as root) read files here
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

USED_PORTS=" "
free_port() {
    local p
    while :; do
        p=$(( 20000 + RANDOM % 25000 ))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
            USED_PORTS="$USED_PORTS$p "
            echo "$p"
            return
        fi
    done
}
ORIGIN_PORT=$(free_port); NGINX_PORT=$(free_port); NGINX_TLS_PORT=$(free_port)
CRS_PORT=$(free_port); BARE_PORT=$(free_port); EGRET_PORT=$(free_port)
EGRET_TLS_HTTP_PORT=$(free_port); EGRET_TLS_PORT=$(free_port)

NGINX_USER_LINE=""
[ "$(id -u)" = 0 ] && NGINX_USER_LINE="user www-data;"
getent passwd www-data >/dev/null || NGINX_USER_LINE=""

# Content: 200-byte /small, 8 KB /page.html, a 2 KB urlencoded form, ten Chinese parameters.
mkdir -p "$WORK/www"
head -c 199 /dev/zero | tr '\0' 'x' > "$WORK/www/small"; echo >> "$WORK/www/small"
{
    printf '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>示范市人民政府</title></head><body>\n'
    for i in $(seq 190); do printf '<p class="n">政务公开 item %03d</p>\n' "$i"; done
} > "$WORK/www/page.html"
pad=$(( 8192 - $(wc -c < "$WORK/www/page.html") - 23 ))
[ "$pad" -ge 0 ] || die "page.html too long"
{ printf '<!--'; head -c "$pad" /dev/zero | tr '\0' 'x'; printf -- '-->\n</body></html>\n'; } >> "$WORK/www/page.html"
[ "$(wc -c < "$WORK/www/page.html")" = 8192 ] || die "page.html is $(wc -c < "$WORK/www/page.html") bytes, not 8192"
FORM=$(for i in $(seq -w 1 40); do printf 'field%s=%s&' "$i" '%E6%94%BF%E5%8A%A1%E5%85%AC%E5%BC%80abc'; done)
FORM="${FORM}pad=$(head -c $(( 2048 - ${#FORM} - 4 )) /dev/zero | tr '\0' 'a')"
[ ${#FORM} -eq 2048 ] || die "form body is ${#FORM} bytes"
QUERY="q1=%E6%94%BF%E5%8A%A1&q2=%E5%85%AC%E5%BC%80&q3=%E6%9C%8D%E5%8A%A1&q4=%E5%8A%9E%E4%BA%8B&q5=%E6%8C%87%E5%8D%97"
QUERY="$QUERY&q6=%E9%80%9A%E7%9F%A5&q7=%E5%85%AC%E5%91%8A&q8=%E6%95%99%E8%82%B2&q9=%E5%8C%BB%E7%96%97&q10=%E4%BA%A4%E9%80%9A"
cat > "$WORK/form.lua" <<EOF
wrk.method = "POST"
wrk.body = "$FORM"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
EOF
chmod -R a+rX "$WORK"

# Certificate (ECDSA P-256, self-signed) for both TLS targets.
mkdir -p "$WORK/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3 \
    -keyout "$WORK/certs/bench.key" -out "$WORK/certs/bench.crt" -subj "/CN=$HOST" \
    -addext "subjectAltName=DNS:$HOST" >/dev/null 2>&1 || die "openssl could not create the certificate"
chmod 644 "$WORK/certs/bench.key"

# --------------------------------------------------------------------------- configs
nginx_common() {   # $1 = instance dir
    cat <<EOF
$NGINX_USER_LINE
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; }
EOF
}
nginx_http_common() {
    cat <<EOF
    access_log off;
    types { text/html html; text/plain txt; }
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
EOF
}
write_origin_conf() {
    local d="$WORK/origin"; mkdir -p "$d/tmp"
    { nginx_common "$d"; cat <<EOF
http {
$(nginx_http_common "$d")
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        root $WORK/www;
        location = /small { }
        location = /page.html { }
        location /form { return 200 "ok\n"; }     # POST: the body is read and discarded
        location = /q { alias $WORK/www/small; } # the query workload: 200 B, query ignored
        location / { return 404; }
    }
}
EOF
    } > "$d/nginx.conf"
}
write_nginx_proxy_conf() {   # $1 name, $2 port, $3 tls port or "", $4 extra http-level lines
    local d="$WORK/$1"; mkdir -p "$d/tmp"
    local tls=""
    if [ -n "$3" ]; then
        tls="        listen 127.0.0.1:$3 ssl http2 backlog=4096;
        ssl_certificate $WORK/certs/bench.crt;
        ssl_certificate_key $WORK/certs/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;   # as Egret; nginx 1.22's default lacks TLSv1.3"
    fi
    { [ "$1" = nginx-crs ] && echo "load_module $MODSEC_SO;"; nginx_common "$d"; cat <<EOF
http {
$(nginx_http_common "$d")
$4
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
$tls
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } > "$d/nginx.conf"
}
write_modsec_conf() {
    # ModSecurity v3 main config (the settings of modsecurity.conf-recommended that matter, with
    # SecRuleEngine On = blocking), then Debian's CRS 3.3.4 as /usr/share/modsecurity-crs/owasp-crs.load
    # includes it. Paranoia level: crs-setup.conf leaves it at the default, 1; anomaly threshold 5.
    local d="$WORK/nginx-crs/modsec"; mkdir -p "$d/tmp" "$d/data"; chmod 1777 "$d/tmp" "$d/data" "$d"
    cat > "$d/main.conf" <<EOF
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRule REQUEST_HEADERS:Content-Type "(?:application(?:/soap\+|/)|text/)xml" "id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "application/json" "id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" "id:'200002',phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml
SecResponseBodyLimit 524288
SecResponseBodyLimitAction ProcessPartial
SecTmpDir $d/tmp
SecDataDir $d/data
SecAuditEngine RelevantOnly
SecAuditLogRelevantStatus "^(?:5|4(?!04))"
SecAuditLogParts ABIJDEFHZ
SecAuditLogType Serial
SecAuditLog $d/audit.log
SecArgumentSeparator &
SecCookieFormat 0
SecStatusEngine Off
Include /etc/modsecurity/crs/crs-setup.conf
Include /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
Include /usr/share/modsecurity-crs/rules/*.conf
Include /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
EOF
    touch "$d/audit.log"; chmod 666 "$d/audit.log"
}

# Egret: one site in front of the origin; WAF off, no rate limit, access log off, one thread.
write_egret_conf() {   # $1 name, $2 http port, $3 https port or "", $4 extra global TOML, $5 extra site TOML
    local d="$WORK/$1"; mkdir -p "$d/sites" "$d/certs"
    cp "$WORK/certs/bench.crt" "$WORK/certs/bench.key" "$d/certs/"
    {
        echo 'sites_dir = "sites"'
        echo 'certs_dir = "certs"'
        echo "$4"      # extra global TOML: top-level keys first, then its own tables
        echo '[listen]'
        echo "http = [\"127.0.0.1:$2\"]"
        [ -n "$3" ] && echo "https = [\"127.0.0.1:$3\"]"
        cat <<EOF
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
    } > "$d/egret.toml"
    {
        cat <<EOF
name = "bench"
hosts = ["$HOST"]
[pools.web]
backends = ["127.0.0.1:$ORIGIN_PORT"]
EOF
        if [ -n "$3" ]; then
            printf '[tls]\ncert = "bench.crt"\nkey = "bench.key"\nredirect_http = false\n'
        fi
        echo "$5"
    } > "$d/sites/bench.toml"
}

# The "egret" target is Egret with the WAF off. Builds that have the site key `[waf] mode` get
# `mode = "off"` explicitly (their default is blocking at paranoia 1); older builds have no WAF.
EGRET_WAF_OFF_SITE=""
egret_accepts() {   # $1 extra site TOML: does `egret check` accept it?
    local d="$WORK/probe"; rm -rf "$d"
    write_egret_conf probe "$(free_port)" "" "" "$1" >/dev/null
    "$EGRET_BIN" check -c "$d/egret.toml" >"$WORK/probe.log" 2>&1
}

# >>> HOOK: Egret WAF targets: the global-file and site-file TOML appended to the egret target's
# config. Add the target names to TARGETS above to measure them. egret-waf-pl1 is filled in from
# the keys documented in README.md ("[waf]" of a site file, "rulesets_dir"). egret-crs-pl1 runs OWASP CRS v4 alone (no native rules: an empty
# rulesets_dir, like nginx-crs) from CRS_DIR (default ../shared/crs), paranoia 1, blocking, with
# the Chinese-site exclusion profile (rulesets/crs/cn-exclusions.conf, docs/crs.md).
EGRET_WAF_PL1_GLOBAL="rulesets_dir = \"$ROOT/rulesets\""     # shipped rules, paranoia 1, blocking
EGRET_WAF_PL1_SITE=$'[waf]\nmode = "block"\nparanoia = 1'
CRS_DIR=${CRS_DIR:-$ROOT/../shared/crs}
mkdir -p "$WORK/crs-only-rulesets"
EGRET_CRS_PL1_GLOBAL="rulesets_dir = \"$WORK/crs-only-rulesets\""   # OWASP CRS, paranoia 1, blocking
EGRET_CRS_PL1_SITE=$'[waf]\nmode = "block"\nparanoia = 1\n[waf.crs]\n'"dir = \"$CRS_DIR\""$'\nparanoia = 1\ninbound_threshold = 5\noutbound_threshold = 4\n'"exclusions = [\"$ROOT/rulesets/crs/cn-exclusions.conf\"]"
# <<< HOOK

# --------------------------------------------------------------------------- start targets
declare -A PORT_OF=([nginx]=$NGINX_PORT [nginx-crs]=$CRS_PORT [bare-pingora]=$BARE_PORT
    [egret]=$EGRET_PORT [nginx-tls]=$NGINX_TLS_PORT [egret-tls]=$EGRET_TLS_PORT)
declare -A SCHEME_OF=([nginx-tls]=https [egret-tls]=https)
declare -A PROC_OF=()   # name -> the pid whose memory we report (egret / pingora process)

spawn() {   # $1 name, rest: command; output to $WORK/$1.log
    local name=$1; shift
    "$@" > "$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid"); PID_OF[$name]=$pid
}
start_nginx() {   # $1 name
    local d="$WORK/$1"
    nginx -t -q -p "$d" -e "$d/error.log" -c "$d/nginx.conf" 2>"$WORK/$1.nginx-t.log" ||
        { cat "$WORK/$1.nginx-t.log" >&2; die "nginx config of $1 is invalid"; }
    spawn "$1" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;'
}
wait_ready() {   # $1 name, $2 url, [$3 curl options]
    local name=$1 url=$2 code=""
    for _ in $(seq 150); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -k ${3:-} -H "Host: $HOST" "$url" 2>/dev/null || true)
        [ "$code" = 200 ] && return 0
        kill -0 "${PID_OF[$name]}" 2>/dev/null || { tail -20 "$WORK/$name.log" >&2; die "$name exited"; }
        sleep 0.1
    done
    tail -20 "$WORK/$name.log" >&2
    die "$name not ready at $url (last status $code)"
}

case " $TARGETS $TLS_TARGETS " in *" egret"*)
    if egret_accepts $'[waf]\nmode = "off"'; then
        EGRET_WAF_OFF_SITE=$'[waf]\nmode = "off"'
        log "egret: this build has a WAF; the egret targets run with [waf] mode = \"off\""
    fi ;;
esac

write_origin_conf
start_nginx origin
wait_ready origin "http://127.0.0.1:$ORIGIN_PORT/small"

started=" "
start_target() {   # $1 name
    local t=$1
    case "$started" in *" $t "*) return ;; esac
    case "$t" in
        nginx|nginx-tls)
            case "$started" in *" nginx "*|*" nginx-tls "*) ;; *)
                write_nginx_proxy_conf nginx "$NGINX_PORT" "$NGINX_TLS_PORT" ""
                start_nginx nginx
                wait_ready nginx "http://127.0.0.1:$NGINX_PORT/small"
                PID_OF[nginx-tls]=${PID_OF[nginx]}
                wait_ready nginx-tls "https://127.0.0.1:$NGINX_TLS_PORT/small"
                started="$started nginx nginx-tls " ;;
            esac ;;
        nginx-crs)
            write_modsec_conf
            write_nginx_proxy_conf nginx-crs "$CRS_PORT" "" "    modsecurity on;
    modsecurity_rules_file $WORK/nginx-crs/modsec/main.conf;"
            start_nginx nginx-crs
            wait_ready nginx-crs "http://127.0.0.1:$CRS_PORT/small"
            # Blocking mode check: a classic SQL injection must get 403 before we measure.
            local code
            code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" -A "$UA" \
                "http://127.0.0.1:$CRS_PORT/q?id=1%27%20or%20%271%27%3D%271")
            [ "$code" = 403 ] || die "nginx-crs answered $code, not 403, to ?id=1' or '1'='1: not blocking"
            log "nginx-crs blocks ?id=1' or '1'='1 with 403 (libmodsecurity3 $(dpkg-query -W -f '${Version}' libmodsecurity3 2>/dev/null || echo '?'), CRS $(dpkg-query -W -f '${Version}' modsecurity-crs 2>/dev/null || echo '?'))" ;;
        bare-pingora)
            spawn bare-pingora "$BARE_BIN" "127.0.0.1:$BARE_PORT" "127.0.0.1:$ORIGIN_PORT"
            PROC_OF[bare-pingora]=${PID_OF[bare-pingora]}
            wait_ready bare-pingora "http://127.0.0.1:$BARE_PORT/small" ;;
        egret)
            write_egret_conf egret "$EGRET_PORT" "" "" "$EGRET_WAF_OFF_SITE"
            spawn egret "$EGRET_BIN" run -c "$WORK/egret/egret.toml"
            PROC_OF[egret]=${PID_OF[egret]}
            wait_ready egret "http://127.0.0.1:$EGRET_PORT/small" ;;
        egret-tls)
            write_egret_conf egret-tls "$EGRET_TLS_HTTP_PORT" "$EGRET_TLS_PORT" "" "$EGRET_WAF_OFF_SITE"
            spawn egret-tls "$EGRET_BIN" run -c "$WORK/egret-tls/egret.toml"
            PROC_OF[egret-tls]=${PID_OF[egret-tls]}
            wait_ready egret-tls "https://127.0.0.1:$EGRET_TLS_PORT/small" ;;
        egret-waf-pl1|egret-crs-pl1)
            # >>> HOOK: started like "egret" with the WAF snippets above.
            local g s
            if [ "$t" = egret-waf-pl1 ]; then g=$EGRET_WAF_PL1_GLOBAL; s=$EGRET_WAF_PL1_SITE; else g=$EGRET_CRS_PL1_GLOBAL; s=$EGRET_CRS_PL1_SITE; fi
            [ -n "$g$s" ] || die "$t: fill in its WAF config at the HOOK in $0"
            PORT_OF[$t]=$(free_port)
            write_egret_conf "$t" "${PORT_OF[$t]}" "" "$g" "$s"
            spawn "$t" "$EGRET_BIN" run -c "$WORK/$t/egret.toml"
            PROC_OF[$t]=${PID_OF[$t]}
            wait_ready "$t" "http://127.0.0.1:${PORT_OF[$t]}/small"
            # A WAF target must block the same SQL injection before it is measured.
            local code
            code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" -A "$UA" \
                "http://127.0.0.1:${PORT_OF[$t]}/q?id=1%27%20or%20%271%27%3D%271")
            [ "$code" = 403 ] || die "$t answered $code, not 403, to ?id=1' or '1'='1" ;;
            # <<< HOOK
        *) die "unknown target $t" ;;
    esac
    started="$started$t "
}

for t in $TARGETS $TLS_TARGETS; do start_target "$t"; done
log "origin :$ORIGIN_PORT; $(for t in $TARGETS $TLS_TARGETS; do printf '%s :%s  ' "$t" "${PORT_OF[$t]}"; done)"

# Every workload must answer 200 on every target before anything is measured.
check_workload() {   # $1 target, $2 workload
    local url="${SCHEME_OF[$1]:-http}://127.0.0.1:${PORT_OF[$1]}" code
    case "$2" in
        small|https-get|handshake) code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Host: $HOST" -A "$UA" "$url/small") ;;
        page) code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Host: $HOST" -A "$UA" "$url/page.html") ;;
        query) code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Host: $HOST" -A "$UA" "$url/q?$QUERY") ;;
        form) code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Host: $HOST" -A "$UA" \
                  -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "$FORM" "$url/form") ;;
    esac
    [ "$code" = 200 ] || die "$1 answers $code to the $2 workload"
}
for t in $TARGETS; do for w in $WORKLOADS; do check_workload "$t" "$w"; done; done
for t in $TLS_TARGETS; do for w in $TLS_WORKLOADS; do check_workload "$t" "$w"; done; done

# --------------------------------------------------------------------------- measuring
RAW="$WORK/raw.tsv"     # round workload target rps p50_ms p99_ms errors
: > "$RAW"

to_ms() {   # wrk latency "1.23ms" / "850.00us" / "1.02s" -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}
run_wrk() {   # $1 round, $2 workload, $3 target
    local r=$1 w=$2 t=$3 url path extra=() out
    url="${SCHEME_OF[$t]:-http}://127.0.0.1:${PORT_OF[$t]}"
    case "$w" in
        small) path=/small ;;
        page) path=/page.html ;;
        query) path="/q?$QUERY" ;;
        form) path=/form; extra=(-s "$WORK/form.lua") ;;
        handshake) path=/small; extra=(-H "Connection: close") ;;
    esac
    out=$(wrk -t1 -c"$CONNS" -d"${4:-$DURATION}s" --latency -H "Host: $HOST" -H "User-Agent: $UA" \
        -H "Accept: */*" "${extra[@]}" "$url$path" 2>&1) || { echo "$out" >&2; die "wrk failed on $t $w"; }
    echo "$out" > "$WORK/runs/$r.$w.$t.txt"
    local rps p50 p99 non2xx sockerr
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors:/ {gsub(/,/,""); print $4+$6+$8+$10}' <<<"$out"); sockerr=${sockerr:-0}
    [ -n "$rps" ] || { echo "$out" >&2; die "could not parse wrk output ($t $w)"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$w" "$t" "$rps" "$p50" "$p99" "$((non2xx + sockerr))" >> "$RAW"
    log "round $r  $w  $t: $rps req/s, p50 ${p50} ms, p99 ${p99} ms$( [ "$((non2xx + sockerr))" = 0 ] || echo ", ERRORS $non2xx non-2xx + $sockerr socket")"
}
run_h2load() {   # $1 round, $2 target: HTTPS keep-alive GET over HTTP/2 (ALPN h2), CONNS connections
    local r=$1 t=$2 url out lf rps p50 p99 failed
    url="https://127.0.0.1:${PORT_OF[$t]}/small"
    lf="$WORK/runs/$r.https-get.$t.log"
    out=$(h2load -t1 -c"$CONNS" -m1 -D "$TLS_DURATION" --warm-up-time=1 -H ":authority: $HOST" \
        -H "User-Agent: $UA" --log-file="$lf" "$url" 2>&1) || { echo "$out" >&2; die "h2load failed on $t"; }
    echo "$out" > "$WORK/runs/$r.https-get.$t.txt"
    rps=$(awk '/^finished in/ {gsub(/,/,""); print $4}' <<<"$out")
    failed=$(awk '/^requests:/ {gsub(/,/,""); print $10 + $12}' <<<"$out")
    local non2xx
    non2xx=$(awk '/^status codes:/ {gsub(/,/,""); print $5 + $7 + $9}' <<<"$out")
    read -r p50 p99 < <(awk -F'\t' '{print $3}' "$lf" | sort -n | awk '{a[NR]=$1} END {
        if (NR == 0) { print "0 0"; exit }
        i50 = int(NR*0.50); if (i50 < 1) i50 = 1; i99 = int(NR*0.99); if (i99 < 1) i99 = 1;
        printf "%.3f %.3f\n", a[i50]/1000, a[i99]/1000 }')
    [ -n "$rps" ] || { echo "$out" >&2; die "could not parse h2load output ($t)"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" https-get "$t" "$rps" "$p50" "$p99" "$(( ${failed:-0} + ${non2xx:-0} ))" >> "$RAW"
    log "round $r  https-get  $t: $rps req/s, p50 ${p50} ms, p99 ${p99} ms$( [ "$(( ${failed:-0} + ${non2xx:-0} ))" = 0 ] || echo ", ERRORS ${failed:-0} failed + ${non2xx:-0} non-2xx")"
}
rotate() {   # $1 offset, rest: list -> the list rotated by offset (targets interleaved fairly)
    local k=$1; shift; local a=("$@") n=$#
    for ((i = 0; i < n; i++)); do printf '%s ' "${a[$(( (i + k) % n ))]}"; done
}

mkdir -p "$WORK/runs"
n_http=$(( $(wc -w <<<"$TARGETS") * $(wc -w <<<"$WORKLOADS") ))
n_tls=$(( $(wc -w <<<"$TLS_TARGETS") * $(wc -w <<<"$TLS_WORKLOADS") ))
log "measuring: $ROUNDS rounds x ($n_http runs of ${DURATION}s + $n_tls runs of ${TLS_DURATION}s), about $(( (ROUNDS * (n_http * DURATION + n_tls * (TLS_DURATION + 1)) + 59) / 60 )) min"
# Warm-up: one short run per target (connection pools, page cache, CPU frequency).
for t in $TARGETS; do
    wrk -t1 -c"$CONNS" -d1s -H "Host: $HOST" -H "User-Agent: $UA" "http://127.0.0.1:${PORT_OF[$t]}/small" >/dev/null 2>&1 || true
done
START_TS=$(date +%s)
for r in $(seq "$ROUNDS"); do
    for w in $WORKLOADS; do
        for t in $(rotate $((r - 1)) $TARGETS); do run_wrk "$r" "$w" "$t"; done
    done
    for w in $TLS_WORKLOADS; do
        for t in $(rotate $((r - 1)) $TLS_TARGETS); do
            case "$w" in
                https-get) run_h2load "$r" "$t" ;;
                handshake) run_wrk "$r" handshake "$t" "$TLS_DURATION" ;;   # a new TLS connection per request
            esac
        done
    done
done
ELAPSED=$(( $(date +%s) - START_TS ))

# Peak memory of the Rust proxies (VmHWM: the resident set's high-water mark).
declare -A HWM=() RSS=()
for t in "${!PROC_OF[@]}"; do
    HWM[$t]=$(awk '/^VmHWM:/ {print $2}' "/proc/${PROC_OF[$t]}/status" 2>/dev/null || echo 0)
    RSS[$t]=$(awk '/^VmRSS:/ {print $2}' "/proc/${PROC_OF[$t]}/status" 2>/dev/null || echo 0)
done

# --------------------------------------------------------------------------- report
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NPROC=$(nproc)
CMD="DURATION=$DURATION ROUNDS=$ROUNDS scripts/bench/e2e.sh ${ORIG_ARGS[*]:-}"
SUMMARY="$WORK/summary.tsv"
# Medians per (workload, target) and the ratios; rows in workload order, then target order.
awk -F'\t' -v order_w="$WORKLOADS $TLS_WORKLOADS" -v order_t="$TARGETS $TLS_TARGETS" '
function median(s,   a, n, i, j, x) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ k = $2 SUBSEP $3; rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6; err[k] += $7; runs[k] = runs[k] " " $4 }
END {
    nw = split(order_w, W, " "); nt = split(order_t, T, " ")
    for (i = 1; i <= nw; i++) {
        w = W[i]
        ref = ""; bare = ""
        if ((w SUBSEP "nginx") in rps) ref = median(rps[w SUBSEP "nginx"])
        if ((w SUBSEP "nginx-tls") in rps) ref = median(rps[w SUBSEP "nginx-tls"])
        if ((w SUBSEP "bare-pingora") in rps) bare = median(rps[w SUBSEP "bare-pingora"])
        for (j = 1; j <= nt; j++) {
            k = w SUBSEP T[j]; if (!(k in rps)) continue
            m = median(rps[k])
            rn = (ref != "" && ref > 0) ? sprintf("%.3f", m / ref) : ""
            rb = (T[j] ~ /^egret/ && T[j] !~ /tls/ && bare != "" && bare > 0) ? sprintf("%.3f", m / bare) : ""
            sub(/^ /, "", runs[k])
            printf "%s\t%s\t%.0f\t%.3f\t%.3f\t%s\t%s\t%d\t%s\n", w, T[j], m, median(p50[k]), median(p99[k]), rn, rb, err[k], runs[k]
        }
    }
}' "$RAW" > "$SUMMARY"

{
    echo
    echo "Egret end-to-end benchmark: $NPROC cores ($CPU), loopback, one worker each,"
    echo "wrk/h2load -t1 -c$CONNS keep-alive, ${DURATION}s runs (TLS ${TLS_DURATION}s), median of $ROUNDS interleaved rounds"
    echo
    printf '| %-9s | %-12s | %9s | %8s | %8s | %8s | %8s |%s\n' workload target "req/s" "p50 ms" "p99 ms" "x nginx" "x bare" " errors"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s\n' ----------- -------------- ----------: ---------: ---------: ---------: ---------: ---
    awk -F'\t' '{ printf "| %-9s | %-12s | %9s | %8s | %8s | %8s | %8s | %s\n", $1, $2, $3, $4, $5, ($6 == "" ? "-" : $6), ($7 == "" ? "-" : $7), $8 }' "$SUMMARY"
    echo
    for t in $(printf '%s\n' "${!PROC_OF[@]}" | sort); do
        echo "peak RSS (VmHWM) $t: $(( ${HWM[$t]} / 1024 )) MiB (${HWM[$t]} KiB); now $(( ${RSS[$t]} / 1024 )) MiB"
    done
    echo "measured in ${ELAPSED}s; command: $CMD"
} | tee "$WORK/table.txt"

mkdir -p "$(dirname "$OUT")"
{
    printf '{\n  "date": "%s",\n  "command": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$CMD"
    printf '  "machine": {"nproc": %s, "cpu": "%s", "kernel": "%s"},\n' "$NPROC" "$CPU" "$(uname -r)"
    printf '  "versions": {"nginx": "%s", "modsecurity_crs": "%s", "wrk": "%s", "h2load": "%s"},\n' \
        "$(nginx -v 2>&1 | sed 's/.*nginx\///')" "$(dpkg-query -W -f '${Version}' modsecurity-crs 2>/dev/null || true)" \
        "$(wrk -v 2>&1 | awk 'NR==1 {print $2}')" "$(h2load --version 2>&1 | awk '{print $NF; exit}')"
    printf '  "settings": {"duration_s": %s, "tls_duration_s": %s, "rounds": %s, "connections": %s, "threads": 1},\n' \
        "$DURATION" "$TLS_DURATION" "$ROUNDS" "$CONNS"
    printf '  "peak_rss_kib": {'
    first=1
    for t in $(printf '%s\n' "${!PROC_OF[@]}" | sort); do
        [ $first = 1 ] || printf ', '; first=0
        printf '"%s": %s' "$t" "${HWM[$t]}"
    done
    printf '},\n  "results": [\n'
    awk -F'\t' '{
        runs = $9; gsub(/ /, ", ", runs)
        printf "%s    {\"workload\": \"%s\", \"target\": \"%s\", \"rps\": %s, \"p50_ms\": %s, \"p99_ms\": %s, \"ratio_nginx\": %s, \"ratio_bare_pingora\": %s, \"errors\": %s, \"rps_runs\": [%s]}",
            (NR > 1 ? ",\n" : ""), $1, $2, $3, $4, $5, ($6 == "" ? "null" : $6), ($7 == "" ? "null" : $7), $8, runs
    } END { print "" }' "$SUMMARY"
    printf '  ]\n}\n'
} > "$OUT"
log "wrote $OUT"
