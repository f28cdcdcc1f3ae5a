#!/usr/bin/env bash
# build.sh — build the libFuzzer targets fuzz/fuzz_*.c with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, in their own directory (default build-fuzz/, or $FUZZ_BUILD),
# so the normal gcc/CMake build is never touched.
#
# The library's sources are compiled directly, portable: no BLAS (the C GEMM, which the
# sanitizers can see into) and no OpenMP (one thread, reproducible executions).
# Objects are rebuilt when their source, any header or this script is newer.
#
# Usage: fuzz/build.sh            → $FUZZ_BUILD/fuzz_safetensors, fuzz_forward_input, fuzz_tsv
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${FUZZ_BUILD:-$root/build-fuzz}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz/build.sh: $CC not found (scripts/install_deps.sh --fuzz)" >&2; exit 1; }

san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-std=c11 -O1 -g $san -D_POSIX_C_SOURCE=200809L -I$root/include -I$root/src
        -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas $(pkg-config --cflags libcjson libpng)"
libs="$(pkg-config --libs libcjson libpng) -lm"

mkdir -p "$out/obj"
newest_dep=$(find "$root/src" "$root/include" -name '*.h' -newer "$out/obj" -print -quit 2>/dev/null || true)
stamp="$out/obj/.flags"
if [ -n "$newest_dep" ] || [ "$0" -nt "$stamp" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$CC $cflags" ]; then
    rm -f "$out"/obj/*.o # a header or the flags changed: everything again
fi
echo "$CC $cflags" >"$stamp"
touch "$out/obj"

# Library objects (compiled with fuzzer coverage, not the fuzzer's main), two at a time.
export CC cflags out
find "$root/src" -name '*.c' | sort | xargs -P "$(nproc 2>/dev/null || echo 2)" -I{} sh -c '
    src={}; obj="$out/obj/$(echo "${src#'"$root"'/src/}" | tr / _ | sed "s/\.c$/.o/")"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ]; then
        $CC $cflags -fsanitize=fuzzer-no-link -c "$src" -o "$obj" || exit 255
    fi'

for t in "$root"/fuzz/fuzz_*.c; do
    name=$(basename "$t" .c)
    $CC $cflags -fsanitize=fuzzer "$t" "$out"/obj/*.o $libs -o "$out/$name"
    echo "fuzz/build.sh: built $out/$name"
done
