#!/usr/bin/env python3
"""Write a reversal task as source<TAB>target lines: random lowercase strings of 5-15
letters and their reversal. Used by the README's `tfm train` example and its test.

    python3 scripts/make_reverse_data.py OUT_DIR [--train 20000] [--test 1000] [--seed 0]

writes OUT_DIR/train.tsv, OUT_DIR/valid.tsv (500 pairs), OUT_DIR/test.tsv and
OUT_DIR/test.src (sources only); held-out strings never occur in train.tsv."""
import argparse
import os
import random
import string


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    seen, rows = set(), []
    while len(rows) < a.train + 500 + a.test:
        s = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 15)))
        if s not in seen:
            seen.add(s)
            rows.append(s)
    os.makedirs(a.out, exist_ok=True)
    parts = {"train": rows[:a.train], "valid": rows[a.train:a.train + 500], "test": rows[a.train + 500:]}
    for name, part in parts.items():
        with open(os.path.join(a.out, name + ".tsv"), "w") as f:
            f.writelines(f"{s}\t{s[::-1]}\n" for s in part)
    with open(os.path.join(a.out, "test.src"), "w") as f:
        f.writelines(f"{s}\n" for s in parts["test"])


if __name__ == "__main__":
    main()
