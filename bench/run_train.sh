#!/usr/bin/env bash
# run_train.sh — build tfm and bench_train, run bench_train (C) and bench_train_torch.py
# (PyTorch) on the same training-step cases (case by case, tfm then PyTorch, back to
# back), print a comparison table; rows measured while other processes used the CPU
# are flagged.
#
# Usage: bash bench/run_train.sh [--quick] [--case NAME]... [--batch N]
#   --quick       short run: >= 0.5 s and >= 2 steps after 1 warm-up step
#                 (default: >= 2 s and >= 5 steps after 2 warm-up steps)
#   --case NAME   only this case (repeatable): demo base
#   --batch N     override every case's batch size (both sides)
# Environment: BUILD (build directory, default build), PYTHON (default python3; Debian's
#   python3-torch 1.13, if installed, with PYTHON=/usr/bin/python3), OMP_NUM_THREADS
#   (default: all cores, exported to both sides); OPENBLAS_CORETYPE and the like are
#   passed through unchanged and reported.
#
# One step = zero grads, forward, backward (label smoothing 0.1, dropout 0.1), gradient
# clipping to norm 1.0, Adam(0.9, 0.98, eps 1e-9). See bench/bench_train.c.
# Exit status: non-zero if the build or either benchmark fails. If PyTorch cannot be
# imported, that is said plainly and the table holds tfm's numbers only (exit 0).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-python3}

