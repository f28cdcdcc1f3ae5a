#!/usr/bin/env python3
"""bench_train_torch.py — the training-step cases of bench_train.c with PyTorch.

Usage: bench_train_torch.py [--case NAME]... [--batch N] [--min-time SEC] [--min-reps R]
                            [--max-reps R] [--warmup W] [--no-pad-masks]
  default: every case, its own batch size, min-time 2 s, min-reps 5, max-reps 10000,
  warm-up 2 steps. Works with torch 2.x (pip) and 1.13 (Debian's python3-torch:
  PYTHON=/usr/bin/python3 bash bench/run_train.sh).

The model is the one tfm's src/model/seq2seq.c implements, from stock modules:
  embed      nn.Embedding(V, E), one matrix for source, target and generator (tied)
  x          dropout(embed(ids) · √E + PE[:T])  with PE the sinusoidal encoding (T, E)
  transformer nn.Transformer(E, H, enc, dec, F, dropout 0.1, relu, post-norm,
             batch_first=True): final encoder and decoder LayerNorms, as tfm's
  generator  nn.Linear(E, V) whose weight IS embed.weight (its bias its own)
  loss       F.cross_entropy(logits, labels, ignore_index=PAD 0, label_smoothing 0.1)
One step, in train mode:
  optimizer.zero_grad(); loss.backward();
  torch.nn.utils.clip_grad_norm_(params, 1.0); optimizer.step()
with torch.optim.Adam(lr, betas (0.9, 0.98), eps 1e-9) — PyTorch's default
implementation choice (on CPU: the single-tensor loop).

Masks (as tfm applies them): the causal tgt_mask (L, L) (float, −inf above the
diagonal; tgt_is_causal=True where the argument exists) and the key-padding masks
src (N, S), tgt (N, L), memory = src, as float 0 / −inf (the batch has no padding, so
they are all 0). --no-pad-masks leaves the key-padding masks out (for comparison).

Cases and batch: see bench_train.c (same shapes, the same LCG-generated ids).
Timing: warm-up steps, then timed steps until min-time seconds and min-reps steps;
medians. fb = zero_grad + forward + backward, opt = clipping + Adam.

Output: '#' lines (torch version, threads, BLAS, environment), then one line per case
in bench_train's format:
  BENCH impl=torch case=demo reps=57 median_ms=12.345 min_ms=12.001 fb_ms=11.0 opt_ms=1.3
        tokens=704 tok_s=57020 gflop=1.234 gflops=99.9 params=123456 batch=64 loss=5.61

Legend: N batch, S source length, L target length, E d_model, H heads, F feed-forward
width, V vocabulary (259), R = N · L target rows.
"""
import argparse
import inspect
import math
import os
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, PAD, BOS, EOS, BYTE0 = 259, 0, 1, 2, 3
DROPOUT, SMOOTHING, CLIP, LR = 0.1, 0.1, 1.0, 1e-4

# name: (E, H, enc, dec, F, N, S, L) — identical to CASES in bench_train.c
CASES = {
    "demo": (64, 4, 2, 2, 256, 64, 11, 11),
    "base": (512, 8, 6, 6, 2048, 32, 64, 64),
}


# ---- FLOP counts (identical to bench_train.c) --------------------------------------
def flops_mha(N, L, S, E):
    return 4 * N * L * E * E + 4 * N * S * E * E + 4 * N * L * S * E


def flops_ffn(N, L, E, Fw):
    return 4 * N * L * E * Fw


def flops_step(E, enc, dec, Fw, N, S, L):
    fwd = (enc * (flops_mha(N, S, S, E) + flops_ffn(N, S, E, Fw)) +
           dec * (flops_mha(N, L, L, E) + flops_mha(N, L, S, E) + flops_ffn(N, L, E, Fw)) +
           2 * N * L * E * VOCAB)
    return 3 * fwd  # forward + backward (≈ 2 × forward)


# ---- the model ----------------------------------------------------------------------
class Seq2Seq(nn.Module):
    def __init__(self, E, H, enc, dec, Fw, max_len):
        super().__init__()
        self.E = E
        self.embed = nn.Embedding(VOCAB, E)  # (V, E), shared three ways
        pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)          # (T, 1)
        div = torch.exp(torch.arange(0, E, 2, dtype=torch.float32) * (-math.log(10000.0) / E))
        pe = torch.zeros(max_len, E)                                           # (T, E)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.drop = nn.Dropout(DROPOUT)
        self.transformer = nn.Transformer(d_model=E, nhead=H, num_encoder_layers=enc,
                                          num_decoder_layers=dec, dim_feedforward=Fw,
                                          dropout=DROPOUT, activation="relu",
                                          batch_first=True, norm_first=False)
        self.generator = nn.Linear(E, VOCAB)  # (V, E) weight + (V) bias
        self.generator.weight = self.embed.weight  # tied
        for p in self.parameters():  # Xavier-uniform matrices, as tfm's seq2seq_init
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.causal_kw = ("tgt_is_causal" in
                          inspect.signature(nn.Transformer.forward).parameters)

    def embed_pos(self, ids):  # ids (N, T) -> (N, T, E)
        return self.drop(self.embed(ids) * math.sqrt(self.E) + self.pe[:ids.shape[1]])

    def forward(self, src, tgt_in, tgt_mask, src_kpm, tgt_kpm):
        xs, xt = self.embed_pos(src), self.embed_pos(tgt_in)  # (N, S, E), (N, L, E)
        kw = {"tgt_is_causal": True} if self.causal_kw else {}
        y = self.transformer(xs, xt, tgt_mask=tgt_mask, src_key_padding_mask=src_kpm,
                             tgt_key_padding_mask=tgt_kpm, memory_key_padding_mask=src_kpm,
                             **kw)                             # (N, L, E)
        return self.generator(y)                               # logits (N, L, V)


