# lib.sh — what bench/run.sh, run_train.sh, run_decode.sh and long_memory.sh share:
# options, the build, the PyTorch builds to compare with, the report header, running one
# side of a case with a check that the CPU was free, and the table's BENCH-line reader.
# Sourced (not run) after `set -uo pipefail`; its functions' names start with bench_;
# the globals they set are listed at bench_init and bench_find_torch.

# bench_init NAME: cd to the repository root and set the globals:
#   BUILD (build directory, default build), PYTHON (PyTorch 2.x, default python3),
#   TORCH1_PYTHON (PyTorch 1.13, default /usr/bin/python3: Debian's python3-torch),
#   ncpu (online cores), OMP_NUM_THREADS (exported; default all cores) and omp_note,
#   tmp (a directory removed on exit), cases (--case names), wait_idle (--wait-idle),
#   compute (f32, bf16 or both: which compute types bench_run_case measures; f32 unless
#   the runner takes --compute-type, see bench_set_compute), bf16_modes (the PyTorch
#   modes the bf16 rows are measured against, default autocast-bf16), torch_extra
#   (arguments for the PyTorch sides only, e.g. --kernels), BENCH_NAME (for messages), bench_busy and
#   bench_failed (for bench_finish).
bench_init() {
    BENCH_NAME=$1
    cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
    BUILD=${BUILD:-build}
    PYTHON=${PYTHON:-python3}
    TORCH1_PYTHON=${TORCH1_PYTHON:-/usr/bin/python3}
    # not nproc: it answers OMP_NUM_THREADS when that is set
    ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc --all)
    omp_note="${OMP_NUM_THREADS:-(unset; $BENCH_NAME sets it to $ncpu)}"
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$ncpu}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cases=() wait_idle=0 bench_busy="" bench_failed="" compute=f32 torch_extra=()
    bf16_modes=(autocast-bf16)
    torch_impls=() torch_pys=() torch_vers=() bench_torch_notes=() torch1_label="" torch2_label=""
    torch_new="" torch_new_label=""
}

# ---- options ---------------------------------------------------------------------------
# bench_help: the comment block at the top of the running script, without the '#'s.
bench_help() { sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; }

# bench_need_value "$@": a usage error unless option $1 has a value.
bench_need_value() {
    [ $# -ge 2 ] || { echo "$BENCH_NAME: $1 needs a value" >&2; exit 2; }
}

# bench_args HANDLER "$@": parse the command line. HANDLER "$@" takes the runner's own
# options: it sets bench_used to the number of arguments it took (left 0: not its own);
# bench_arg takes the rest.
bench_args() {
    local handler=$1
    shift
    while [ $# -gt 0 ]; do
        bench_used=0
        "$handler" "$@"
        [ "$bench_used" -gt 0 ] || bench_arg "$@"
        shift "$bench_used"
    done
}

# bench_arg "$@": the options every runner takes (--case NAME, --wait-idle SEC, --help);
# anything else is a usage error. Sets bench_used to the number of arguments taken.
bench_arg() {
    bench_used=1
    case "$1" in
        --case) bench_need_value "$@"; cases+=("$2"); bench_used=2 ;;
        --wait-idle) bench_need_value "$@"; wait_idle=$2; bench_used=2 ;;
        -h|--help) bench_help; exit 0 ;;
        *) echo "$BENCH_NAME: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
}

# bench_set_compute VALUE: the runner's --compute-type: f32 (FP32 rows only), bf16 (the
# bf16 rows, and tfm FP32 for their ratio) or both.
bench_set_compute() {
    case "$1" in
        f32|bf16|both) compute=$1 ;;
        *) echo "$BENCH_NAME: --compute-type: '$1' is not f32, bf16 or both" >&2; exit 2 ;;
    esac
}