args=(--min-time 2 --min-reps 5 --warmup 2)
timing="2 warm-up steps, then >= 2 s and >= 5 steps; median"
cases=() batch=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) args=(--min-time 0.5 --min-reps 2 --warmup 1)
                 timing="1 warm-up step, then >= 0.5 s and >= 2 steps; median (quick)" ;;
        --case) [ $# -ge 2 ] || { echo "run_train.sh: --case needs a name" >&2; exit 2; }
                cases+=("$2"); shift ;;
        --batch) [ $# -ge 2 ] || { echo "run_train.sh: --batch needs a number" >&2; exit 2; }
                 batch=(--batch "$2"); shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_train.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# ---- build: configure, then only the bench_train target (and the library it needs) ---
echo "== building bench_train ($BUILD)" >&2
{ cmake -S . -B "$BUILD" >/dev/null && cmake --build "$BUILD" -j2 --target bench_train >/dev/null; } || {
    echo "run_train.sh: building failed (run: cmake -S . -B $BUILD && cmake --build $BUILD --target bench_train)" >&2
    exit 1
}
BENCH="$BUILD/bench/bench_train"
tfm_blas=$(sed -n 's/^TFM_BLAS:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
gemm_backend="portable C fallback (TFM_BLAS=none)"
if [ "$tfm_blas" != none ]; then
    gemm_backend="CBLAS ($tfm_blas)"
    if [ "$tfm_blas" = openblas ] && cmake --build "$BUILD" --target openblas_probe >/dev/null 2>&1; then
        gemm_backend="$gemm_backend: $("$BUILD/bench/openblas_probe")"
    fi
fi

# ---- the environment both sides run in ----------------------------------------------
omp_note="${OMP_NUM_THREADS:-(unset; run_train.sh sets it to $(nproc))}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

torch_version="(not importable)"
have_torch=1
if ! torch_err=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>&1); then
    have_torch=0
else
    torch_version="$torch_err ($PYTHON)"
fi

echo "== tfm vs PyTorch, one training step (forward + backward + clip + Adam), FP32"
echo "date:               $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:                $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
     "($(grep -o -m1 -w avx512f /proc/cpuinfo || echo no-avx512f))"
echo "cores:              $(nproc) (online)"
echo "load average:       $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"
echo "OMP_NUM_THREADS:    $omp_note"
echo "OPENBLAS_CORETYPE:  ${OPENBLAS_CORETYPE:-(unset)}"
echo "OPENBLAS_NUM_THREADS: ${OPENBLAS_NUM_THREADS:-(unset)}"
echo "tfm:                $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' (+ uncommitted changes)'), GEMM $gemm_backend"
echo "torch:              $torch_version"
echo "timing:             $timing"
if [ "$have_torch" = 0 ]; then
    echo "!! PyTorch is NOT importable with $PYTHON — tfm-only numbers below."
    echo "!! ($(printf '%s' "$torch_err" | tail -n1))"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/tfm.txt" "$tmp/torch.txt"

[ ${#cases[@]} -gt 0 ] || mapfile -t cases < <("$BENCH" --list)

# Run one side on one case; print its '#' header lines the first time only.
run_one() { # impl log command...
    local impl=$1 log=$2 rc
    shift 2
    echo "== $impl: ${*: -1}" >&2
    "$@" >"$tmp/out.txt"
    rc=$?
    if grep -q '^#' "$log"; then grep -v '^#' "$tmp/out.txt"; else cat "$tmp/out.txt"; fi | tee -a "$log"
    [ "$rc" -eq 0 ] || echo "run_train.sh: $impl FAILED on ${*: -1} (exit $rc)" >&2
    return "$rc"
}

# Idle CPU share (%) over the next half second, from /proc/stat (as bench/run.sh).
idle_pct() {
    local a b
    a=$(awk '/^cpu /{ print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu /{ print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; print (t > 0 ? int(100 * (y[1] - x[1]) / t) : 100) }'
}
busy=""

tfm_rc=0 torch_rc=0
for c in "${cases[@]}"; do
    idle=$(idle_pct)
    [ "$idle" -ge 75 ] || busy="$busy $c (idle $idle% before tfm)"
    run_one bench_train "$tmp/tfm.txt" "$BENCH" "${args[@]}" "${batch[@]}" --case "$c" || tfm_rc=1
    if [ "$have_torch" = 1 ]; then
        idle=$(idle_pct)
        [ "$idle" -ge 75 ] || busy="$busy $c (idle $idle% before torch)"
        run_one bench_train_torch.py "$tmp/torch.txt" "$PYTHON" bench/bench_train_torch.py \
            "${args[@]}" "${batch[@]}" --case "$c" || torch_rc=1
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
    function dflt(x, d) { return x != "" ? x : d }
    END {
        miss = have_torch ? "FAILED" : "n/a"
        fmt = "%-6s %6s %7s %13s %13s %12s %12s %9s\n"
        printf fmt, "case", "batch", "tokens", "tfm ms/step", "torch ms/step", "tfm tok/s",
               "torch tok/s", "tfm/torch"
        for (i = 1; i <= n; i++) {
            c = order[i]
            tm = get("tfm", c, "median_ms"); pm = get("torch", c, "median_ms")
            ratio = (tm != "" && pm != "" && tm > 0) ? sprintf("%.2fx", pm / tm) : "n/a"
            printf fmt, c, dflt(get("tfm", c, "batch"), get("torch", c, "batch")),
                   dflt(get("tfm", c, "tokens"), get("torch", c, "tokens")),
                   dflt(tm, "FAILED"), dflt(pm, miss), dflt(get("tfm", c, "tok_s"), "-"),
                   dflt(get("torch", c, "tok_s"), "-"), ratio
        }
        print "(median of whole steps; tokens = non-PAD target tokens per step; tfm/torch ="
        print " tfm tokens/s over torch tokens/s, > 1 means tfm is faster)"
        print ""
        fmt = "%-6s %12s %12s %12s %12s %12s %12s\n"
        printf fmt, "phases", "tfm fb ms", "tfm opt ms", "torch fb ms", "torch opt ms",
               "tfm GFLOP/s", "torch GFLOP/s"
        for (i = 1; i <= n; i++) {
            c = order[i]
            printf fmt, c, dflt(get("tfm", c, "fb_ms"), "-"), dflt(get("tfm", c, "opt_ms"), "-"),
                   dflt(get("torch", c, "fb_ms"), "-"), dflt(get("torch", c, "opt_ms"), "-"),
                   dflt(get("tfm", c, "gflops"), "-"), dflt(get("torch", c, "gflops"), "-")
        }
        print "(fb = zero grads + forward + backward, opt = clip_grad_norm + Adam, medians;"
        print " GFLOP/s from matrix-product FLOPs, 3 x forward, see bench/bench_train.c)"
    }' "$tmp/tfm.txt" "$tmp/torch.txt"

[ -z "$busy" ] || echo "WARNING: other processes were using the CPU before:$busy; those rows are unreliable"

if [ "$tfm_rc" -ne 0 ] || [ "$torch_rc" -ne 0 ]; then
    echo "run_train.sh: FAILED (bench_train exit $tfm_rc, bench_train_torch.py exit $torch_rc)" >&2
    exit 1
fi
