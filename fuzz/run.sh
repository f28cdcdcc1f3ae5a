#!/usr/bin/env bash
# run.sh — build the libFuzzer targets (fuzz/build.sh) and run each for a bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]      default 60; targets run one after another
#
# Each target starts from its committed seeds, fuzz/corpus/<target>/ (read only), plus
# what earlier runs found in $FUZZ_BUILD/corpus/<target>/ (default build-fuzz/), where new
# inputs go. Limits: -max_total_time=SECONDS, -rss_limit_mb=2048, -timeout=10 (seconds per
# input). Prints each target's execution count. A crash, a leak, a sanitizer report, a
# timeout or an out-of-memory stops that target with the input saved as
# $FUZZ_BUILD/artifacts/<target>-crash-*; run.sh still runs the other targets, then exits 1.
# Reproduce with: $FUZZ_BUILD/<target> ARTIFACT. Turn it into a regression test by copying
# it under tests/fixtures/fuzz/<target>/ (tests/test_fuzz_regressions.c).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
case "$secs" in ''|*[!0-9]*) echo "usage: fuzz/run.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
out=${FUZZ_BUILD:-$PWD/build-fuzz}
export FUZZ_BUILD=$out

bash scripts/install_deps.sh --fuzz
bash fuzz/build.sh

mkdir -p "$out/artifacts" "$out/logs"
fail=0
summary=()
for src in fuzz/fuzz_*.c; do
    t=$(basename "$src" .c)
    mkdir -p "$out/corpus/$t"
    log="$out/logs/$t.log"
    echo "fuzz/run.sh: $t for ${secs}s"
    rc=0
    dict=() # fuzz/<target without fuzz_>.dict: tokens for libFuzzer's mutations
    [ -f "fuzz/${t#fuzz_}.dict" ] && dict=(-dict="fuzz/${t#fuzz_}.dict")
    # UBSan reports are fatal (the build also says -fno-sanitize-recover) with a stack
    # trace; leaks count as crashes.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$out/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="$out/artifacts/$t-" "$out/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ "$rc" -ne 0 ]; then
        fail=1
        summary+=("$t: FAILED (exit $rc) after ${execs:-?} executions; see $log")
        grep -E 'ERROR|SUMMARY|invariant broken|Test unit written' "$log" | head -8 || true
    else
        summary+=("$t: ${execs:-?} executions in ${secs}s, no crash")
    fi
done
printf 'fuzz/run.sh: %s\n' "${summary[@]}"
exit "$fail"
