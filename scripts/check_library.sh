#!/usr/bin/env bash
# check_library.sh — library discipline: nothing under src/ may end the process or print.
# The library returns a tfm_status; only tools/ and tests/ exit or write to the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
# Calls, not mentions in comments: strip // and /* */ comment text first (line-wise).
hits=$(grep -rnE '\b(exit|_exit|_Exit|abort|quick_exit|assert)[[:space:]]*\(' src --include='*.c' --include='*.h' \
       | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/?\*|//)' || true)
if [ -n "$hits" ]; then
    echo "check_library: src/ must not call exit/abort/assert (return a tfm_status):"
    echo "$hits"
    fail=1
fi
hits=$(grep -rnE '\b(printf|puts|perror)[[:space:]]*\(|\bf(printf|puts)[[:space:]]*\([[:space:]]*std(out|err)' src \
       --include='*.c' | grep -vE 'snprintf|vsnprintf' | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/?\*|//)' || true)
if [ -n "$hits" ]; then
    echo "check_library: src/ must not print (set a message with tfm_error):"
    echo "$hits"
    fail=1
fi
[ "$fail" -eq 0 ] && echo "check_library: no exit/abort/assert/printing under src/"
exit "$fail"
