#!/usr/bin/env python3
"""bench_decode_torch.py — the greedy-decoding cases of bench_decode.c with PyTorch.

Usage: bench_decode_torch.py [--case NAME]... [--min-time SEC] [--min-reps R]
                             [--max-reps R] [--warmup W] [--budget SEC]
                             [--single-above SEC] [--impl NAME]
  defaults as bench_decode.c: every case, min-time 2 s, min-reps 3, max-reps 10000,
  warm-up 1 decode, budget 180 s, single-above 10 s; impl torch. Works with torch 2.x
  and 1.13.

The model is bench_train_torch.py's (bench_common.Seq2Seq: the one tfm's
src/model/seq2seq.c implements, from stock modules), random init, max_len 520, in eval
mode (no dropout); the generator's logits go through log_softmax.

One decode = PyTorch's usual nn.Transformer greedy loop (the PyTorch translation
tutorial's / the Annotated Transformer's greedy_decode), in eval mode under
torch.inference_mode():
  memory = model.transformer.encoder(x(src))            encode once
  ys = BOS (N, 1); L times:
      y = model.transformer.decoder(x(ys), memory, tgt_mask=causal(len(ys)))
                                                         the WHOLE prefix, every step
      logp = generator(y[:, -1]); next = argmax(logp); ys = cat(ys, next)
EOS is ignored: every row decodes exactly L tokens. No key-padding masks (the sources
have no padding). The encoder may take PyTorch's inference fast path (eval,
batch_first, no grad); the decoder has none.

Cases, sources and timing (probe, budget, single repetition above single-above s,
median of the timed decodes): see bench_decode.c. The probe here times the encoder and
one decoder pass + generator over a prefix of length 1 and of length L (after a
warm-up probe at L = 8, which pays for lazy initialisation):
    est = encode + L · (step(1) + step(L)) / 2.

Output: '#' lines (torch version, threads, BLAS, environment), then one line per case
in bench_decode's format (impl= the --impl name):
  BENCH impl=torch case=demo-32 model=demo L=32 S=32 batch=8 reps=57 median_ms=12.3
        min_ms=12.0 tokens=256 tok_s=20813 est_s=0.012 skipped=0 checksum=123
        start_ms=1.2 step_first_ms=0.1 step_last_ms=0.2
(the probe's times: encoder; decoder + generator over 1 token; over L tokens)
Legend: N batch (8), S source length (= L), L target length, E d_model, H heads,
F feed-forward width, V vocabulary (259).
"""
import statistics
import time

import torch
from torch import nn

import bench_common as bc
from bench_common import BOS, BYTE0

BATCH, MAX_LEN = 8, 520

# name: (E, H, enc, dec, F) — identical to MODELS in bench_decode.c
MODELS = {
    "demo": (64, 4, 2, 2, 256),
    "base": (512, 8, 6, 6, 2048),
}
LENGTHS = (32, 128, 256, 512)
CASES = {f"{m}-{L}": (m, L) for m in MODELS for L in LENGTHS}


class Decoder(bc.Seq2Seq):
    def encode(self, src):  # (N, S) -> memory (N, S, E)
        return self.transformer.encoder(self.embed_pos(src))

    def decode_last(self, ys, memory):  # ys (N, t) -> logp of the next token (N, V)
        mask = nn.Transformer.generate_square_subsequent_mask(ys.shape[1])  # (t, t)
        y = self.transformer.decoder(self.embed_pos(ys), memory, tgt_mask=mask)  # (N, t, E)
        return torch.log_softmax(self.generator(y[:, -1]), dim=-1)


def make_src(N, S):  # bench_decode.c's LCG, seed 12345
    return torch.tensor(bc.byte_ids(bc.lcg(12345), N * S), dtype=torch.long).view(N, S)


def greedy(model, src, L):  # the whole decode; returns the generated ids (N, L)
    memory = model.encode(src)
    ys = torch.full((src.shape[0], 1), BOS, dtype=torch.long)
    for _ in range(L):
        nxt = model.decode_last(ys, memory).argmax(dim=-1, keepdim=True)  # (N, 1)
        ys = torch.cat([ys, nxt], dim=1)
    return ys[:, 1:]


def probe(model, src, L):
    t0 = time.perf_counter()
    memory = model.encode(src)
    t_enc = time.perf_counter() - t0
    steps = []
    for t in (1, L):
        ys = torch.full((src.shape[0], t), BOS, dtype=torch.long)
        ys[:, 1:] = BYTE0 + torch.arange(t - 1) % 256
        t0 = time.perf_counter()
        model.decode_last(ys, memory).argmax(dim=-1)
        steps.append(time.perf_counter() - t0)
    est = t_enc + L * 0.5 * (steps[0] + steps[1])
    return est, (f"start_ms={1e3 * t_enc:.3f} step_first_ms={1e3 * steps[0]:.3f} "
                 f"step_last_ms={1e3 * steps[1]:.3f}")


def checksum(ids):  # FNV-1a over the ids, as bench_decode.c
    h, M = 1469598103934665603, (1 << 64) - 1
    for v in ids.reshape(-1).tolist():
        h = ((h ^ v) * 1099511628211) & M
    return h


def run_case(name, args):
    mname, L = CASES[name]
    E, H, enc, dec, Fw = MODELS[mname]
    S = L
    torch.manual_seed(1)
    model = Decoder(E, H, enc, dec, Fw, MAX_LEN).eval()
    src = make_src(BATCH, S)
    head = f"model={mname} L={L} S={S} batch={BATCH}"
    with torch.inference_mode():
        probe(model, src, min(L, 8))  # the first calls pay for lazy initialisation
        est, probe_kv = probe(model, src, L)
        if est > args.budget:
            print(f"# torch {name} skipped: estimated {est:.0f} s > budget {args.budget:.0f} s")
            bc.bench_line(args, name, f"{head} reps=0 est_s={est:.3f} skipped=1 {probe_kv}")
            return
        single = est > args.single_above
        if not single:
            for _ in range(args.warmup):
                greedy(model, src, L)
        min_reps, max_reps = (1, 1) if single else (args.min_reps, args.max_reps)
        ts, out = bc.time_loop(lambda: greedy(model, src, L), args.min_time, min_reps, max_reps)
    med = statistics.median(ts)
    tokens = BATCH * L
    bc.bench_line(args, name, f"{head} {bc.stats_kv(ts)} tokens={tokens} "
                  f"tok_s={tokens / med:.1f} est_s={est:.3f} skipped=0 "
                  f"checksum={checksum(out)} {probe_kv}")


def main():
    p = bc.parser(__doc__, min_reps=3, warmup=1)
    p.add_argument("--case", action="append",
                   help="MODEL-L (" + " ".join(CASES) + ") or MODEL (all its lengths)")
    p.add_argument("--budget", type=float, default=180.0)
    p.add_argument("--single-above", type=float, default=10.0)
    args = bc.parse(p)
    names = []
    for c in args.case or list(CASES):
        sel = [n for n in CASES if n == c or CASES[n][0] == c]
        if not sel:
            p.error(f"unknown case '{c}' (choose from {' '.join(CASES)} or a model name)")
        names += sel
    bc.header(args, f" batch={BATCH} S=L max_len={MAX_LEN} budget={args.budget:g}"
              f" single_above={args.single_above:g}", config=False)
    for name in names:
        run_case(name, args)


if __name__ == "__main__":
    main()
