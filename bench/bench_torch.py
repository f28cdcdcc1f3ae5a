#!/usr/bin/env python3
"""bench_torch.py — the cases of bench_tfm.c with PyTorch, same timing, same output.

Usage: bench_torch.py [--case NAME]... [--mode fp32|autocast-bf16|bf16-weights] [--kernels]
                      [--min-time SEC] [--min-reps R] [--max-reps R] [--warmup W]
                      [--impl NAME]
  default: every case, mode fp32, min-time 2 s, min-reps 5, max-reps 10000, warm-up 1,
  impl torch. Works with torch 2.x (pip) and 1.13 (Debian's python3-torch); bench/run.sh
  runs both (the bf16 modes under 2.x only).

Modes (bench_common.MODES):
  fp32           FP32 weights and inputs
  autocast-bf16  FP32 weights and inputs, the forward under
                 torch.autocast("cpu", dtype=torch.bfloat16): the counterpart of
                 bench_tfm --compute-type bf16
  bf16-weights   module.to(torch.bfloat16), bf16 inputs (the tgt_mask too)
--kernels: after timing a case, one more call under torch.profiler and oneDNN's verbose
mode, summed up on a '# kernels' line: the ops with the most self CPU time and the
oneDNN primitives (e.g. matmul/brg_matmul:avx512_core_bf16) that ran.

Cases (batch_first=True, eval mode, dropout 0, under torch.inference_mode()):
  transformer  nn.Transformer default size: d_model 512, nhead 8, 6 + 6 layers,
               dim_feedforward 2048, relu, post-norm; N 8, S = T = 128, causal float
               tgt_mask from nn.Transformer.generate_square_subsequent_mask
  mha          nn.MultiheadAttention(512, 8), N 8, L = S = 128, self-attention
               (query is key is value), need_weights=False
  encoder6     nn.TransformerEncoder(TransformerEncoderLayer(512, 8, 2048), 6), N 8, L 128
  mha_long     nn.MultiheadAttention(512, 8), N 1, L = S = 4096, self-attention
  bert384      nn.TransformerEncoder(TransformerEncoderLayer(384, 12, 1536,
               activation="gelu", layer_norm_eps=1e-12), 6), N 32, L 128
  bert768      the same with (768, 12, 3072), N 8, L 128

PyTorch takes whatever path it picks by default for these calls (its "fast path"
kernels for the encoder and for self-attention MHA, scaled_dot_product_attention,
causal-mask detection in the decoder); nothing is forced either way. The weights are
PyTorch's own initialisation from torch.manual_seed(1) (tfm's are its own from seed 1):
the cost of a forward does not depend on the values.

Timing: untimed warm-up forwards, then timed forwards until both min-time seconds
have passed and min-reps were done (or max-reps reached); median and minimum reported.

Output: '#' lines with the torch version, thread count, build configuration and what
the precision modes can use (CPU capability, mkldnn, mkldnn bf16), then one line per
case in bench_tfm's format (impl= the --impl name, mode= the precision mode):
  BENCH impl=torch case=mha reps=57 median_ms=12.345 min_ms=12.001 gflop=2.416 gflops=195.7 mode=fp32
The FLOP counts (matrix products only, 2·M·N·K per GEMM, attention counted dense) are
the formulas of bench_tfm.c; see the comment there.

Legend: N batch, L query (target) length, S key (source) length, E model width,
H heads, F feed-forward width.
"""
import statistics

import torch
from torch import nn

import bench_common as bc

CASES = ["transformer", "mha", "encoder6", "mha_long", "bert384", "bert768"]


# ---- FLOP counts (identical to bench_tfm.c; mha and ffn in bench_common.py) --------
def flops_encoder_layer(N, L, E, F):
    return bc.flops_mha(N, L, L, E) + bc.flops_ffn(N, L, E, F)


def flops_decoder_layer(N, T, S, E, F):
    return bc.flops_mha(N, T, T, E) + bc.flops_mha(N, T, S, E) + bc.flops_ffn(N, T, E, F)


# ---- cases: (module, input tensors, call(*inputs), flop) -------------------------------
def setup_mha(N, L, E, H):
    m = nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True).eval()
    x = torch.randn(N, L, E)  # (N, L, E); query = key = value: the same tensor object
    return m, [x], (lambda x: m(x, x, x, need_weights=False)), bc.flops_mha(N, L, L, E)


def setup_encoder(layers, N, L, E, H, F, activation="relu", eps=1e-5):
    layer = nn.TransformerEncoderLayer(E, H, F, dropout=0.0, activation=activation,
                                       layer_norm_eps=eps, batch_first=True, norm_first=False)
    m = nn.TransformerEncoder(layer, layers).eval()  # no final norm (as tfm's default)
    x = torch.randn(N, L, E)  # src (N, L, E)
    return m, [x], (lambda x: m(x)), layers * flops_encoder_layer(N, L, E, F)


def setup_transformer(enc, dec, N, S, T, E, H, F):
    m = nn.Transformer(d_model=E, nhead=H, num_encoder_layers=enc, num_decoder_layers=dec,
                       dim_feedforward=F, dropout=0.0, activation="relu",
                       batch_first=True, norm_first=False).eval()
    src = torch.randn(N, S, E)  # (N, S, E)
    tgt = torch.randn(N, T, E)  # (N, T, E)
    mask = nn.Transformer.generate_square_subsequent_mask(T)  # (T, T) float, -inf above diag
    flop = enc * flops_encoder_layer(N, S, E, F) + dec * flops_decoder_layer(N, T, S, E, F)
    return m, [src, tgt, mask], (lambda src, tgt, mask: m(src, tgt, tgt_mask=mask)), flop


def setup(name):
    torch.manual_seed(1)
    if name == "transformer":
        return setup_transformer(6, 6, 8, 128, 128, 512, 8, 2048)
    if name == "mha":
        return setup_mha(8, 128, 512, 8)
    if name == "encoder6":
        return setup_encoder(6, 8, 128, 512, 8, 2048)
    if name == "mha_long":
        return setup_mha(1, 4096, 512, 8)
    if name == "bert384":
        return setup_encoder(6, 32, 128, 384, 12, 1536, "gelu", 1e-12)
    if name == "bert768":
        return setup_encoder(6, 8, 128, 768, 12, 3072, "gelu", 1e-12)
    raise ValueError(f"unknown case '{name}'")


def forward_thunk(name, mode):
    """The case's forward in the precision mode, and its FLOP count."""
    m, inputs, call, flop = setup(name)
    if mode == "bf16-weights":
        m.to(torch.bfloat16)
        inputs = [t.to(torch.bfloat16) for t in inputs]

    def fwd():
        with bc.autocast(mode):
            return call(*inputs)
    return fwd, flop


def run_case(name, args):
    fwd, flop = forward_thunk(name, args.mode)
    with torch.inference_mode():
        times, _ = bc.timed(fwd, args)
        if args.kernels:
            bc.kernel_line(args, name, fwd)
    med = statistics.median(times)
    bc.bench_line(args, name, f"{bc.stats_kv(times)} gflop={flop * 1e-9:.3f} "
                  f"gflops={flop * 1e-9 / med:.1f} mode={args.mode}")


def main():
    p = bc.parser(__doc__, min_reps=5, warmup=1)
    p.add_argument("--case", action="append", choices=CASES)
    bc.add_mode(p)
    args = bc.parse(p, min_warmup=1)
    bc.header(args, f" mode={args.mode}" + bc.mode_info())
    for name in args.case or CASES:
        run_case(name, args)


if __name__ == "__main__":
    main()
