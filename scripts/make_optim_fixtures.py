#!/usr/bin/env python3
"""Generate the optimizer, clipping and schedule fixtures of tests/test_optim.c.

    python3 scripts/make_optim_fixtures.py [--out tests/fixtures/optim]

Writes, under the output directory (all small; ~75 KB in total):

  inputs.safetensors      params0 (P,) and grads (STEPS, P): three random tensors of
                          SHAPES flattened in order into one block, as a module's
                          parameters are; each step's gradient has its own random
                          scale, so that amsgrad's running maximum matters.
                          __metadata__: cases (comma-separated), shapes, steps.
  <case>.safetensors      one torch.optim run (single-tensor path, foreach=False, float32)
                          from params0 with grads[s] and lr = lrs[s] at step s:
                            lrs (STEPS,) F64      the lr of each step (Python floats)
                            params (STEPS, P)     the parameters after each step
                            state.<name> (P,)     the final optimizer state, flattened
                          __metadata__: optimizer (torch's class name), its constructor
                          arguments under torch's names (betas as beta1/beta2), step
                          (torch's state["step"] at the end), state names, torch_version.
  clip.safetensors        torch.nn.utils.clip_grad_norm_ (norm_type=2) of one gradient
                          block: grads (P,), and for a clipping case, a non-clipping one
                          and a tiny one (the input grads · <case>.scale, where the 1e-6
                          in torch's clip_coef matters) <case>.grads (P,) after clipping
                          and <case>.total_norm (1,) (float32, as torch returns it);
                          <case>.max_norm and <case>.scale in metadata.
  schedules.safetensors   learning rates, F64:
                            noam.steps, noam.lr: LambdaLR(Adam(lr=1), rate) from the
                              Annotated Transformer, stepped from last_epoch 0;
                            noam_far.steps, noam_far.lr: rate() itself at scattered steps;
                            cosine.lr: CosineAnnealingLR(T_max, eta_min) stepped from
                              last_epoch 0 to T_max (torch's recursive form, checked
                              here against its closed form).
                          Their arguments are in __metadata__.

Everything is seeded and computed on one thread, and files are written with the sorted-
metadata writer of export_pytorch.py (read back here through safetensors' own API), so
re-running gives identical files.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export_pytorch as ex  # noqa: E402

REPO = os.path.dirname(HERE)
SHAPES = [(6, 12), (12,), (3, 12)]  # P = 120
STEPS = 12
SEED = 20240611


def warm_then_decay(base: float) -> list[float]:
    """A different lr at every step, rising then falling, as a schedule would give."""
    return [base * min((s + 1) / 4.0, math.sqrt(4.0 / (s + 1))) for s in range(STEPS)]


def const(lr: float) -> list[float]:
    return [lr] * STEPS


# name, torch class, constructor arguments (lr aside), lrs per step
CASES = [
    ("sgd_plain", torch.optim.SGD, {}, const(0.1)),
    ("sgd_momentum", torch.optim.SGD,
     dict(momentum=0.9, dampening=0.1, weight_decay=0.01), warm_then_decay(0.1)),
    ("sgd_nesterov", torch.optim.SGD,
     dict(momentum=0.8, nesterov=True, weight_decay=1e-3, maximize=True), warm_then_decay(0.05)),
    ("adam_default", torch.optim.Adam, {}, const(1e-2)),
    ("adam_weight_decay", torch.optim.Adam, dict(weight_decay=0.1), warm_then_decay(2e-2)),
    ("adam_amsgrad", torch.optim.Adam, dict(amsgrad=True), warm_then_decay(2e-2)),
    ("adamw_default", torch.optim.AdamW, {}, warm_then_decay(2e-2)),
    # beta1 < 0.5 takes the other branch of ATen's lerp (weight 1 - beta1 >= 0.5); eps
    # large enough against sqrt(exp_avg_sq) ~ 1 to matter beyond the test's tolerance
    ("adamw_custom", torch.optim.AdamW,
     dict(betas=(0.4, 0.95), eps=1e-3, weight_decay=0.05), warm_then_decay(3e-2)),
]

STATE_NAMES = {
    "SGD": lambda kw: ["momentum_buffer"] if kw.get("momentum", 0) != 0 else [],
    "Adam": lambda kw: ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if kw.get("amsgrad") else []),
}
STATE_NAMES["AdamW"] = STATE_NAMES["Adam"]


def make_inputs(gen: torch.Generator):
    n = sum(math.prod(s) for s in SHAPES)
    params0 = torch.randn(n, generator=gen)
    scales = torch.exp(0.8 * torch.randn(STEPS, 1, generator=gen))
    grads = torch.randn(STEPS, n, generator=gen) * scales
    return params0, grads


def split(flat: torch.Tensor) -> list[torch.Tensor]:
    out, off = [], 0
    for s in SHAPES:
        k = math.prod(s)
        out.append(flat[off:off + k].view(s))
        off += k
    return out


def flat(ts) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in ts])


def run_case(cls, kwargs: dict, lrs: list[float], params0, grads):
    params = [torch.nn.Parameter(t.clone()) for t in split(params0)]
    opt = cls(params, lr=lrs[0], foreach=False, **kwargs)
    traj = []
    for s in range(STEPS):
        for p, g in zip(params, split(grads[s])):
            p.grad = g.clone()
        for group in opt.param_groups:
            group["lr"] = lrs[s]
        opt.step()
        traj.append(flat(params))
    return opt, params, torch.stack(traj)


def case_metadata(name: str, cls, kwargs: dict, opt, params) -> dict:
    group = opt.param_groups[0]
    kind = cls.__name__
    meta = {"optimizer": kind, "weight_decay": repr(float(group["weight_decay"])),
            "maximize": "true" if group["maximize"] else "false",
            "torch_version": torch.__version__}
    if kind == "SGD":
        meta.update(momentum=repr(float(group["momentum"])),
                    dampening=repr(float(group["dampening"])),
                    nesterov="true" if group["nesterov"] else "false", step=str(STEPS))
    else:
        b1, b2 = group["betas"]
        meta.update(beta1=repr(float(b1)), beta2=repr(float(b2)), eps=repr(float(group["eps"])),
                    amsgrad="true" if group["amsgrad"] else "false",
                    step=str(int(opt.state[params[0]]["step"].item())))
    meta["states"] = ",".join(STATE_NAMES[kind](kwargs))
    return meta


def rate(step, model_size, factor, warmup):
    """The Annotated Transformer's learning-rate function, verbatim."""
    if step == 0:
        step = 1
    return factor * (
        model_size ** (-0.5) * min(step ** (-0.5), step * warmup ** (-1.5))
    )


