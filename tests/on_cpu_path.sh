#!/bin/sh
# on_cpu_path.sh PATH CLI TEST [ARGS...] — run TEST with the SIMD kernels forced to PATH
# (TFM_CPU=avx512|avx2|generic). Exit 77 (ctest: skipped) when this CPU cannot run that
# path (the CLI refuses the setting) or when PATH is already the default, which the
# ordinary run of TEST covers.
path=$1 cli=$2
shift 2
TFM_CPU=$path "$cli" --help >/dev/null 2>&1 || { echo "CPU path $path: not supported here"; exit 77; }
default=$(env -u TFM_CPU "$cli" --version | sed -n 's/^simd: //p')
[ "$default" = "$path" ] && { echo "CPU path $path: the default, tested by the plain run"; exit 77; }
TFM_CPU=$path exec "$@"