# ---- build ------------------------------------------------------------------------------
# bench_build TARGET...: configure, then build the targets (and the library they link).
# Sets blas_linked: the CBLAS the build links (TFM_BLAS of the CMake configuration); for
# OpenBLAS also its threading and the kernel family it picks at run time
# (OPENBLAS_CORETYPE overrides the latter), from bench/openblas_probe.c. Which GEMM tfm
# actually uses is decided at run time (bench_report asks the benchmark binary).
bench_build() {
    echo "== building $* ($BUILD)" >&2
    { cmake -S . -B "$BUILD" >/dev/null && cmake --build "$BUILD" -j2 --target "$@" >/dev/null; } || {
        echo "$BENCH_NAME: building failed (run: cmake -S . -B $BUILD && cmake --build $BUILD --target $*)" >&2
        exit 1
    }
    local blas
    blas=$(sed -n 's/^TFM_BLAS:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
    blas_linked="none (TFM_BLAS=none)"
    if [ "$blas" != none ]; then
        blas_linked=$blas
        if [ "$blas" = openblas ] && cmake --build "$BUILD" --target openblas_probe >/dev/null 2>&1; then
            blas_linked="$blas_linked: $("$BUILD/bench/openblas_probe")"
        fi
    fi
}

# ---- the PyTorch builds ---------------------------------------------------------------
# bench_find_torch: the PyTorch builds to run, in this order: torch1 = TORCH1_PYTHON
# (1.13), torch2 = PYTHON (2.x) unless it is the same version. Sets torch_impls,
# torch_pys, torch_vers (arrays, one entry a build found), torch1_label and torch2_label
# (major.minor, or empty when that build is not run), torch_new and torch_new_label (the
# newest build found, torch2 if it runs: the one the bf16 modes are measured with; empty
# if none) and bench_torch_notes (why not).
bench_find_torch() {
    local impl py v
    for impl in torch1 torch2; do
        if [ "$impl" = torch1 ]; then py=$TORCH1_PYTHON; else py=$PYTHON; fi
        if ! v=$("$py" -c 'import torch; print(torch.__version__)' 2>"$tmp/torch_err"); then
            bench_torch_notes+=("$impl: PyTorch is NOT importable with $py ($(tail -n1 "$tmp/torch_err");
   Debian's: bash scripts/install_deps.sh --bench)")
            continue
        fi
        if [ "$impl" = torch2 ] && [ "${torch_vers[0]:-}" = "$v" ]; then
            bench_torch_notes+=("$impl: $py has the same torch $v as torch1; run once")
            continue
        fi
        torch_impls+=("$impl") torch_pys+=("$py") torch_vers+=("$v")
        printf -v "${impl}_label" '%s' "$(echo "$v" | cut -d. -f1-2)"
        torch_new=$impl torch_new_label=$(echo "$v" | cut -d. -f1-2)
    done
}

# bench_torch_sides SCRIPT ARG...: bench_side for each PyTorch build found, with
# --impl torch1 / torch2 (put --case NAME last: it names the run).
bench_torch_sides() {
    local script=$1 i
    shift
    for i in "${!torch_impls[@]}"; do
        bench_side "${torch_impls[i]}" "${torch_pys[i]}" "bench/$script" --impl "${torch_impls[i]}" "$@"
    done
}

# bench_run_case SCRIPT CASE ARG...: one case, every side back to back, so that the
# numbers of a row see the same machine conditions (a shared machine drifts): $BENCH
# (impl tfm), SCRIPT under each PyTorch build (FP32; not when compute is bf16); then,
# when compute is bf16 or both, $BENCH --compute-type bf16 (impl tfm_bf16) and SCRIPT
# under the newest PyTorch in each mode of bf16_modes (impl torch_MODE, e.g.
# torch_autocast-bf16). The PyTorch sides also get torch_extra.
bench_run_case() {
    local script=$1 c=$2 mode
    shift 2
    bench_side tfm "$BENCH" "$@" --case "$c"
    [ "$compute" = bf16 ] || bench_torch_sides "$script" "$@" "${torch_extra[@]}" --case "$c"
    [ "$compute" != f32 ] || return 0
    bench_side tfm_bf16 "$BENCH" --impl tfm_bf16 --compute-type bf16 "$@" --case "$c"
    [ -n "$torch_new" ] || return 0
    for mode in "${bf16_modes[@]}"; do
        bench_side "torch_$mode" "${torch_pys[${#torch_pys[@]} - 1]}" "bench/$script" \
            --impl "torch_$mode" --mode "$mode" "$@" "${torch_extra[@]}" --case "$c"
    done
}

# bench_run_cases SCRIPT ARG...: bench_run_case for each case.
bench_run_cases() {
    local script=$1 c
    shift
    for c in "${cases[@]}"; do bench_run_case "$script" "$c" "$@"; done
}

# ---- the report header ---------------------------------------------------------------
# bench_report TITLE BINARY: date, CPU (model name, and its bf16 instructions), cores,
# load, thread and OpenBLAS settings, tfm's commit, SIMD path, bf16 path and GEMM backend
# as the library reports them at run time (BINARY --info prints cpu_path=, bf16_path=
# and gemm=, under the TFM_CPU the runs see), the CBLAS linked, the PyTorch builds.
bench_report() {
    local info simd bf16 gemm i flag flags=""
    info=$("$2" --info 2>&1)
    simd=$(sed -n 's/.* cpu_path=\([^ ]*\).*/\1/p' <<<"$info")
    bf16=$(sed -n 's/.* bf16_path=\([^ ]*\).*/\1/p' <<<"$info")
    gemm=$(sed -n 's/.* gemm=\([^ ]*\).*/\1/p' <<<"$info")
    for flag in avx512_bf16 amx_bf16 amx_tile; do
        grep -q -m1 -w "$flag" /proc/cpuinfo && flags="$flags $flag" || flags="$flags no-$flag"
    done
    echo "== $1"
    echo "date:               $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "cpu:                $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
         "($(grep -o -m1 -w avx512f /proc/cpuinfo || echo no-avx512f))"
    echo "cores:              $ncpu (online)"
    echo "load average:       $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"
    echo "OMP_NUM_THREADS:    $omp_note"
    echo "OPENBLAS_CORETYPE:  ${OPENBLAS_CORETYPE:-(unset)}"
    echo "OPENBLAS_NUM_THREADS: ${OPENBLAS_NUM_THREADS:-(unset)}"
    echo "tfm:                $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD \
        -- src include 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "cpu bf16:          $flags (/proc/cpuinfo; a hypervisor may hide AMX)"
    echo "tfm SIMD path:      ${simd:-?} (TFM_CPU=${TFM_CPU:-(unset): the best this CPU supports})"
    echo "tfm bf16 path:      ${bf16:-?} (tfm_bf16_path: how compute type bf16 runs its products here)"
    echo "tfm GEMM:           ${gemm:-?} (tfm_gemm_backend at run time; CBLAS linked: $blas_linked)"
    for i in "${!torch_impls[@]}"; do
        echo "${torch_impls[i]}:             torch ${torch_vers[i]} (${torch_pys[i]})"
    done
    for i in "${!bench_torch_notes[@]}"; do echo "!! ${bench_torch_notes[i]}"; done
}

# ---- running one side of a case ------------------------------------------------------
# bench_idle_pct [SEC]: the idle CPU share (%) over the next SEC (default 0.5) seconds,
# from /proc/stat ("cpu" line: user nice system idle iowait irq softirq steal).
# Another process busy on a 2-core machine disturbs OpenMP code badly (threads wait for
# a descheduled peer), so it is reported.
bench_idle_pct() {
    local a b
    a=$(awk '/^cpu /{ print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep "${1:-0.5}"
    b=$(awk '/^cpu /{ print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; print (t > 0 ? int(100 * (y[1] - x[1]) / t) : 100) }'
}

# The idle share a side needs: OMP_NUM_THREADS of the cores. Below 75% of it before a
# side, the side is flagged; --wait-idle SEC waits (up to SEC s) for 90% of it over 2 s.
bench_need_idle() { # PERCENT
    local threads=$OMP_NUM_THREADS
    [ "$threads" -ge 1 ] 2>/dev/null && [ "$threads" -le "$ncpu" ] || threads=$ncpu
    echo $(($1 * threads / ncpu))
}

bench_wait_quiet() {
    [ "$wait_idle" -gt 0 ] 2>/dev/null || return 0
    local end=$((SECONDS + wait_idle)) idle need
    need=$(bench_need_idle 90)
    while :; do
        idle=$(bench_idle_pct 2)
        [ "$idle" -ge "$need" ] && return 0
        [ "$SECONDS" -ge "$end" ] && { echo "== still busy (idle $idle%) after ${wait_idle} s; running anyway" >&2; return 0; }
        echo "== CPU busy (idle $idle%), waiting" >&2
        sleep 8
    done
}

# bench_side IMPL COMMAND...: run one side of one case (named by the last argument):
# wait for a quiet CPU if asked, flag it if busy, append the output to $tmp/IMPL.txt and
# show it (the '#' header lines only the first time). A failure is remembered for
# bench_finish.
bench_side() {
    local impl=$1 log="$tmp/$1.txt" rc idle
    shift
    bench_wait_quiet
    idle=$(bench_idle_pct)
    [ "$idle" -ge "$(bench_need_idle 75)" ] || bench_busy="$bench_busy ${*: -1} (idle $idle% before $impl)"
    echo "== $impl: ${*: -1}" >&2
    "$@" >"$tmp/side.out"
    rc=$?
    if [ -s "$log" ]; then grep -Ev '^# (impl=|torch_config:)' "$tmp/side.out"; else cat "$tmp/side.out"; fi |
        tee -a "$log"
    if [ "$rc" -ne 0 ]; then
        echo "$BENCH_NAME: $impl FAILED on ${*: -1} (exit $rc)" >&2
        bench_failed="$bench_failed $impl:${*: -1}"
    fi
    return "$rc"
}

# ---- the table -------------------------------------------------------------------------
# bench_table AWK_END [NAME=VALUE]...: run awk over every side's output with the
# BENCH-line reader below and the caller's END block; awk variables: t1, t2 the torch1 /
# torch2 labels (empty: not run), and each NAME=VALUE given.
# The reader: BENCH impl=X case=Y key=value ... -> v[X, Y, key]; order[1..n] the cases
# in the order first seen; get(impl, case, key) ("" if absent); dflt(x, d) (x, or d if
# x is empty); ratio(a, b) = a / b as "1.23x", or "-".
bench_table() {
    local prog=$1 vars=() a
    shift
    for a in "$@"; do vars+=(-v "$a"); done
    echo
    touch "$tmp/tfm.txt"
    awk -v t1="$torch1_label" -v t2="$torch2_label" "${vars[@]}" '
        /^BENCH / {
            delete kv
            for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
            if (!((kv["case"]) in seen)) { seen[kv["case"]] = 1; order[++n] = kv["case"] }
            for (k in kv) v[kv["impl"], kv["case"], k] = kv[k]
        }
        function get(impl, c, k) { return ((impl, c, k) in v) ? v[impl, c, k] : "" }
        function dflt(x, d) { return x != "" ? x : d }
        function ratio(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2fx", a / b) : "-" }
        # a torch build'"'"'s cell: its value, FAILED if it ran and has none, n/a if not run
        function tcell(label, x) { return x != "" ? x : (label != "" ? "FAILED" : "n/a") }
        '"$prog" "$tmp"/*.txt || bench_failed="$bench_failed table"
}

# bench_kernels TITLE: TITLE, then the '# kernels' lines of the PyTorch sides
# (bench_common.kernel_line: one untimed call each) without their '# kernels impl='
# prefix; nothing if there are none.
bench_kernels() {
    local lines
    lines=$(sed -n 's/^# kernels impl=\([^ ]*\) /  \1 /p' "$tmp"/torch*.txt 2>/dev/null)
    [ -z "$lines" ] || printf '\n%s\n%s\n' "$1" "$lines"
}

# bench_finish: the busy-CPU warning; exit status 1 if any side failed.
bench_finish() {
    [ -z "$bench_busy" ] || echo "WARNING: other processes were using the CPU before:$bench_busy; those rows are unreliable"
    if [ -n "$bench_failed" ]; then
        echo "$BENCH_NAME: FAILED:$bench_failed" >&2
        exit 1
    fi
}
