#!/usr/bin/env bash
# run.sh — build tfm and bench_tfm, run bench_tfm (C) and bench_torch.py (PyTorch) on
# the same cases in one go (case by case, tfm then PyTorch), print a comparison table;
# rows measured while other processes used the CPU are flagged.
#
# Usage: bash bench/run.sh [--quick] [--case NAME]...
#   --quick       short run: each case timed for >= 0.25 s and >= 3 forwards
#                 (default: >= 2 s and >= 5 forwards)
#   --case NAME   only this case (repeatable): transformer mha encoder6 mha_long
# Environment: BUILD (build directory, default build), PYTHON (default python3),
#   OMP_NUM_THREADS (default: all cores, exported to both sides), OPENBLAS_CORETYPE
#   and the like are passed through unchanged and reported.
#
# Exit status: non-zero if the build or either benchmark fails. If PyTorch cannot be
# imported, that is said plainly and the table holds tfm's numbers only (exit 0).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-python3}

min_time=2 min_reps=5
cases=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) min_time=0.25 min_reps=3 ;;
        --case) [ $# -ge 2 ] || { echo "run.sh: --case needs a name" >&2; exit 2; }
                cases+=(--case "$2"); shift ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# ---- build: the library (as `make build` does), then bench_tfm against it ----------
echo "== building tfm ($BUILD)" >&2
{ cmake -S . -B "$BUILD" >/dev/null && cmake --build "$BUILD" -j2 >/dev/null; } || {
    echo "run.sh: building tfm failed (run: cmake -S . -B $BUILD && cmake --build $BUILD)" >&2
    exit 1
}

# bench_tfm and the OpenBLAS probe are CMake targets (bench/CMakeLists.txt), linked
# exactly as the library is.
cmake --build "$BUILD" -j2 --target bench_tfm >/dev/null || {
    echo "run.sh: building bench_tfm failed" >&2
    exit 1
}
# tfm's GEMM backend: the CBLAS of the CMake configuration (TFM_BLAS); for OpenBLAS
# also its threading and the kernel family it picks at run time (OPENBLAS_CORETYPE
# overrides the latter).
tfm_blas=$(sed -n 's/^TFM_BLAS:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
gemm_backend="portable C fallback (TFM_BLAS=none)"
if [ "$tfm_blas" != none ]; then
    gemm_backend="CBLAS ($tfm_blas)"
    if [ "$tfm_blas" = openblas ] && cmake --build "$BUILD" --target openblas_probe >/dev/null 2>&1; then
        gemm_backend="$gemm_backend: $("$BUILD/bench/openblas_probe")"
    fi
fi

# ---- the environment both sides run in ----------------------------------------------
omp_note="${OMP_NUM_THREADS:-(unset; run.sh sets it to $(nproc))}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

echo "== tfm vs PyTorch, forward pass (eval), FP32"
echo "date:               $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:                $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
     "($(grep -o -m1 -w avx512f /proc/cpuinfo || echo no-avx512f))"
echo "cores:              $(nproc) (online), $(grep -c '^processor' /proc/cpuinfo) (in /proc/cpuinfo)"
echo "load average:       $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"
echo "OMP_NUM_THREADS:    $omp_note"
echo "OPENBLAS_CORETYPE:  ${OPENBLAS_CORETYPE:-(unset)}"
echo "OPENBLAS_NUM_THREADS: ${OPENBLAS_NUM_THREADS:-(unset)}"
echo "tfm:                $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' (+ uncommitted changes)'), GEMM $gemm_backend"
echo "timing:             warm-up, then >= $min_time s and >= $min_reps forwards; median"

# ---- run both, case by case ---------------------------------------------------------
# For each case bench_tfm runs, then bench_torch.py, back to back, so that the two
# numbers of a row see the same machine conditions (a shared machine drifts).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/tfm.txt" "$tmp/torch.txt"

torch_rc=0 have_torch=1
if ! torch_err=$("$PYTHON" -c 'import torch' 2>&1); then
    have_torch=0
    echo "!! PyTorch is NOT importable with $PYTHON — tfm-only numbers below."
    echo "!! ($(printf '%s' "$torch_err" | tail -n1))"
fi

# The cases: those given with --case, else all that bench_tfm knows.
if [ ${#cases[@]} -eq 0 ]; then
    mapfile -t names < <("$BUILD/bench/bench_tfm" --list)
else
    names=()
    for ((i = 1; i < ${#cases[@]}; i += 2)); do names+=("${cases[i]}"); done
fi

# Run one side on one case; print its '#' header lines the first time only.
run_one() { # impl log command...
    local impl=$1 log=$2 rc
    shift 2
    echo "== $impl: ${*: -1}" >&2
    "$@" >"$tmp/out.txt"
    rc=$?
    if grep -q '^#' "$log"; then grep -v '^#' "$tmp/out.txt"; else cat "$tmp/out.txt"; fi | tee -a "$log"
    [ "$rc" -eq 0 ] || echo "run.sh: $impl FAILED on ${*: -1} (exit $rc)" >&2
    return "$rc"
}

# Idle CPU share (%) over the next half second, from /proc/stat ("cpu" line: user nice
# system idle iowait irq softirq steal). Another process busy on a 2-core machine
# disturbs OpenMP code badly (threads wait for a descheduled peer), so it is reported.
idle_pct() {
    local a b
    a=$(awk '/^cpu /{ print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu /{ print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; print (t > 0 ? int(100 * (y[1] - x[1]) / t) : 100) }'
}
busy=""

tfm_rc=0
for c in "${names[@]}"; do
    idle=$(idle_pct)
    [ "$idle" -ge 75 ] || busy="$busy $c (idle $idle%)"
    run_one bench_tfm "$tmp/tfm.txt" "$BUILD/bench/bench_tfm" --min-time "$min_time" \
        --min-reps "$min_reps" --case "$c" || tfm_rc=1
    if [ "$have_torch" = 1 ]; then
        run_one bench_torch.py "$tmp/torch.txt" "$PYTHON" bench/bench_torch.py \
            --min-time "$min_time" --min-reps "$min_reps" --case "$c" || torch_rc=1
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
    END {
        fmt = "%-12s %12s %12s %9s %12s %12s\n"
        printf fmt, "case", "tfm ms", "torch ms", "torch/tfm", "tfm GFLOP/s", "torch GFLOP/s"
        for (i = 1; i <= n; i++) {
            c = order[i]
            tm = get("tfm", c, "median_ms"); pm = get("torch", c, "median_ms")
            ratio = (tm != "" && pm != "" && tm > 0) ? sprintf("%.2fx", pm / tm) : "n/a"
            printf fmt, c, (tm != "" ? tm : "FAILED"),
                   (pm != "" ? pm : (have_torch ? "FAILED" : "n/a")), ratio,
                   (tm != "" ? get("tfm", c, "gflops") : "-"),
                   (pm != "" ? get("torch", c, "gflops") : "-")
        }
        print "(median ms per forward; torch/tfm > 1 means tfm is faster; GFLOP/s from matrix-product FLOPs, see bench/bench_tfm.c)"
    }' "$tmp/tfm.txt" "$tmp/torch.txt"

[ -z "$busy" ] || echo "WARNING: other processes were using the CPU before:$busy; those rows are unreliable"

if [ "$tfm_rc" -ne 0 ] || [ "$torch_rc" -ne 0 ]; then
    echo "run.sh: FAILED (bench_tfm exit $tfm_rc, bench_torch.py exit $torch_rc)" >&2
    exit 1
fi
