#!/usr/bin/env bash
# run_train.sh — one training step of tfm's seq2seq Transformer beside the same model in
# PyTorch 1.13 and 2.x, in one run: build bench_train, then case by case run bench_train
# (C), bench_train_torch.py under PyTorch 1.13 and under PyTorch 2.x back to back, and
# print a table with both ratios; then the bf16 step: tfm's compute type bf16
# (bench_train --compute-type bf16: bf16 products, FP32 master weights and Adam) beside
# PyTorch 2.x's autocast bf16 step (forward under torch.autocast, FP32 master weights),
# measured right after the case's FP32 sides; then what PyTorch ran
# (bench_train_torch.py --kernels). Rows measured while other processes used the CPU are
# flagged.
#
# Usage: bash bench/run_train.sh [--quick] [--case NAME]... [--batch N]
#                                [--compute-type f32|bf16|both] [--wait-idle SEC]
#   --quick       short run: >= 0.5 s and >= 2 steps after 1 warm-up step
#                 (default: >= 2 s and >= 5 steps after 2 warm-up steps)
#   --case NAME   only this case (repeatable): demo base
#   --batch N     override every case's batch size (every side)
#   --compute-type f32|bf16|both  which tables (default both): f32 the FP32 tables only;
#                 bf16 the bf16 table only (tfm FP32 still runs for its ratio)
#   --wait-idle SEC  before each side, wait up to SEC s for the cores to be idle
# Environment: BUILD (build directory, default build); TORCH1_PYTHON (PyTorch 1.13,
#   default /usr/bin/python3: Debian's python3-torch); PYTHON (PyTorch 2.x, default
#   python3; skipped if its torch is the same version); OMP_NUM_THREADS (default: all
#   cores, exported to every side); TFM_CPU (tfm's SIMD path); OPENBLAS_CORETYPE and
#   the like are passed through unchanged and reported.
#
# One step = zero grads, forward, backward (label smoothing 0.1, dropout 0.1), gradient
# clipping to norm 1.0, Adam(0.9, 0.98, eps 1e-9). See bench/bench_train.c. The bf16
# step runs under PyTorch 2.x (the newest build found) only.
# Exit status: non-zero if the build or any benchmark fails. A PyTorch that cannot be
# imported is said plainly and its columns read n/a (exit 0).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
bench_init run_train.sh

args=(--min-time 2 --min-reps 5 --warmup 2)
timing="2 warm-up steps, then >= 2 s and >= 5 steps; median"
batch=() compute=both torch_extra=(--kernels)
own_option() {
    case "$1" in
        --compute-type) bench_need_value "$@"; bench_set_compute "$2"; bench_used=2 ;;
        --quick) args=(--min-time 0.5 --min-reps 2 --warmup 1) bench_used=1
                 timing="1 warm-up step, then >= 0.5 s and >= 2 steps; median (quick)" ;;
        --batch) bench_need_value "$@"; batch=(--batch "$2") bench_used=2 ;;
    esac
}
bench_args own_option "$@"

