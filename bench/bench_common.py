"""bench_common.py — what bench_torch.py, bench_train_torch.py and bench_decode_torch.py
share: the command line, the timing loop, the '#' header and BENCH lines, the synthetic
ids, and the seq2seq model of tfm's src/model/seq2seq.c built from stock modules.

Runs under torch 2.x (pip) and 1.13 (Debian's python3-torch): nothing here needs an
argument newer than 1.13; the callers check for the few that are (tgt_is_causal).
"""
import argparse
import math
import os
import re
import statistics
import sys
import time

import torch
from torch import nn

VOCAB, PAD, BOS, EOS, BYTE0 = 259, 0, 1, 2, 3  # the byte vocabulary of src/train/tokenizer.h


# ---- command line -------------------------------------------------------------------
def parser(doc, min_reps, warmup):
    """An ArgumentParser with the options every benchmark takes (as bench/common.h)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--min-reps", type=int, default=min_reps)
    p.add_argument("--max-reps", type=int, default=10000)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--impl", default="torch", help="the impl= name of the output lines")
    return p


def parse(p, min_warmup=0):
    args = p.parse_args()
    args.min_reps = max(1, args.min_reps)
    args.max_reps = max(args.min_reps, args.max_reps)
    args.warmup = max(min_warmup, args.warmup)
    return args


# ---- timing ---------------------------------------------------------------------------
def time_loop(fn, min_time, min_reps, max_reps):
    """Call fn() until min_time seconds have passed and min_reps calls were made (or
    max_reps); returns the wall time of each call and fn's last result."""
    times, out = [], None
    start = time.perf_counter()
    while len(times) < max_reps and (
            len(times) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def timed(fn, args):
    """args.warmup untimed calls, then time_loop with args' limits."""
    for _ in range(args.warmup):
        fn()
    return time_loop(fn, args.min_time, args.min_reps, args.max_reps)


def stats_kv(times):
    """reps, median_ms, min_ms of a list of seconds, as BENCH key=value pairs."""
    return (f"reps={len(times)} median_ms={1e3 * statistics.median(times):.3f} "
            f"min_ms={1e3 * min(times):.3f}")


# ---- output ---------------------------------------------------------------------------
def header(args, extra="", config=True):
    """The '#' header line (version, threads, BLAS, environment, timing options, then
    extra), and with config the build lines of torch.__config__.show() (compiler, MKL,
    oneDNN, OpenMP, CPU capability)."""
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    env = {k: os.environ.get(k, "(unset)")
           for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")}
    print(f"# impl={args.impl} version={torch.__version__} threads={torch.get_num_threads()} "
          f"blas={m.group(1) if m else '?'} " + " ".join(f"{k}={v}" for k, v in env.items()) +
          f" min_time={args.min_time:g} min_reps={args.min_reps} warmup={args.warmup}" + extra)
    if config:
        for line in cfg.splitlines()[1:]:
            if "Build settings" in line:
                break
            print("# torch_config:", line.strip())
    sys.stdout.flush()


def bench_line(args, name, kv):
    print(f"BENCH impl={args.impl} case={name} {kv}", flush=True)


# ---- FLOP counts: matrix products only, 2·M·N·K per GEMM (see bench_tfm.c) --------
def flops_mha(N, L, S, E):
    # Q proj 2·N·L·E², K and V proj 2·N·S·E·2E, QKᵀ and PV 2·N·L·S·E each, out proj 2·N·L·E²
    return 4 * N * L * E * E + 4 * N * S * E * E + 4 * N * L * S * E


def flops_ffn(N, L, E, F):
    return 4 * N * L * E * F  # linear1 (E→F) + linear2 (F→E) on N·L rows


# ---- synthetic ids: bench/common.h's LCG (its high bits) -----------------------------
def lcg(seed=12345):
    s, M = seed, (1 << 64) - 1
    while True:
        s = (s * 6364136223846793005 + 1442695040888963407) & M
        yield s >> 33


def byte_ids(gen, count):
    """count ids uniform in BYTE0..258 (bytes) from the LCG gen."""
    return [BYTE0 + next(gen) % 256 for _ in range(count)]


# ---- the seq2seq model (src/model/seq2seq.c) ------------------------------------------
class Seq2Seq(nn.Module):
    """embed      nn.Embedding(V, E), one matrix for source, target and generator (tied)
    x          dropout(embed(ids) · √E + PE[:T])  with PE the sinusoidal encoding (T, E)
    transformer nn.Transformer(E, H, enc, dec, F, dropout, relu, post-norm,
               batch_first=True): final encoder and decoder LayerNorms, as tfm's
    generator  nn.Linear(E, V) whose weight IS embed.weight (its bias its own)
    Matrices Xavier-uniform, as tfm's seq2seq_init."""

    def __init__(self, E, H, enc, dec, Fw, max_len, dropout=0.1):
        super().__init__()
        self.E = E
        self.embed = nn.Embedding(VOCAB, E)  # (V, E), shared three ways
        pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)          # (T, 1)
        div = torch.exp(torch.arange(0, E, 2, dtype=torch.float32) * (-math.log(10000.0) / E))
        pe = torch.zeros(max_len, E)                                           # (T, E)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.drop = nn.Dropout(dropout)
        self.transformer = nn.Transformer(d_model=E, nhead=H, num_encoder_layers=enc,
                                          num_decoder_layers=dec, dim_feedforward=Fw,
                                          dropout=dropout, activation="relu",
                                          batch_first=True, norm_first=False)
        self.generator = nn.Linear(E, VOCAB)  # (V, E) weight + (V) bias
        self.generator.weight = self.embed.weight  # tied
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def embed_pos(self, ids):  # ids (N, T) -> (N, T, E); dropout is off in eval mode
        return self.drop(self.embed(ids) * math.sqrt(self.E) + self.pe[:ids.shape[1]])
