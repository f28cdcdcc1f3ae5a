#!/usr/bin/env bash
# run_decode.sh — build bench_decode, run it (tfm: KV-cached decoder, then the same
# decoder recomputing the prefix every step) and bench_decode_torch.py (PyTorch's usual
# nn.Transformer greedy loop) on the same greedy-decoding cases (case by case, tfm then
# PyTorch, back to back), print a comparison table; rows measured while other processes
# used the CPU are flagged.
#
# Usage: bash bench/run_decode.sh [--quick] [--case NAME]... [--wait-idle SEC] [--budget SEC]
#   --quick       short run: >= 0.3 s and >= 1 decode after 1 warm-up; budget 30 s per
#                 case and side, a single decode above 5 s (default: >= 2 s and >= 3
#                 decodes after 1 warm-up; budget 180 s, a single decode above 10 s)
#   --case NAME   only this case (repeatable): MODEL-L with MODEL demo or base and L 32,
#                 128, 256, 512 (e.g. base-256), or MODEL alone for all its lengths
#   --wait-idle SEC  before each side of each case, wait up to SEC seconds for the
#                 cores the run uses to be idle (>= 90% of OMP_NUM_THREADS / cores over
#                 2 s; default 0: do not wait, only flag a side started with less than
#                 75% of that). On a shared machine: OpenMP's spinning threads make a
#                 decode many times slower when another process holds one of its cores;
#                 OMP_NUM_THREADS=1 then measures on the free core.
#   --budget SEC  skip a case (per side and mode) estimated above SEC s (default 180,
#                 --quick 30)
# Environment: BUILD (build directory, default build), PYTHON (default python3),
#   OMP_NUM_THREADS (default: all cores, exported to both sides); OPENBLAS_CORETYPE and
#   the like are passed through unchanged and reported.
#
# One decode: encode 8 sources of S = L tokens once, then L greedy steps (argmax; EOS
# ignored: exactly L tokens per row), timed whole; tok/s = 8 · L / median decode time.
# Each side first estimates a case's time from a probe (see bench/bench_decode.c); a case
# estimated above the budget is skipped with a note, one estimated above the
# single-decode threshold is timed once (marked * in the table).
# Exit status: non-zero if the build or either benchmark fails. If PyTorch cannot be
# imported, that is said plainly and the table holds tfm's numbers only (exit 0).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-python3}

args=(--min-time 2 --min-reps 3 --warmup 1 --budget 180 --single-above 10)
timing="1 warm-up decode, then >= 2 s and >= 3 decodes, median; one decode (*) when estimated > 10 s; skipped when estimated > 180 s"
cases=() wait_idle=0 budget=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) args=(--min-time 0.3 --min-reps 1 --warmup 1 --budget 30 --single-above 5)
                 timing="1 warm-up decode, then >= 0.3 s and >= 1 decode, median; one decode (*) when estimated > 5 s; skipped when estimated > 30 s (quick)" ;;
        --case) [ $# -ge 2 ] || { echo "run_decode.sh: --case needs a name" >&2; exit 2; }
                cases+=("$2"); shift ;;
        --budget) [ $# -ge 2 ] || { echo "run_decode.sh: --budget needs seconds" >&2; exit 2; }
                  budget=(--budget "$2"); shift ;;
        --wait-idle) [ $# -ge 2 ] || { echo "run_decode.sh: --wait-idle needs seconds" >&2; exit 2; }
                     wait_idle=$2; shift ;;
        -h|--help) sed -n "2,/^set /{/^#/p}" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_decode.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

