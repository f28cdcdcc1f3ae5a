#!/bin/sh
# valgrind_cli.sh TFM FIXTURES DATA — the CLI under valgrind memcheck: a forward (with
# gradients) on a PyTorch fixture and a short training run with a checkpoint, a resume
# and a translation. Any memcheck error or leak fails the test.
set -eu
tfm=$1 fixtures=$2 data=$3
if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind_cli: valgrind is not installed (scripts/install_deps.sh installs it)" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One OpenMP thread: libgomp keeps its worker threads' stacks for the life of the process,
# which memcheck reports as "possibly lost"; with one thread there are none. Blocks still
# reachable at exit (libgomp's and OpenBLAS's own tables) are not leaks and not errors.
export OMP_NUM_THREADS=1
vg="valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible"
case=tf_all_masks
$vg "$tfm" forward --model "$fixtures/$case.model.safetensors" --input "$fixtures/$case.input.safetensors" \
    --output "$tmp/out.safetensors" --grad-output "$fixtures/$case.grad_output.safetensors"
head -n 200 "$data" > "$tmp/train.tsv"
small="--d-model 16 --heads 2 --ff 32 --encoder-layers 1 --decoder-layers 1 --max-len 32 --batch-size 16 --quiet --eval-every 0"
# shellcheck disable=SC2086
$vg "$tfm" train --train "$tmp/train.tsv" --valid "$tmp/train.tsv" --out "$tmp/m.safetensors" --steps 4 --checkpoint-every 2 $small
# shellcheck disable=SC2086
$vg "$tfm" train --train "$tmp/train.tsv" --out "$tmp/m.safetensors" --steps 6 --resume $small
printf 'hello\nabc\n' > "$tmp/in.txt"
$vg "$tfm" translate --model "$tmp/m.safetensors" --input "$tmp/in.txt" --beam 2 --attn-png "$tmp/maps" > "$tmp/out.txt"
test "$(wc -l < "$tmp/out.txt")" -eq 2
echo "valgrind_cli: forward, backward, training, resume and translation ran clean under memcheck"