def make_schedules(path: str) -> None:
    warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\)` before.*")
    warnings.filterwarnings("ignore", message=".*optimizer.step\\(\\)` before.*")
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    # Noam through LambdaLR as the Annotated Transformer drives it (base lr 1: lr = rate).
    d_model, factor, warmup, nsteps = 512, 1.0, 40, 121
    opt = torch.optim.Adam(dummy, lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda=lambda step: rate(step, d_model, factor, warmup))
    noam = []
    for _ in range(nsteps):
        noam.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # rate() at scattered steps, with the paper's warmup of 4000
    far_dm, far_factor, far_warmup = 64, 2.0, 4000
    far_steps = [0, 1, 2, 100, 3999, 4000, 4001, 10000, 123456, 10**7]
    far = [rate(s, far_dm, far_factor, far_warmup) for s in far_steps]
    # CosineAnnealingLR, recursive form, against its closed form
    base, eta_min, t_max = 0.01, 1e-4, 50
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
    cosine = []
    for t in range(t_max + 1):
        lr = opt.param_groups[0]["lr"]
        closed = eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2
        assert abs(lr - closed) <= 1e-12 * base, (t, lr, closed)
        cosine.append(lr)
        opt.step()
        sched.step()
    f64 = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    ex.save_safetensors(
        {"noam.steps": f64(list(range(nsteps))), "noam.lr": f64(noam),
         "noam_far.steps": f64(far_steps), "noam_far.lr": f64(far), "cosine.lr": f64(cosine)},
        path,
        {"noam.d_model": str(d_model), "noam.factor": repr(factor), "noam.warmup": str(warmup),
         "noam_far.d_model": str(far_dm), "noam_far.factor": repr(far_factor),
         "noam_far.warmup": str(far_warmup), "cosine.base_lr": repr(base),
         "cosine.eta_min": repr(eta_min), "cosine.T_max": str(t_max),
         "torch_version": torch.__version__})


def make_clip(path: str, gen: torch.Generator) -> None:
    n = sum(math.prod(s) for s in SHAPES)
    grads = 0.7 * torch.randn(n, generator=gen)
    tensors = {"grads": grads}
    meta = {"torch_version": torch.__version__}
    # "tiny": norm ~8e-7 below max_norm 1e-6, yet clipped by ~0.56: the 1e-6 added to
    # the norm in clip_coef = max_norm / (total_norm + 1e-6) dominates.
    for case, max_norm, scale in (("clip", 1.5, 1.0), ("noclip", 100.0, 1.0),
                                  ("tiny", 1e-6, 1e-7)):
        params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
        for p, g in zip(params, split(grads * scale)):
            p.grad = g.clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=2.0)
        assert (total.item() > max_norm) == (case == "clip"), (case, total.item())
        meta[f"{case}.scale"] = repr(scale)
        tensors[f"{case}.grads"] = flat(p.grad for p in params)
        tensors[f"{case}.total_norm"] = total.reshape(1).to(torch.float32)
        meta[f"{case}.max_norm"] = repr(max_norm)
    ex.save_safetensors(tensors, path, meta)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "optim"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)

    params0, grads = make_inputs(gen)
    ex.save_safetensors(
        {"params0": params0, "grads": grads}, os.path.join(args.out, "inputs.safetensors"),
        {"cases": ",".join(c[0] for c in CASES),
         "shapes": ";".join("x".join(map(str, s)) for s in SHAPES), "steps": str(STEPS),
         "torch_version": torch.__version__})
    for name, cls, kwargs, lrs in CASES:
        opt, params, traj = run_case(cls, kwargs, lrs, params0, grads)
        meta = case_metadata(name, cls, kwargs, opt, params)
        tensors = {"lrs": torch.tensor(lrs, dtype=torch.float64), "params": traj}
        for sname in meta["states"].split(",") if meta["states"] else []:
            tensors[f"state.{sname}"] = flat(opt.state[p][sname] for p in params)
        path = os.path.join(args.out, f"{name}.safetensors")
        ex.save_safetensors(tensors, path, meta)
        back, back_meta = ex.load_safetensors(path)  # through safetensors' own reader
        assert torch.equal(back["params"], traj) and back_meta == meta, name
        print(f"{name:18s} {cls.__name__:5s} |Δp| max {float((traj[-1] - params0).abs().max()):.4f}")
    make_clip(os.path.join(args.out, "clip.safetensors"), gen)
    make_schedules(os.path.join(args.out, "schedules.safetensors"))
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out} ({total / 1024:.1f} KB), torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