[ ${#budget[@]} -eq 0 ] || timing="$timing; budget overridden: ${budget[1]} s"

# ---- build: configure, then only the bench_decode target (and the library it needs) --
echo "== building bench_decode ($BUILD)" >&2
{ cmake -S . -B "$BUILD" >/dev/null && cmake --build "$BUILD" -j2 --target bench_decode >/dev/null; } || {
    echo "run_decode.sh: building failed (run: cmake -S . -B $BUILD && cmake --build $BUILD --target bench_decode)" >&2
    exit 1
}
BENCH="$BUILD/bench/bench_decode"
tfm_blas=$(sed -n 's/^TFM_BLAS:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
gemm_backend="portable C fallback (TFM_BLAS=none)"
if [ "$tfm_blas" != none ]; then
    gemm_backend="CBLAS ($tfm_blas)"
    if [ "$tfm_blas" = openblas ] && cmake --build "$BUILD" --target openblas_probe >/dev/null 2>&1; then
        gemm_backend="$gemm_backend: $("$BUILD/bench/openblas_probe")"
    fi
fi

# Expand model names to their cases; reject unknown names before running anything.
mapfile -t all_cases < <("$BENCH" --list)
if [ ${#cases[@]} -eq 0 ]; then
    cases=("${all_cases[@]}")
else
    sel=()
    for c in "${cases[@]}"; do
        found=0
        for a in "${all_cases[@]}"; do
            if [ "$a" = "$c" ] || [ "${a%-*}" = "$c" ]; then sel+=("$a"); found=1; fi
        done
        [ "$found" = 1 ] || { echo "run_decode.sh: unknown case '$c' (cases: ${all_cases[*]}, or demo, base)" >&2; exit 2; }
    done
    cases=("${sel[@]}")
fi

# ---- the environment both sides run in ----------------------------------------------
# (not nproc: it answers OMP_NUM_THREADS when that is set)
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc --all)
omp_note="${OMP_NUM_THREADS:-(unset; run_decode.sh sets it to $ncpu)}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$ncpu}

torch_version="(not importable)"
have_torch=1
if ! torch_err=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>&1); then
    have_torch=0
else
    torch_version="$torch_err ($PYTHON)"
fi

echo "== tfm vs PyTorch, greedy decoding, batch 8, source length S = L, forced length L, FP32"
echo "date:               $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:                $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
     "($(grep -o -m1 -w avx512f /proc/cpuinfo || echo no-avx512f))"
echo "cores:              $ncpu (online)"
echo "load average:       $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"
echo "OMP_NUM_THREADS:    $omp_note"
echo "OPENBLAS_CORETYPE:  ${OPENBLAS_CORETYPE:-(unset)}"
echo "OPENBLAS_NUM_THREADS: ${OPENBLAS_NUM_THREADS:-(unset)}"
echo "tfm:                $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' (+ uncommitted changes)'), GEMM $gemm_backend"
echo "torch:              $torch_version"
echo "models:             demo (E 64, H 4, 2+2 layers, F 256), base (E 512, H 8, 6+6, F 2048); V 259, random init, max_len 520"
echo "timing:             $timing"
if [ "$have_torch" = 0 ]; then
    echo "!! PyTorch is NOT importable with $PYTHON — tfm-only numbers below."
    echo "!! ($(printf '%s' "$torch_err" | tail -n1))"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/tfm.txt" "$tmp/torch.txt"

# Run one side on one case; print its '#' header line the first time only.
run_one() { # impl log command...
    local impl=$1 log=$2 rc
    shift 2
    echo "== $impl: ${*: -1}" >&2
    "$@" >"$tmp/out.txt"
    rc=$?
    if grep -q '^# impl=' "$log"; then grep -v '^# impl=' "$tmp/out.txt"; else cat "$tmp/out.txt"; fi | tee -a "$log"
    [ "$rc" -eq 0 ] || echo "run_decode.sh: $impl FAILED on ${*: -1} (exit $rc)" >&2
    return "$rc"
}

# Idle CPU share (%) over the next $1 (default half a) second, from /proc/stat (as
# bench/run.sh).
idle_pct() {
    local a b
    a=$(awk '/^cpu /{ print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep "${1:-0.5}"
    b=$(awk '/^cpu /{ print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; print (t > 0 ? int(100 * (y[1] - x[1]) / t) : 100) }'
}
busy=""

# The idle share the run needs: OMP_NUM_THREADS of the cores (all of them by default).
threads=$OMP_NUM_THREADS
[ "$threads" -ge 1 ] 2>/dev/null && [ "$threads" -le "$ncpu" ] || threads=$ncpu
need_flag=$((75 * threads / ncpu))  # below this idle share before a side: flagged
need_wait=$((90 * threads / ncpu))  # --wait-idle waits for this much

# --wait-idle: wait (up to wait_idle s) for >= need_wait% idle over 2 s; say so on stderr.
wait_quiet() {
    [ "$wait_idle" -gt 0 ] 2>/dev/null || return 0
    local end=$((SECONDS + wait_idle)) idle
    while :; do
        idle=$(idle_pct 2)
        [ "$idle" -ge "$need_wait" ] && return 0
        [ "$SECONDS" -ge "$end" ] && { echo "== still busy (idle $idle%) after ${wait_idle} s; running anyway" >&2; return 0; }
        echo "== CPU busy (idle $idle%), waiting" >&2
        sleep 8
    done
}

tfm_rc=0 torch_rc=0
for c in "${cases[@]}"; do
    wait_quiet
    idle=$(idle_pct)
    [ "$idle" -ge "$need_flag" ] || busy="$busy $c (idle $idle% before tfm)"
    run_one bench_decode "$tmp/tfm.txt" "$BENCH" "${args[@]}" "${budget[@]}" --case "$c" || tfm_rc=1
    if [ "$have_torch" = 1 ]; then
        wait_quiet
        idle=$(idle_pct)
        [ "$idle" -ge "$need_flag" ] || busy="$busy $c (idle $idle% before torch)"
        run_one bench_decode_torch.py "$tmp/torch.txt" "$PYTHON" bench/bench_decode_torch.py \
            "${args[@]}" "${budget[@]}" --case "$c" || torch_rc=1
    fi
done

# ---- table -----------------------------------------------------------------------------
echo
awk -v have_torch="$have_torch" '
    # BENCH impl=X case=Y key=value ... -> v[X, Y, key]
    /^BENCH / {
        delete kv
        for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
        if (!((kv["case"]) in seen)) { seen[kv["case"]] = 1; order[++n] = kv["case"] }
        for (k in kv) v[kv["impl"], kv["case"], k] = kv[k]
    }
    function get(impl, c, k) { return ((impl, c, k) in v) ? v[impl, c, k] : "" }
    # tok/s as shown: the number, * for a single decode, or why there is none
    function cell(impl, c, miss) {
        if (get(impl, c, "impl") == "") return miss
        if (get(impl, c, "skipped") == 1) return sprintf("skip(~%.0fs)", get(impl, c, "est_s"))
        return sprintf("%.0f%s", get(impl, c, "tok_s"), get(impl, c, "reps") == 1 ? "*" : "")
    }
    function rate(impl, c) {
        return (get(impl, c, "impl") != "" && get(impl, c, "skipped") == 0) ? get(impl, c, "tok_s") : ""
    }
    function ratio(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2fx", a / b) : "-" }
    END {
        miss = have_torch ? "FAILED" : "n/a"
        fmt = "%-6s %5s %14s %15s %13s %10s %11s %6s\n"
        printf fmt, "model", "L", "tfm cached", "tfm no-cache", "PyTorch", "cache", "cached/", "same"
        printf fmt, "", "", "tok/s", "tok/s", "tok/s", "speed-up", "PyTorch", "tokens"
        for (i = 1; i <= n; i++) {
            c = order[i]
            m = dflt3(get("tfm-cached", c, "model"), get("tfm-nocache", c, "model"), get("torch", c, "model"))
            L = dflt3(get("tfm-cached", c, "L"), get("tfm-nocache", c, "L"), get("torch", c, "L"))
            ca = rate("tfm-cached", c); nc = rate("tfm-nocache", c); pt = rate("torch", c)
            k1 = get("tfm-cached", c, "checksum"); k2 = get("tfm-nocache", c, "checksum")
            same = (k1 != "" && k2 != "") ? (k1 == k2 ? "yes" : "NO") : "-"
            printf fmt, m, L, cell("tfm-cached", c, "FAILED"), cell("tfm-nocache", c, "FAILED"),
                   cell("torch", c, miss), ratio(ca, nc), ratio(ca, pt), same
            if (L == 256) { tgt[++nt] = m; tsp[nt] = (ca != "" && nc != "") ? ca / nc : -1 }
        }
        print "(generated tokens per second over all 8 rows, whole decode: encode + L steps;"
        print " * = a single decode (estimated too slow to repeat), skip(~Ns) = estimated N s,"
        print " over the budget; cache speed-up = cached / no-cache; cached/PyTorch > 1 means"
        print " tfm is faster; same tokens = cached and no-cache decoded the same ids)"
        for (j = 1; j <= nt; j++) {
            if (tsp[j] < 0) printf "target (cache >= 10x recomputation at L = 256), %s: not measured\n", tgt[j]
            else printf "target (cache >= 10x recomputation at L = 256), %s: %.1fx — %s\n", tgt[j], tsp[j],
                        (tsp[j] >= 10 ? "met" : "NOT met")
        }
    }
    function dflt3(a, b, c) { return a != "" ? a : (b != "" ? b : c) }' "$tmp/tfm.txt" "$tmp/torch.txt"

[ -z "$busy" ] || echo "WARNING: other processes were using the CPU before:$busy; those rows are unreliable"

if [ "$tfm_rc" -ne 0 ] || [ "$torch_rc" -ne 0 ]; then
    echo "run_decode.sh: FAILED (bench_decode exit $tfm_rc, bench_decode_torch.py exit $torch_rc)" >&2
    exit 1
fi
