#!/usr/bin/env bash
# run.sh — tfm's forward pass beside PyTorch 1.13 and 2.x, in one run: build bench_tfm
# and peak_fma, measure the machine's FP32 peak, then case by case run bench_tfm (C),
# bench_torch.py under PyTorch 1.13 and under PyTorch 2.x back to back, and print one
# table with both ratios and tfm's share of the peak; then the bf16 table: tfm's compute
# type bf16 (bench_tfm --compute-type bf16) beside PyTorch 2.x's autocast bf16 (FP32
# weights) and bf16 weights (module.to(bfloat16)), measured right after the case's FP32
# sides; then what PyTorch ran (bench_torch.py --kernels: top ops, oneDNN primitives,
# MKL calls, from one untimed call per side). Rows measured while other processes used
# the CPU are flagged.
#
# Usage: bash bench/run.sh [--quick] [--case NAME]... [--compute-type f32|bf16|both]
#                          [--threads-scaling] [--wait-idle SEC]
#   --quick       short run: each case timed for >= 0.25 s and >= 3 forwards, peak best
#                 of 3 (default: >= 2 s and >= 5 forwards, peak best of 10)
#   --case NAME   only this case (repeatable): transformer mha encoder6 mha_long
#                 bert384 bert768 (BERT-style gelu encoders, see bench/bench_tfm.c)
#   --compute-type f32|bf16|both  which tables (default both): f32 the FP32 table only
#                 (as before bf16); bf16 the bf16 table only (tfm FP32 still runs for
#                 its bf16/FP32 ratio, PyTorch FP32 does not)
#   --threads-scaling  also run tfm's encoder6 with OMP_NUM_THREADS=1 and print the
#                 speed-up of OMP_NUM_THREADS threads over one (adds encoder6 to the
#                 cases; done anyway whenever encoder6 runs on more than one thread)
#   --wait-idle SEC  before each side, wait up to SEC s for the cores to be idle
# Environment: BUILD (build directory, default build); TORCH1_PYTHON (PyTorch 1.13,
#   default /usr/bin/python3: Debian's python3-torch); PYTHON (PyTorch 2.x, default
#   python3; skipped if its torch is the same version); OMP_NUM_THREADS (default: all
#   cores, exported to every side); TFM_CPU (tfm's SIMD path); OPENBLAS_CORETYPE and
#   the like are passed through unchanged and reported.
#
# The bf16 modes run under PyTorch 2.x (the newest build found) only.
# Exit status: non-zero if the build or any benchmark fails. A PyTorch that cannot be
# imported is said plainly and its columns read n/a (exit 0).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
bench_init run.sh

timing=(--min-time 2 --min-reps 5) peak_reps=10 scaling=0 compute=both
bf16_modes=(autocast-bf16 bf16-weights) torch_extra=(--kernels)
own_option() {
    case "$1" in
        --quick) timing=(--min-time 0.25 --min-reps 3) peak_reps=3 bench_used=1 ;;
        --threads-scaling) scaling=1 bench_used=1 ;;
        --compute-type) bench_need_value "$@"; bench_set_compute "$2"; bench_used=2 ;;
    esac
}
bench_args own_option "$@"

