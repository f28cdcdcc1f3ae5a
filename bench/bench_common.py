"""bench_common.py — what bench_torch.py, bench_train_torch.py and bench_decode_torch.py
share: the command line, the timing loop, the precision modes, the '#' header and BENCH
lines, the report of the kernels PyTorch ran, the synthetic ids, and the seq2seq model of
tfm's src/model/seq2seq.c built from stock modules.

Runs under torch 2.x (pip) and 1.13 (Debian's python3-torch): nothing here needs an
argument newer than 1.13; the callers check for the few that are (tgt_is_causal).
"""
import argparse
import contextlib
import math
import os
import re
import statistics
import sys
import tempfile
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


# ---- precision modes ------------------------------------------------------------------
# fp32           FP32 weights and inputs (PyTorch's default)
# autocast-bf16  FP32 weights and inputs under torch.autocast("cpu", dtype=torch.bfloat16):
#                PyTorch's mixed precision, the counterpart of tfm's compute type bf16
#                (linear layers and matmuls in bf16, LayerNorm and softmax in FP32)
# bf16-weights   module.to(torch.bfloat16) and bf16 inputs: everything in bf16 (forward only)
MODES = ["fp32", "autocast-bf16", "bf16-weights"]


def add_mode(p, modes=MODES):
    p.add_argument("--mode", choices=modes, default="fp32",
                   help="precision: " + ", ".join(modes) + " (default fp32)")
    p.add_argument("--kernels", action="store_true",
                   help="after each case, one more (untimed) call under the profiler and "
                        "oneDNN's verbose mode: a '# kernels' line says what PyTorch ran")


def autocast(mode):
    """The context a call of `mode` runs in: autocast for autocast-bf16, else nothing."""
    if mode == "autocast-bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def mode_info():
    """' key=value' pairs for the header: what the precision modes can use here."""
    cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "?")()
    try:
        bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        bf16 = "?"
    return (f" cpu_capability={cap} mkldnn={torch.backends.mkldnn.is_available()}"
            f"{'' if torch.backends.mkldnn.enabled else '(disabled)'} mkldnn_bf16={bf16}")


# ---- what PyTorch ran -------------------------------------------------------------------
def capture_fds(fn):
    """fn()'s result and what it (C++ included) wrote on file descriptors 1 and 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as f:
        saved = os.dup(1), os.dup(2)
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            out = fn()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
        f.seek(0)
        return out, f.read()


def kernel_line(args, name, fn, top=5):
    """One call of fn under torch.profiler and the verbose modes of oneDNN and MKL, summed
    up as '# kernels impl= case= mode= top=OP:SELF%,... onednn=KIND/IMPL:COUNT,...
    mkl=FUNCTION:COUNT,... [onednn_isa=]': the ops with the most self CPU time, the oneDNN
    primitives that ran (e.g. matmul/brg_matmul:avx512_core_bf16) and the MKL calls
    (SGEMM, ...). A product through oneDNN's plain gemm function (PyTorch's cpublas bf16
    gemm) shows in neither list, only as its op (aten::mm, ...)."""
    def run():
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), \
                    torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
                fn()
        return prof.key_averages()

    try:
        events, log = capture_fds(run)
    except Exception as e:  # an old torch without one of these: say so, go on
        print(f"# kernels impl={args.impl} case={name} mode={args.mode} unavailable: {e}", flush=True)
        return
    total = sum(e.self_cpu_time_total for e in events) or 1
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    prims, mkl, isa = {}, {}, ""  # oneDNN's isa line comes with its first verbose call only
    for line in log.splitlines():
        f = line.split(",")
        m = re.match(r"MKL_VERBOSE ([A-Z0-9_]+)\(", line)
        if m:
            mkl[m.group(1)] = mkl.get(m.group(1), 0) + 1
        elif len(f) > 6 and f[2] == "primitive" and f[3] == "exec":
            key = f"{f[5]}/{f[6]}"  # kind/implementation
            prims[key] = prims.get(key, 0) + 1
        elif len(f) > 4 and f[2] == "info" and f[4].startswith("isa:"):
            isa = f[4][4:].replace(" ", "_")
    counts = lambda d: ",".join(f"{k}:{v}" for k, v in sorted(d.items())) or "none"
    print(f"# kernels impl={args.impl} case={name} mode={args.mode} top=" +
          ",".join(f"{e.key}:{100 * e.self_cpu_time_total / total:.0f}%" for e in ops) +
          f" onednn={counts(prims)} mkl={counts(mkl)}" + (f" onednn_isa={isa}" if isa else ""),
          flush=True)


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
