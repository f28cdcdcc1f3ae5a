#!/usr/bin/env bash
# long_memory.sh — the memory check of long self-attention through the CLI: build
# `tfm`, write an nn.MultiheadAttention model (E 512, H 8, random weights) and a batch-1
# input with query = key = value (bench/make_mha_files.py: numpy only, no torch), run
# `tfm forward` under /usr/bin/time -v and print its peak RSS and wall time; then the
# same with --grad-output (forward + backward) at a shorter length. Each run passes if
# it succeeds with a peak RSS under the limit.
#
# Usage: bash bench/long_memory.sh [--len L] [--grad-len L] [--batch-first]
#                                  [--limit-gib G] [--quick]
#   --len L         forward length (default 65536)
#   --grad-len L    forward + backward length (default 16384; 0: skip)
#   --batch-first   model and tensors batch_first (default: PyTorch's (L, N, E))
#   --limit-gib G   the peak-RSS limit (default 2)
#   --quick         --len 2048 --grad-len 1024 (checks the script, not the memory)
# Environment: BUILD (build directory, default build); PYTHON (a python3 with numpy,
#   default python3, else /usr/bin/python3); OMP_NUM_THREADS (default: all cores);
#   TFM_CPU (tfm's SIMD path); TMPDIR (where the files go: about 4·L·E·4 bytes for the
#   input and output, 1.5 GB at L 65536; removed at the end).
# Needs /usr/bin/time (Debian package time): when it is missing, the script runs
# scripts/install_deps.sh --bench, which installs it with the other benchmark packages.
#
# A run started while other processes used the CPU is flagged (its wall time suffers,
# its peak RSS does not). Peak RSS counts everything the process touched: the
# memory-mapped input file, the copies of the inputs, the module's workspace and the
# output buffers.
# Exit status: 0 if every run passed, 1 otherwise.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
bench_init long_memory.sh

len=65536 grad_len=16384 limit_gib=2 batch_first=()
while [ $# -gt 0 ]; do
    case "$1" in
        --len) bench_need_value "$@"; len=$2; shift ;;
        --grad-len) bench_need_value "$@"; grad_len=$2; shift ;;
        --limit-gib) bench_need_value "$@"; limit_gib=$2; shift ;;
        --batch-first) batch_first=(--batch-first) ;;
        --quick) len=2048 grad_len=1024 ;;
        -h|--help) bench_help; exit 0 ;;
        *) echo "long_memory.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# /usr/bin/time (and numpy, for Debian's python3) come with the benchmark packages
if [ ! -x /usr/bin/time ]; then
    echo "== /usr/bin/time is missing: bash scripts/install_deps.sh --bench" >&2
    bash scripts/install_deps.sh --bench || exit 1
fi
# a python3 with numpy: PYTHON if it has it, else Debian's
py=""
for p in "$PYTHON" /usr/bin/python3; do
    if "$p" -c 'import numpy' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || {
    echo "long_memory.sh: no python3 with numpy ($PYTHON, /usr/bin/python3);" \
         "install it: bash scripts/install_deps.sh --bench" >&2
    exit 1
}

# bench_tfm only reports the SIMD path the library picks (the CLI takes the same)
bench_build tfm_cli bench_tfm
bench_report "tfm forward / backward memory: MultiheadAttention E 512, H 8, batch 1, self-attention" \
    "$BUILD/bench/bench_tfm"
limit_kib=$(awk -v g="$limit_gib" 'BEGIN { printf "%d", g * 1024 * 1024 }')
bf=false
[ ${#batch_first[@]} -eq 0 ] || bf=true
echo "limit:              peak RSS < $limit_gib GiB (each run); batch_first $bf"
echo "files:              $tmp (made with $py + numpy)"

# mem_run LABEL L [--grad]: write the files for length L (and the output gradient with
# --grad), run tfm forward on them (with --grad-output) under /usr/bin/time -v, check
# the output, print one result line; 1 if it failed.
mem_run() {
    local label=$1 L=$2 grad=() gopt=() rc rss wall status=PASS
    if [ "${3:-}" = --grad ]; then grad=(--grad) gopt=(--grad-output "$tmp/grad.safetensors"); fi
    rm -f "$tmp"/*.safetensors
    echo "== $label, L $L: writing the files" >&2
    "$py" bench/make_mha_files.py --dir "$tmp" --len "$L" "${batch_first[@]}" "${grad[@]}" ||
        { echo "$label L=$L: FAIL (could not write the files)"; return 1; }
    # wall time suffers on a busy machine (peak RSS does not): flagged as in the benchmarks
    local idle
    idle=$(bench_idle_pct)
    [ "$idle" -ge "$(bench_need_idle 75)" ] || bench_busy="$bench_busy $label (idle $idle%)"
    echo "== $label, L $L: tfm forward${gopt[*]:+ ${gopt[*]}}" >&2
    /usr/bin/time -v -o "$tmp/time.txt" "$BUILD/tfm" forward --model "$tmp/model.safetensors" \
        --input "$tmp/input.safetensors" --output "$tmp/out.safetensors" "${gopt[@]}"
    rc=$?
    rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tmp/time.txt")
    # "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34" -> seconds
    wall=$(sed -n 's/^[[:space:]]*Elapsed (wall clock) time.*: //p' "$tmp/time.txt" |
           awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f", s }')
    [ "$rc" -eq 0 ] && [ -n "$rss" ] && [ "$rss" -lt "$limit_kib" ] || status=FAIL
    # the output must be there, of the input's shape, and finite
    if [ "$rc" -eq 0 ] && ! "$py" bench/make_mha_files.py --dir "$tmp" --check "$tmp/out.safetensors" \
        "${grad[@]}" >&2; then
        status=FAIL
    fi
    printf '%-20s L=%-6s peak RSS %8.1f MiB  wall %7s s  exit %d  %s (limit %s GiB)\n' "$label" "$L" \
        "$(awk -v k="${rss:-0}" 'BEGIN { print k / 1024 }')" "$wall" "$rc" "$status" "$limit_gib"
    [ "$status" = PASS ]
}

echo
fails=0
mem_run forward "$len" || fails=1
if [ "$grad_len" -gt 0 ]; then
    mem_run forward+backward "$grad_len" --grad || fails=1
fi
bench_finish # the busy-CPU warning
[ "$fails" = 0 ] && echo "long_memory.sh: PASS" || { echo "long_memory.sh: FAIL"; exit 1; }
