#!/usr/bin/env bash
# run_decode.sh — greedy decoding with tfm's seq2seq model beside PyTorch 1.13 and 2.x,
# in one run: build bench_decode, then case by case run it (tfm: KV-cached decoder, then
# the same decoder recomputing the prefix every step) and bench_decode_torch.py
# (PyTorch's usual nn.Transformer greedy loop) under PyTorch 1.13 and under PyTorch 2.x,
# back to back; print a comparison table. Rows measured while other processes used the
# CPU are flagged.
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
# Environment: BUILD (build directory, default build); TORCH1_PYTHON (PyTorch 1.13,
#   default /usr/bin/python3: Debian's python3-torch); PYTHON (PyTorch 2.x, default
#   python3; skipped if its torch is the same version); OMP_NUM_THREADS (default: all
#   cores, exported to every side); TFM_CPU (tfm's SIMD path); OPENBLAS_CORETYPE and
#   the like are passed through unchanged and reported.
#
# One decode: encode 8 sources of S = L tokens once, then L greedy steps (argmax; EOS
# ignored: exactly L tokens per row), timed whole; tok/s = 8 · L / median decode time.
# Each side first estimates a case's time from a probe (see bench/bench_decode.c); a case
# estimated above the budget is skipped with a note, one estimated above the
# single-decode threshold is timed once (marked * in the table).
# Exit status: non-zero if the build or any benchmark fails. A PyTorch that cannot be
# imported is said plainly and its columns read n/a (exit 0).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
bench_init run_decode.sh

args=(--min-time 2 --min-reps 3 --warmup 1 --budget 180 --single-above 10)
timing="1 warm-up decode, then >= 2 s and >= 3 decodes, median; one decode (*) when"
timing="$timing estimated > 10 s; skipped when estimated > 180 s"
budget=()
own_option() {
    case "$1" in
        --quick) args=(--min-time 0.3 --min-reps 1 --warmup 1 --budget 30 --single-above 5)
                 timing="1 warm-up decode, then >= 0.3 s and >= 1 decode, median; one decode (*)"
                 timing="$timing when estimated > 5 s; skipped when estimated > 30 s (quick)"
                 bench_used=1 ;;
        --budget) bench_need_value "$@"; budget=(--budget "$2") bench_used=2 ;;
    esac
}
bench_args own_option "$@"
[ ${#budget[@]} -eq 0 ] || timing="$timing; budget overridden: ${budget[1]} s"

bench_build bench_decode
BENCH="$BUILD/bench/bench_decode"

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
        [ "$found" = 1 ] || {
            echo "run_decode.sh: unknown case '$c' (cases: ${all_cases[*]}, or demo, base)" >&2
            exit 2
        }
    done
    cases=("${sel[@]}")
fi

bench_find_torch
bench_report "tfm vs PyTorch, greedy decoding, batch 8, source length S = L, forced length L, FP32" "$BENCH"
echo "models:             demo (E 64, H 4, 2+2 layers, F 256), base (E 512, H 8, 6+6, F 2048);" \
     "V 259, random init, max_len 520"
echo "timing:             $timing"

bench_run_cases bench_decode_torch.py "${args[@]}" "${budget[@]}"

# ---- table -----------------------------------------------------------------------------
bench_table '
    # tok/s as shown: the number, * for a single decode, or why there is none
    function cell(impl, c, miss) {
        if (get(impl, c, "impl") == "") return miss
        if (get(impl, c, "skipped") == 1) return sprintf("skip(~%.0fs)", get(impl, c, "est_s"))
        return sprintf("%.0f%s", get(impl, c, "tok_s"), get(impl, c, "reps") == 1 ? "*" : "")
    }
    function rate(impl, c) {
        return (get(impl, c, "impl") != "" && get(impl, c, "skipped") == 0) ? get(impl, c, "tok_s") : ""
    }
    function any3(impl_key) { # the first of the three tfm/torch lines that has the key
        return dflt(get("tfm-cached", c, impl_key), dflt(get("tfm-nocache", c, impl_key),
                    dflt(get("torch1", c, impl_key), get("torch2", c, impl_key))))
    }
    END {
        a = "t" dflt(t1, "1.13"); b = "t" dflt(t2, "2.x")
        fmt = "%-5s %4s %12s %13s %12s %12s %8s %8s %8s %6s\n"
        printf fmt, "model", "L", "tfm cached", "tfm no-cache", a, b, "cache", "cached/", "cached/", "same"
        printf fmt, "", "", "tok/s", "tok/s", "tok/s", "tok/s", "speed-up", a, b, "tokens"
        for (i = 1; i <= n; i++) {
            c = order[i]
            m = any3("model"); L = any3("L")
            ca = rate("tfm-cached", c); nc = rate("tfm-nocache", c)
            p1 = rate("torch1", c); p2 = rate("torch2", c)
            k1 = get("tfm-cached", c, "checksum"); k2 = get("tfm-nocache", c, "checksum")
            same = (k1 != "" && k2 != "") ? (k1 == k2 ? "yes" : "NO") : "-"
            printf fmt, m, L, cell("tfm-cached", c, "FAILED"), cell("tfm-nocache", c, "FAILED"),
                   cell("torch1", c, tcell(t1, "")), cell("torch2", c, tcell(t2, "")),
                   ratio(ca, nc), ratio(ca, p1), ratio(ca, p2), same
            if (L == 256) { tgt[++nt] = m; tsp[nt] = (ca != "" && nc != "") ? ca / nc : -1 }
        }
        print "(generated tokens per second over all 8 rows, whole decode: encode + L steps;"
        print " * = a single decode (estimated too slow to repeat), skip(~Ns) = estimated N s,"
        print " over the budget; cache speed-up = cached / no-cache; cached/tX > 1 means tfm is"
        print " faster than torch X; same tokens = cached and no-cache decoded the same ids)"
        for (j = 1; j <= nt; j++) {
            if (tsp[j] < 0) printf "target (cache >= 10x recomputation at L = 256), %s: not measured\n", tgt[j]
            else printf "target (cache >= 10x recomputation at L = 256), %s: %.1fx — %s\n", tgt[j], tsp[j],
                        (tsp[j] >= 10 ? "met" : "NOT met")
        }
    }'

bench_finish
