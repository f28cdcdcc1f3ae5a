#!/usr/bin/env bash
# Install the Debian packages tfm needs to build and test, if any are missing.
#   scripts/install_deps.sh          the build and the test suite
#   scripts/install_deps.sh --fuzz   only what the libFuzzer targets add (fuzz/run.sh):
#                                    clang and its runtime libraries (libFuzzer, ASan, UBSan,
#                                    which clang-14 merely recommends)
#   scripts/install_deps.sh --bench  only what the benchmarks add (bench/*.sh; CI does not
#                                    run them): Debian's PyTorch 1.13 (python3-torch, the
#                                    baseline of bench/run.sh), python3-numpy
#                                    (bench/make_mha_files.py), time (/usr/bin/time -v in
#                                    bench/long_memory.sh). PyTorch 2.x comes from pip.
set -euo pipefail
# libopenblas-openmp-dev: the OpenMP build of OpenBLAS shares tfm's thread pool.
pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libcjson-dev libcmocka-dev libpng-dev valgrind)
fuzz_pkgs=(clang libclang-rt-14-dev pkg-config libcjson-dev libpng-dev)
bench_pkgs=(python3-torch python3-numpy time)
case "${1:-}" in
  "") ;;
  --fuzz) pkgs=("${fuzz_pkgs[@]}") ;;
  --bench) pkgs=("${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [--fuzz | --bench]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
