#!/usr/bin/env bash
# The WAF's own CPU cost per request, counted in instructions by callgrind (repeatable on a
# busy machine): the shipped rulesets at paranoia 1 (block mode, all four phases) over the
# workloads of cpu-per-request.sh and e2e.sh's 8 KB HTML page, evaluated in process by benches/waf_cost.rs. Only its
# `measure` function is counted, so the figure excludes loading the rulesets.
#
#   scripts/bench/waf-instructions.sh [WORKLOAD...]     (default: small page query form)
#
# Environment: N=2000 (requests per workload), RULESETS (default: rulesets/), CRS_DIR (default
# ../shared/crs: when it exists, OWASP CRS alone at paranoia 1 with the Chinese-site profile is
# measured too, as e2e.sh's egret-crs-pl1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-2000}
RULESETS=${RULESETS:-$ROOT/rulesets}
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=(small page query form)
command -v valgrind >/dev/null || { echo "missing valgrind (apt-get install valgrind)" >&2; exit 1; }
cd "$ROOT"
# Line tables for callgrind_annotate; the same target directory as cpu-per-request.sh.
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=$ROOT/target/prof \
    cargo build --release --example waf_cost >&2
BIN=$ROOT/target/prof/release/examples/waf_cost
OUT=$ROOT/target/bench/callgrind
mkdir -p "$OUT"
CRS_DIR=${CRS_DIR:-$ROOT/../shared/crs}
RULES=(native)
if [ -d "$CRS_DIR/rules" ]; then RULES+=(crs); else echo "no CRS at $CRS_DIR: native rules only" >&2; fi
printf '%-8s %-8s %8s %14s\n' rules workload requests instr/request
for r in "${RULES[@]}"; do
    extra=()
    [ "$r" = crs ] && extra=(--crs "$CRS_DIR")
    for w in "${WORKLOADS[@]}"; do
        out="$OUT/waf-$r-$w.out"
        valgrind --tool=callgrind --toggle-collect='waf_cost::measure*' --callgrind-out-file="$out" \
            "$BIN" "$RULESETS" "$w" "$N" "${extra[@]}" > "$OUT/waf-$r-$w.log" 2>&1 ||
            { cat "$OUT/waf-$r-$w.log" >&2; exit 1; }
        ir=$(awk '/^totals:/ {print $2}' "$out")
        printf '%-8s %-8s %8s %14s\n' "$r" "$w" "$N" "$(( ir / N ))"
    done
done
echo "profiles: $OUT/waf-RULES-WORKLOAD.out (callgrind_annotate FILE | head -60)"