# ---- the batch (bench_train.c's LCG) -------------------------------------------------
def make_batch(N, S, L):
    s = 12345
    M = (1 << 64) - 1

    def nxt():
        nonlocal s
        s = (s * 6364136223846793005 + 1442695040888963407) & M
        return s >> 33

    src = [BYTE0 + nxt() % 256 for _ in range(N * S)]
    tgt_in, tgt_out = [], []
    for _ in range(N):
        row = [BOS] + [BYTE0 + nxt() % 256 for _ in range(L - 1)]
        tgt_in += row
        tgt_out += row[1:] + [EOS]
    t = lambda v, T: torch.tensor(v, dtype=torch.long).view(N, T)
    return t(src, S), t(tgt_in, L), t(tgt_out, L)  # (N, S), (N, L), (N, L)


def run_case(name, args):
    E, H, enc, dec, Fw, N, S, L = CASES[name]
    if args.batch:
        N = args.batch
    torch.manual_seed(1)
    model = Seq2Seq(E, H, enc, dec, Fw, max(S, L)).train()
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.98), eps=1e-9)
    src, tgt_in, tgt_out = make_batch(N, S, L)
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(L)  # (L, L) float
    if args.no_pad_masks:
        src_kpm = tgt_kpm = None
    else:  # float 0 / −inf like tgt_mask (a bool one would mismatch it); all 0 here
        src_kpm = torch.zeros(N, S).masked_fill(src == PAD, float("-inf"))  # (N, S)
        tgt_kpm = torch.zeros(N, L).masked_fill(tgt_in == PAD, float("-inf"))  # (N, L)
    labels = tgt_out.reshape(-1)  # (R)
    tokens = int((labels != PAD).sum())
    params = sum(p.numel() for p in model.parameters())  # tied weight counted once

    def step():
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(src, tgt_in, tgt_mask, src_kpm, tgt_kpm)  # (N, L, V)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), labels, ignore_index=PAD,
                               label_smoothing=SMOOTHING)
        loss.backward()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, loss

    for _ in range(max(1, args.warmup)):
        step()
    ts, tfb, top = [], [], []
    start = time.perf_counter()
    while len(ts) < args.max_reps and (
            len(ts) < args.min_reps or time.perf_counter() - start < args.min_time):
        t0 = time.perf_counter()
        fb, op, loss = step()
        ts.append(time.perf_counter() - t0)
        tfb.append(fb)
        top.append(op)
    med = statistics.median(ts)
    flop = flops_step(E, enc, dec, Fw, N, S, L)
    print(f"BENCH impl=torch case={name} reps={len(ts)} median_ms={1e3 * med:.3f} "
          f"min_ms={1e3 * min(ts):.3f} fb_ms={1e3 * statistics.median(tfb):.3f} "
          f"opt_ms={1e3 * statistics.median(top):.3f} tokens={tokens} "
          f"tok_s={tokens / med:.0f} gflop={flop * 1e-9:.3f} gflops={flop * 1e-9 / med:.1f} "
          f"params={params} batch={N} loss={loss.item():.4f}", flush=True)


def header(args):
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    env = {k: os.environ.get(k, "(unset)")
           for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")}
    print(f"# impl=torch version={torch.__version__} threads={torch.get_num_threads()} "
          f"blas={m.group(1) if m else '?'} " + " ".join(f"{k}={v}" for k, v in env.items()) +
          f" min_time={args.min_time:g} min_reps={args.min_reps} warmup={args.warmup}"
          f" pad_masks={'no' if args.no_pad_masks else 'yes'}")
    for line in cfg.splitlines()[1:]:
        if "Build settings" in line:
            break
        print("# torch_config:", line.strip())
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=list(CASES))
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--min-reps", type=int, default=5)
    p.add_argument("--max-reps", type=int, default=10000)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-pad-masks", action="store_true")
    args = p.parse_args()
    args.min_reps = max(1, args.min_reps)
    args.max_reps = max(args.min_reps, args.max_reps)
    header(args)
    for name in args.case or CASES:
        run_case(name, args)


if __name__ == "__main__":
    main()
