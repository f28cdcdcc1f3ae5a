#!/usr/bin/env python3
"""Generate the fixtures of tests/test_model_pieces.c (src/model/) from PyTorch.

    python3 scripts/make_model_fixtures.py [--out tests/fixtures/model]

Writes small safetensors files (all together well under 100 KB), each with metadata
torch_version and the constants the C test needs:

  embedding.safetensors  nn.Embedding (no padding_idx) · sqrt(E): W, ids (I64, PAD = 0
                         present and ids repeated), dout; out, dW (autograd)
  posenc.safetensors     pe: the paper's table in float64 rounded to float32 (what tfm
                         computes); pe_annotated: the Annotated Transformer's float32
                         computation, for the documented difference
  generator.safetensors  nn.Linear(E, V) + log_softmax: x, W, b, dlogp; logp, dx, dW, db
  ce.safetensors         CrossEntropyLoss(ignore_index=PAD, label_smoothing=eps) for eps
                         0 and 0.1 with PAD targets: logits, logp, targets; per eps the
                         loss (float32 and float64), count, correct, dlogits (autograd
                         through CrossEntropyLoss on the logits) and dlogp (autograd of the
                         same loss written on logp)
  tied.safetensors       embedding and generator sharing W, then CE (eps 0.1): ids,
                         targets, W, b; loss, dW (both uses), db

Everything is seeded and run on one thread; export_pytorch.save_safetensors writes the
files byte-for-byte reproducibly. Each value is checked against an independent
formulation (float64, or torch's own module) before it is written.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from export_pytorch import save_safetensors  # noqa: E402

REPO = os.path.dirname(HERE)
PAD = 0


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def meta(**kw) -> dict:
    m = {"torch_version": torch.__version__}
    m.update({k: str(v) for k, v in kw.items()})
    return m


def embedding(out_dir: str) -> None:
    g = gen(1)
    V, E, N, L = 11, 8, 2, 5
    W = torch.randn(V, E, generator=g)
    ids = torch.tensor([[3, 7, 3, 0, 0], [10, 1, 7, 3, 0]], dtype=torch.int64)  # PAD, repeats
    dout = torch.randn(N, L, E, generator=g)
    emb = torch.nn.Embedding(V, E)  # no padding_idx: PAD rows are ordinary rows
    with torch.no_grad():
        emb.weight.copy_(W)
    out = emb(ids) * math.sqrt(E)  # Annotated Transformer: self.lut(x) * math.sqrt(d_model)
    out.backward(dout)
    dW = emb.weight.grad
    # independent check in float64: scatter-add by hand
    want = torch.zeros(V, E, dtype=torch.float64)
    for n in range(N):
        for t in range(L):
            want[ids[n, t]] += dout[n, t].double() * math.sqrt(E)
    assert torch.allclose(dW.double(), want, rtol=1e-6, atol=1e-6)
    assert dW[PAD].abs().sum() > 0  # PAD gets gradient like any other id
    save_safetensors({"W": W, "ids": ids, "dout": dout, "out": out.detach(), "dW": dW},
                     os.path.join(out_dir, "embedding.safetensors"), meta(pad=PAD))


def posenc(out_dir: str) -> None:
    P, E = 100, 16
    # the paper: PE[pos, 2i] = sin(pos / 10000^(2i/E)), PE[pos, 2i+1] = cos(...), in float64
    pos = torch.arange(P, dtype=torch.float64).unsqueeze(1)
    inv = 1.0 / torch.pow(torch.tensor(10000.0, dtype=torch.float64),
                          torch.arange(0, E, 2, dtype=torch.float64) / E)
    pe64 = torch.zeros(P, E, dtype=torch.float64)
    pe64[:, 0::2] = torch.sin(pos * inv)
    pe64[:, 1::2] = torch.cos(pos * inv)
    pe = pe64.float()
    # the Annotated Transformer's PositionalEncoding, verbatim (float32)
    pa = torch.zeros(P, E)
    position = torch.arange(0, P).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, E, 2) * -(math.log(10000.0) / E))
    pa[:, 0::2] = torch.sin(position * div_term)
    pa[:, 1::2] = torch.cos(position * div_term)
    diff = (pa.double() - pe64).abs().max().item()
    assert diff < 1e-4, diff
    save_safetensors({"pe": pe, "pe_annotated": pa}, os.path.join(out_dir, "posenc.safetensors"),
                     meta(max_len=P, d_model=E, annotated_max_abs_diff=f"{diff:.3g}"))


def generator(out_dir: str) -> None:
    g = gen(2)
    R, E, V = 6, 8, 13
    lin = torch.nn.Linear(E, V)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(V, E, generator=g) * 0.5)
        lin.bias.copy_(torch.randn(V, generator=g) * 0.5)
    x = torch.randn(R, E, generator=g).requires_grad_()
    dlogp = torch.randn(R, V, generator=g)
    logp = F.log_softmax(lin(x), dim=-1)
    logp.backward(dlogp)
    # float64 check
    x64, W64, b64 = x.detach().double(), lin.weight.detach().double(), lin.bias.detach().double()
    lp64 = F.log_softmax(x64 @ W64.T + b64, dim=-1)
    assert torch.allclose(logp.detach().double(), lp64, rtol=1e-5, atol=1e-6)
    dz = dlogp.double() - lp64.exp() * dlogp.double().sum(-1, keepdim=True)
    assert torch.allclose(x.grad.double(), dz @ W64, rtol=1e-5, atol=1e-5)
    assert torch.allclose(lin.weight.grad.double(), dz.T @ x64, rtol=1e-5, atol=1e-5)
    save_safetensors({"x": x.detach(), "W": lin.weight.detach(), "b": lin.bias.detach(),
                      "dlogp": dlogp, "logp": logp.detach(), "dx": x.grad,
                      "dW": lin.weight.grad, "db": lin.bias.grad},
                     os.path.join(out_dir, "generator.safetensors"), meta())


def smoothed_ce_on_logp(logp: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """tfm's formula, written on log-probabilities: mean over non-PAD rows of
    (1 - eps) * -logp[y] + eps * mean_c(-logp[c])."""
    keep = y != PAD
    nll = -logp[keep].gather(1, y[keep].unsqueeze(1)).squeeze(1)
    smooth = -logp[keep].mean(-1)
    return ((1 - eps) * nll + eps * smooth).sum() / keep.sum()


def ce(out_dir: str) -> None:
    g = gen(3)
    R, V = 10, 13
    logits = torch.randn(R, V, generator=g) * 2.0
    targets = torch.randint(1, V, (R,), generator=g)
    targets[[2, 5, 9]] = PAD  # ignored rows
    targets[0] = int(logits[0].argmax())  # at least one correct prediction
    logp = F.log_softmax(logits, dim=-1)
    t = {"logits": logits, "logp": logp, "targets": targets}
    m = meta(pad=PAD)
    for tag, eps in (("eps0", 0.0), ("eps01", 0.1)):
        z = logits.clone().requires_grad_()
        loss = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=eps)(z, targets)
        loss.backward()
        lp = logp.clone().requires_grad_()
        loss_lp = smoothed_ce_on_logp(lp, targets, eps)
        loss_lp.backward()
        loss64 = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=eps)(
            logits.double(), targets)
        assert abs(loss_lp.item() - loss.item()) < 1e-6 * abs(loss.item()) + 1e-7
        assert abs(loss64.item() - loss.item()) < 1e-5
        # CE on the log-probabilities themselves equals CE on the logits (idempotence)
        assert abs(F.cross_entropy(logp, targets, ignore_index=PAD, label_smoothing=eps).item()
                   - loss.item()) < 1e-5
        keep = targets != PAD
        count = int(keep.sum())
        correct = int((logits.argmax(-1) == targets)[keep].sum())
        t[f"loss_{tag}"] = loss.detach().reshape(1)
        t[f"loss64_{tag}"] = loss64.detach().reshape(1)
        t[f"dlogits_{tag}"] = z.grad
        t[f"dlogp_{tag}"] = lp.grad
        m[f"count_{tag}"] = str(count)
        m[f"correct_{tag}"] = str(correct)
        m[f"eps_{tag}"] = str(eps)
    save_safetensors(t, os.path.join(out_dir, "ce.safetensors"), m)


def tied(out_dir: str) -> None:
    g = gen(4)
    V, E, R, eps = 9, 6, 7, 0.1
    W = (torch.randn(V, E, generator=g) * 0.4).requires_grad_()
    b = (torch.randn(V, generator=g) * 0.4).requires_grad_()
    ids = torch.tensor([4, 0, 2, 4, 8, 1, 0], dtype=torch.int64)
    targets = torch.tensor([2, 4, 0, 8, 1, 0, 3], dtype=torch.int64)
    x = F.embedding(ids, W) * math.sqrt(E)  # the embedding ...
    logits = x @ W.T + b  # ... and the generator share W ("Attention Is All You Need" 3.4)
    loss = F.cross_entropy(logits, targets, ignore_index=PAD, label_smoothing=eps)
    loss.backward()
    save_safetensors({"W": W.detach(), "b": b.detach(), "ids": ids, "targets": targets,
                      "loss": loss.detach().reshape(1), "dW": W.grad, "db": b.grad},
                     os.path.join(out_dir, "tied.safetensors"), meta(pad=PAD, eps=eps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "model"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for make in (embedding, posenc, generator, ce, tied):
        make(args.out)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    assert total < 100_000, total
    print(f"wrote {args.out} ({total} bytes, torch {torch.__version__})")


if __name__ == "__main__":
    main()