bench_build bench_train
BENCH="$BUILD/bench/bench_train"
[ ${#cases[@]} -gt 0 ] || mapfile -t cases < <("$BENCH" --list)
bench_find_torch
bench_report "tfm vs PyTorch, one training step (forward + backward + clip + Adam), compute types: $compute" "$BENCH"
echo "timing:             $timing"

bench_run_cases bench_train_torch.py "${args[@]}" "${batch[@]}"

# ---- tables ----------------------------------------------------------------------------
[ "$compute" = bf16 ] || bench_table '
    END {
        fmt = "%-6s %6s %7s %11s %11s %9s %11s %9s %10s\n"
        printf fmt, "case", "batch", "tokens", "tfm ms", "t" dflt(t1, "1.13") " ms",
               dflt(t1, "1.13") "/tfm", "t" dflt(t2, "2.x") " ms", dflt(t2, "2.x") "/tfm", "tfm tok/s"
        for (i = 1; i <= n; i++) {
            c = order[i]
            tm = get("tfm", c, "median_ms"); m1 = get("torch1", c, "median_ms")
            m2 = get("torch2", c, "median_ms")
            printf fmt, c, dflt(get("tfm", c, "batch"), get("torch2", c, "batch")),
                   dflt(get("tfm", c, "tokens"), get("torch2", c, "tokens")), dflt(tm, "FAILED"),
                   tcell(t1, m1), ratio(m1, tm), tcell(t2, m2), ratio(m2, tm),
                   dflt(get("tfm", c, "tok_s"), "-")
        }
        print "(median ms per whole step; tokens = non-PAD target tokens per step; X/tfm = torch X"
        print " step time over tfm step time = tfm tokens/s over torch X tokens/s, > 1 means tfm is faster)"
        print ""
        fmt = "%-6s %9s %8s %9s %9s %9s %9s %9s %10s %10s\n"
        a = "t" dflt(t1, "1.13"); b = "t" dflt(t2, "2.x")
        printf fmt, "phases", "tfm fb", "tfm opt", a " fb", a " opt", b " fb", b " opt",
               "tfm GF/s", a " GF/s", b " GF/s"
        for (i = 1; i <= n; i++) {
            c = order[i]
            printf fmt, c, dflt(get("tfm", c, "fb_ms"), "-"), dflt(get("tfm", c, "opt_ms"), "-"),
                   dflt(get("torch1", c, "fb_ms"), "-"), dflt(get("torch1", c, "opt_ms"), "-"),
                   dflt(get("torch2", c, "fb_ms"), "-"), dflt(get("torch2", c, "opt_ms"), "-"),
                   dflt(get("tfm", c, "gflops"), "-"), dflt(get("torch1", c, "gflops"), "-"),
                   dflt(get("torch2", c, "gflops"), "-")
        }
        print "(ms, medians: fb = zero grads + forward + backward, opt = clip_grad_norm + Adam;"
        print " GF/s = GFLOP/s from matrix-product FLOPs, 3 x forward, see bench/bench_train.c)"
    }'

# bf16: tfm's compute type bf16 beside its FP32 step and PyTorch 2.x's autocast step (tn:
# the newest PyTorch, the one bench_run_case measured it with)
[ "$compute" = f32 ] || bench_table '
    END {
        fmt = "%-9s %6s %10s %10s %8s %10s %8s %12s %10s %11s\n"
        T = "t" dflt(tn, "2.x")
        printf fmt, "bf16 case", "batch", "tfm f32", "tfm bf16", "f32/bf16", T " ac", "ac/tfm",
               T " f32/ac", "bf16 fb", "bf16 tok/s"
        for (i = 1; i <= n; i++) {
            c = order[i]
            tf = get("tfm", c, "median_ms"); tb = get("tfm_bf16", c, "median_ms")
            ac = get("torch_autocast-bf16", c, "median_ms"); pf = get(tnimpl, c, "median_ms")
            printf fmt, c, dflt(get("tfm_bf16", c, "batch"), get("tfm", c, "batch")), dflt(tf, "FAILED"),
                   dflt(tb, "FAILED"), ratio(tf, tb), tcell(tn, ac), ratio(ac, tb), ratio(pf, ac),
                   dflt(get("tfm_bf16", c, "fb_ms"), "-"), dflt(get("tfm_bf16", c, "tok_s"), "-")
        }
        print "(median ms per whole step; f32/bf16 = tfm FP32 step time over tfm bf16 step time, > 1"
        print " means bf16 is faster; ac = PyTorch autocast bf16 forward + backward, FP32 master weights"
        print " and Adam; ac/tfm = its step time over tfm bf16 step time, > 1 means tfm is faster;"
        print " f32/ac = PyTorch'"'"'s own FP32 step time over its autocast step time; bf16 fb = tfm bf16"
        print " zero grads + forward + backward, ms; tfm bf16 path: " bf16path ")"
    }' tn="$torch_new_label" tnimpl="$torch_new" \
    bf16path="$("$BENCH" --info | sed -n 's/.* bf16_path=\([^ ]*\).*/\1/p')"

bench_kernels "PyTorch kernels (one untimed forward + backward per side, bench_train_torch.py --kernels: ops by self CPU time; oneDNN primitives; MKL calls):"

bench_finish