bench_build bench_tfm
BENCH="$BUILD/bench/bench_tfm"
[ ${#cases[@]} -gt 0 ] || mapfile -t cases < <("$BENCH" --list)
# encoder6 on one thread too: always when encoder6 runs on several threads; when asked,
# encoder6 is added to the cases
if printf '%s\n' "${cases[@]}" | grep -qx encoder6; then
    [ "$OMP_NUM_THREADS" -le 1 ] 2>/dev/null || scaling=1
elif [ "$scaling" = 1 ]; then
    cases+=(encoder6)
fi
bench_find_torch
bench_report "tfm vs PyTorch, forward pass (eval), compute types: $compute (f32 = FP32)" "$BENCH"
echo "timing:             warm-up, then >= ${timing[1]} s and >= ${timing[3]} forwards; median"

# ---- the FP32 peak: FMA chains on OMP_NUM_THREADS threads (bench/peak_fma.c) ---------
# Measured before and after the cases, the best taken: a busy machine lowers it.
have_peak=0
cmake --build "$BUILD" --target peak_fma >/dev/null 2>&1 && have_peak=1
measure_peak() {
    [ "$have_peak" = 1 ] || return 0
    local idle
    idle=$(bench_idle_pct)
    [ "$idle" -ge "$(bench_need_idle 75)" ] || bench_busy="$bench_busy peak_fma (idle $idle%)"
    echo "== peak_fma" >&2
    "$BUILD/bench/peak_fma" --reps "$peak_reps" --threads "$OMP_NUM_THREADS" >>"$tmp/peak.out" ||
        bench_failed="$bench_failed peak_fma"
}
# peak_gflops THREADS: the best PEAK line of that many threads so far ("" if none)
peak_gflops() {
    awk -v t="threads=$1" '$1 == "PEAK" && $2 == t { sub("gflops=", "", $4); if ($4 + 0 > g + 0) g = $4 }
        END { if (g != "") print g }' "$tmp/peak.out" 2>/dev/null
}
# best_peak: peak and peak_threads, the best on all threads so far (a build without
# OpenMP runs one thread, and peak_fma too)
best_peak() {
    peak_threads=$OMP_NUM_THREADS
    peak=$(peak_gflops "$peak_threads")
    [ -n "$peak" ] || { peak_threads=1; peak=$(peak_gflops 1); }
}
measure_peak
best_peak
if [ "$have_peak" = 1 ]; then
    echo "FP32 peak:          $peak GFLOP/s on $peak_threads thread(s), $(peak_gflops 1) on 1" \
         "(bench/peak_fma.c, $(sed -n 's/^# peak_fma isa=\([^ ]*\).*/\1/p' "$tmp/peak.out" | head -n1)," \
         "best of $peak_reps; measured again after the cases)"
else
    echo "FP32 peak:          not measured (bench/peak_fma.c: x86-64 only)"
fi

# ---- run every side, case by case ----------------------------------------------------
# Back to back, so that the numbers of a row see the same machine conditions (a shared
# machine drifts): bench_run_case (lib.sh) runs the FP32 and the bf16 sides.
for c in "${cases[@]}"; do
    bench_run_case bench_torch.py "$c" "${timing[@]}"
    if [ "$c" = encoder6 ] && [ "$scaling" = 1 ]; then
        OMP_NUM_THREADS=1 bench_side tfm1 "$BENCH" --impl tfm1 "${timing[@]}" --case "$c"
    fi
done

measure_peak
best_peak

# ---- tables ----------------------------------------------------------------------------
[ "$compute" = bf16 ] || bench_table '
    END {
        fmt = "%-12s %10s %10s %9s %10s %9s %12s %7s\n"
        printf fmt, "case", "tfm ms", "t" dflt(t1, "1.13") " ms", dflt(t1, "1.13") "/tfm",
               "t" dflt(t2, "2.x") " ms", dflt(t2, "2.x") "/tfm", "tfm GFLOP/s", "% peak"
        for (i = 1; i <= n; i++) {
            c = order[i]
            tm = get("tfm", c, "median_ms"); m1 = get("torch1", c, "median_ms")
            m2 = get("torch2", c, "median_ms"); g = get("tfm", c, "gflops")
            pct = (g != "" && peak > 0) ? 100 * g / peak : -1
            if (pct > 100) over = 1
            printf fmt, c, dflt(tm, "FAILED"), tcell(t1, m1), ratio(m1, tm), tcell(t2, m2),
                   ratio(m2, tm), dflt(g, "-"), (pct >= 0 ? sprintf("%.1f", pct) : "-")
        }
        print "(median ms per forward; X/tfm = torch X time over tfm time, > 1 means tfm is faster;"
        print " GFLOP/s from matrix-product FLOPs, see bench/bench_tfm.c; % peak: of the FP32 peak"
        printf " on %d thread(s), the best of before and after the cases: %s GFLOP/s)\n", peak_threads,
               dflt(peak, "n/a (peak_fma: x86-64 only)")
        if (over) print "WARNING: a case beat the measured peak: the peak was measured on a busy CPU"
        t1ms = get("tfm1", "encoder6", "median_ms"); tnms = get("tfm", "encoder6", "median_ms")
        if (t1ms != "")
            printf "threads scaling, tfm encoder6: %s ms on 1 thread, %s ms on %d: speed-up %s (ideal %dx)\n",
                   t1ms, dflt(tnms, "FAILED"), threads, ratio(t1ms, tnms), threads
    }' peak="$peak" peak_threads="$peak_threads" threads="$OMP_NUM_THREADS"

# bf16: tfm's compute type bf16 beside its FP32 and PyTorch 2.x's two bf16 modes (tn: the
# newest PyTorch, the one bench_run_case measured them with)
[ "$compute" = f32 ] || bench_table '
    END {
        fmt = "%-12s %9s %9s %8s %10s %8s %11s %9s %12s\n"
        T = "t" dflt(tn, "2.x")
        printf fmt, "bf16 case", "tfm f32", "tfm bf16", "f32/bf16", T " ac", "ac/tfm", T " bf16w",
               "bf16w/tfm", T " f32/ac"
        for (i = 1; i <= n; i++) {
            c = order[i]
            tf = get("tfm", c, "median_ms"); tb = get("tfm_bf16", c, "median_ms")
            ac = get("torch_autocast-bf16", c, "median_ms"); bw = get("torch_bf16-weights", c, "median_ms")
            pf = get(tnimpl, c, "median_ms")
            printf fmt, c, dflt(tf, "FAILED"), dflt(tb, "FAILED"), ratio(tf, tb), tcell(tn, ac),
                   ratio(ac, tb), tcell(tn, bw), ratio(bw, tb), ratio(pf, ac)
        }
        print "(median ms per forward; f32/bf16 = tfm FP32 time over tfm bf16 time, > 1 means bf16 is"
        print " faster; ac = PyTorch autocast bf16 (FP32 weights), bf16w = bf16 weights and inputs;"
        print " X/tfm = PyTorch X time over tfm bf16 time, > 1 means tfm is faster; f32/ac = PyTorch'"'"'s"
        print " own FP32 time over its autocast time; tfm bf16 path: " bf16path ")"
    }' tn="$torch_new_label" tnimpl="$torch_new" \
    bf16path="$("$BENCH" --info | sed -n 's/.* bf16_path=\([^ ]*\).*/\1/p')"

bench_kernels "PyTorch kernels (one untimed call per side, bench_torch.py --kernels: ops by self CPU time; oneDNN primitives; MKL calls):"

bench_finish
