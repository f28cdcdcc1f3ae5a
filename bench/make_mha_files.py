#!/usr/bin/env python3
"""make_mha_files.py — the files of bench/long_memory.sh, with numpy only (no torch):
an nn.MultiheadAttention model (random weights), a self-attention input and, for a
backward run, the gradient of the output.

Usage: make_mha_files.py --dir DIR --len L [--embed E] [--heads H] [--batch-first]
                         [--grad] [--seed S]
       make_mha_files.py --dir DIR --check OUT [--grad]
Writes, in DIR:
  model.safetensors   in_proj_weight (3E, E), in_proj_bias (3E), out_proj.weight (E, E),
                      out_proj.bias (E), F32; __metadata__ as `tfm forward` reads it
                      (src/io/config_meta.c): module MultiheadAttention, embed_dim,
                      num_heads, bias, add_bias_kv, add_zero_attn, kdim, vdim,
                      batch_first — PyTorch's constructor arguments, as strings
  input.safetensors   query, key, value: the same (L, 1, E) tensor (batch 1; (1, L, E)
                      with --batch-first), uniform in [-1, 1)
  grad.safetensors    (--grad) output: the gradient of the output, (L, 1, E) or (1, L, E)
Weights as PyTorch initialises them in distribution: in_proj_weight Xavier-uniform,
out_proj.weight uniform ±1/√E; the biases small random values (not PyTorch's zeros, so
that they are exercised).

--check OUT: exit status 0 if `tfm forward`'s output file OUT holds `output` of the
shape of DIR/input.safetensors' query, finite, and with --grad also grad.query and
grad.in_proj_weight, finite (read memory-mapped: a few seconds at L 65536).

Format (safetensors): 8-byte little-endian header length, the JSON header padded with
spaces to a multiple of 8, then the raw little-endian data in header order.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, shape, array or callable giving it); written one at a time
    so that only one large array lives at once."""
    header, offset = {"__metadata__": metadata}, 0
    for name, shape, _ in tensors:
        nbytes = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for name, shape, data in tensors:
            a = np.ascontiguousarray(data() if callable(data) else data, dtype="<f4")
            assert a.shape == tuple(shape), (name, a.shape, shape)
            a.tofile(f)


def read_tensor(path, name):
    """A tensor of a safetensors file, memory-mapped (F32 only); None if absent."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        t = json.loads(f.read(n)).get(name)
    if t is None:
        return None
    assert t["dtype"] == "F32", (path, name, t["dtype"])
    return np.memmap(path, "<f4", "r", 8 + n + t["data_offsets"][0], tuple(t["shape"]))


def check(out_path, in_path, grad):
    query = read_tensor(in_path, "query")
    ok = True
    for name, shape in [("output", query.shape)] + (
            [("grad.query", query.shape), ("grad.in_proj_weight", None)] if grad else []):
        t = read_tensor(out_path, name)
        good = t is not None and (shape is None or t.shape == shape) and bool(np.isfinite(t).all())
        print(f"   {name}: {'absent' if t is None else t.shape}, "
              f"{'ok' if good else 'WRONG (shape or non-finite values)'}")
        ok = ok and good
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--len", type=int, help="L: query = key = value length")
    p.add_argument("--check", metavar="OUT", help="check tfm forward's output file instead")
    p.add_argument("--embed", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batch-first", action="store_true")
    p.add_argument("--grad", action="store_true", help="also write grad.safetensors")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.check:
        sys.exit(0 if check(a.check, os.path.join(a.dir, "input.safetensors"), a.grad) else 1)
    if not a.len:
        p.error("--len is needed to write the files")
    E, L = a.embed, a.len
    rng = np.random.default_rng(a.seed)
    uniform = lambda shape, bound: rng.uniform(-bound, bound, shape).astype(np.float32)

    meta = {"module": "MultiheadAttention", "embed_dim": str(E), "num_heads": str(a.heads),
            "bias": "true", "add_bias_kv": "false", "add_zero_attn": "false",
            "kdim": str(E), "vdim": str(E), "batch_first": "true" if a.batch_first else "false"}
    write_safetensors(os.path.join(a.dir, "model.safetensors"), [
        ("in_proj_weight", (3 * E, E), uniform((3 * E, E), np.sqrt(6.0 / (4 * E)))),
        ("in_proj_bias", (3 * E,), uniform((3 * E,), 0.1)),
        ("out_proj.weight", (E, E), uniform((E, E), 1 / np.sqrt(E))),
        ("out_proj.bias", (E,), uniform((E,), 0.1)),
    ], meta)

    shape = (1, L, E) if a.batch_first else (L, 1, E)  # batch 1
    x = uniform(shape, 1.0)
    write_safetensors(os.path.join(a.dir, "input.safetensors"),
                      [("query", shape, x), ("key", shape, x), ("value", shape, x)], {})
    del x
    if a.grad:
        write_safetensors(os.path.join(a.dir, "grad.safetensors"),
                          [("output", shape, lambda: uniform(shape, 1.0))], {})


if __name__ == "__main__":
    main()
