#!/usr/bin/env python3
"""bench_train_torch.py — the training-step cases of bench_train.c with PyTorch.

Usage: bench_train_torch.py [--case NAME]... [--batch N] [--mode fp32|autocast-bf16]
                            [--kernels] [--min-time SEC] [--min-reps R] [--max-reps R]
                            [--warmup W] [--no-pad-masks] [--impl NAME]
  default: every case, its own batch size, mode fp32, min-time 2 s, min-reps 5,
  max-reps 10000, warm-up 2 steps, impl torch. Works with torch 2.x (pip) and 1.13
  (Debian's python3-torch); bench/run_train.sh runs both (autocast-bf16 under 2.x only).

Modes: fp32; autocast-bf16: forward and loss under torch.autocast("cpu",
dtype=torch.bfloat16), backward outside it (autograd runs each product's backward in
the dtype its forward used), FP32 master weights, gradients and Adam — PyTorch's mixed
precision recipe (bf16 needs no loss scaling), the counterpart of tfm's compute type
bf16 (bench_train --compute-type bf16). --kernels: after timing, one more step's
forward + backward under the profiler and oneDNN's and MKL's verbose modes, summed up
on a '# kernels' line (bench_common.kernel_line).

The model is the one tfm's src/model/seq2seq.c implements, from stock modules
(bench_common.Seq2Seq: tied embeddings and generator, sinusoidal positions,
nn.Transformer with dropout 0.1, relu, post-norm, final LayerNorms), and
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
in bench_train's format (impl= the --impl name):
  BENCH impl=torch case=demo reps=57 median_ms=12.345 min_ms=12.001 fb_ms=11.0 opt_ms=1.3
        tokens=704 tok_s=57020 gflop=1.234 gflops=99.9 params=123456 batch=64 loss=5.61
        mode=fp32

Legend: N batch, S source length, L target length, E d_model, H heads, F feed-forward
width, V vocabulary (259), R = N · L target rows.
"""
import inspect
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import bench_common as bc
from bench_common import BOS, EOS, PAD, VOCAB

DROPOUT, SMOOTHING, CLIP, LR = 0.1, 0.1, 1.0, 1e-4

# name: (E, H, enc, dec, F, N, S, L) — identical to CASES in bench_train.c
CASES = {
    "demo": (64, 4, 2, 2, 256, 64, 11, 11),
    "base": (512, 8, 6, 6, 2048, 32, 64, 64),
}


# ---- FLOP counts (identical to bench_train.c) --------------------------------------
def flops_step(E, enc, dec, Fw, N, S, L):
    fwd = (enc * (bc.flops_mha(N, S, S, E) + bc.flops_ffn(N, S, E, Fw)) +
           dec * (bc.flops_mha(N, L, L, E) + bc.flops_mha(N, L, S, E) + bc.flops_ffn(N, L, E, Fw)) +
           2 * N * L * E * VOCAB)
    return 3 * fwd  # forward + backward (≈ 2 × forward)


# ---- the model: bench_common.Seq2Seq and its training forward ------------------------
# tgt_is_causal exists from torch 2.0 on (not in 1.13)
CAUSAL_KW = "tgt_is_causal" in inspect.signature(nn.Transformer.forward).parameters


def forward(model, src, tgt_in, tgt_mask, src_kpm, tgt_kpm):
    xs, xt = model.embed_pos(src), model.embed_pos(tgt_in)  # (N, S, E), (N, L, E)
    kw = {"tgt_is_causal": True} if CAUSAL_KW else {}
    y = model.transformer(xs, xt, tgt_mask=tgt_mask, src_key_padding_mask=src_kpm,
                          tgt_key_padding_mask=tgt_kpm, memory_key_padding_mask=src_kpm,
                          **kw)                               # (N, L, E)
    return model.generator(y)                                 # logits (N, L, V)


# ---- the batch (bench_train.c's LCG) -------------------------------------------------
def make_batch(N, S, L):
    gen = bc.lcg(12345)
    src = bc.byte_ids(gen, N * S)
    tgt_in, tgt_out = [], []
    for _ in range(N):
        row = [BOS] + bc.byte_ids(gen, L - 1)
        tgt_in += row
        tgt_out += row[1:] + [EOS]
    t = lambda v, T: torch.tensor(v, dtype=torch.long).view(N, T)
    return t(src, S), t(tgt_in, L), t(tgt_out, L)  # (N, S), (N, L), (N, L)


def run_case(name, args):
    E, H, enc, dec, Fw, N, S, L = CASES[name]
    if args.batch:
        N = args.batch
    torch.manual_seed(1)
    model = bc.Seq2Seq(E, H, enc, dec, Fw, max(S, L), DROPOUT).train()
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

    def forward_backward():
        opt.zero_grad()
        with bc.autocast(args.mode):
            logits = forward(model, src, tgt_in, tgt_mask, src_kpm, tgt_kpm)  # (N, L, V)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), labels, ignore_index=PAD,
                                   label_smoothing=SMOOTHING)
        loss.backward()
        return loss

    def step():
        t0 = time.perf_counter()
        loss = forward_backward()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, loss

    tfb, top = [], []

    def timed_step():  # the whole step, and its two phases on the side
        fb, op, loss = step()
        tfb.append(fb)
        top.append(op)
        return loss

    for _ in range(args.warmup):
        step()
    ts, loss = bc.time_loop(timed_step, args.min_time, args.min_reps, args.max_reps)
    if args.kernels:
        bc.kernel_line(args, name, forward_backward)
    med = statistics.median(ts)
    flop = flops_step(E, enc, dec, Fw, N, S, L)
    bc.bench_line(args, name, f"{bc.stats_kv(ts)} fb_ms={1e3 * statistics.median(tfb):.3f} "
                  f"opt_ms={1e3 * statistics.median(top):.3f} tokens={tokens} "
                  f"tok_s={tokens / med:.0f} gflop={flop * 1e-9:.3f} "
                  f"gflops={flop * 1e-9 / med:.1f} params={params} batch={N} "
                  f"loss={loss.item():.4f} mode={args.mode}")


def main():
    p = bc.parser(__doc__, min_reps=5, warmup=2)
    p.add_argument("--case", action="append", choices=list(CASES))
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--no-pad-masks", action="store_true")
    bc.add_mode(p, ["fp32", "autocast-bf16"])
    args = bc.parse(p, min_warmup=1)
    bc.header(args, f" pad_masks={'no' if args.no_pad_masks else 'yes'} mode={args.mode}" +
              bc.mode_info())
    for name in args.case or CASES:
        run_case(name, args)


if __name__ == "__main__":
    main()
