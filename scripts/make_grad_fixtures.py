#!/usr/bin/env python3
"""Generate tfm's backward-pass test fixtures from PyTorch autograd.

    python3 scripts/make_grad_fixtures.py [--out tests/fixtures] [--only a,b] [-v]

Run it after scripts/make_fixtures.py: it reuses that script's cases (make_fixtures.CASES,
built by make_fixtures.define_cases(), each set up by make_fixtures.setup_case()) and reads
the <case>.model.safetensors / <case>.input.safetensors files make_fixtures wrote (asserting
they equal what the case definition regenerates). For every case it writes, under
tests/fixtures/:

    <case>.grad_output.safetensors    "output": the upstream gradient dL/d(output), same
                                      shape as the case's output, float32
                                      torch.randn(shape, generator=Generator().manual_seed(
                                          crc32("grad_output:" + case))),
                                      metadata torch_version
    <case>.expected_grad.safetensors  "grad.<input>" for every float input of the INPUT file
                                      (query key value / src / tgt memory / src tgt) and
                                      "grad.<param>" for every parameter under its state_dict
                                      name; metadata rtol, atol, source, torch_version

and the manifest grad_cases.txt, one line per case: "<case> <rtol> <atol>". The C test
checks |got - expected| <= atol + rtol * |expected| elementwise, as for forward_cases.txt.

What the gradients are: L = sum(output * grad_output), differentiated with
torch.autograd.grad with respect to the parameters and to every float input as a separate
leaf tensor -- query, key and value get one leaf each even when they hold the same data
(self-attention cases), so grad.query/grad.key/grad.value are the three partial
derivatives (their sum is the gradient of a shared input). Masks get no gradient.
attn_weights (need_weights=True) get no upstream gradient: only output is differentiated.
PyTorch is run in float32 on one thread, module in eval() mode with gradients enabled and
every parameter and input requiring grad (so none of PyTorch's no-grad fused fast paths
is taken; the modules are built with dropout 0). Its flags are the case's flags; in the
"tfm-only" cases (is_causal without a mask) PyTorch is given the explicit causal mask, as
in make_fixtures.

Checks, per case, before anything is written:
  * the float64 reference (scripts/reference.py with autograd, run from the files) equals
    PyTorch's float64 gradients to 1e-10 x the gradient scale, everywhere PyTorch's are
    finite (everywhere, in non-degenerate cases);
  * PyTorch in train() mode (dropout 0) gives the same gradients as in eval() mode;
  * self-attention cases: grad.query + grad.key + grad.value equals the gradient of one
    shared query=key=value tensor (PyTorch's packed in-projection path);
  * tolerance: scale = max(1, max |grad| over all of the case's float64 gradients);
    the tolerance is the smallest step of rtol = 1e-5, 2e-5, 5e-5, 1e-4 (atol = rtol x
    scale, two significant digits) for which PyTorch float32 is within a quarter of the
    tolerance of PyTorch float64 and reference.py float32 within half of it of PyTorch
    float32 (the same rule as make_fixtures.py for the forward pass).
Expected values are PyTorch's float32 gradients, except in the cases marked "degenerate"
by make_fixtures (some query row has every key masked) where PyTorch's gradients are not
finite: there they are reference.py's float32 gradients (tfm's semantics: that row's
attention output is zero, so no gradient flows through its softmax), with reference.py
float32 checked against reference.py float64, and against PyTorch float32 and float64
(and, for MultiheadAttention with need_weights, PyTorch's need_weights=False path, which
gives zeros rather than NaN there) everywhere PyTorch's gradients are finite.

Everything is seeded per case and computed on one thread, and the safetensors writer
sorts metadata keys, so re-running gives byte-identical files.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export_pytorch as ex  # noqa: E402
import make_fixtures as mf  # noqa: E402  (also installs its warning filters)
import reference as ref  # noqa: E402

REPO = os.path.dirname(HERE)
TOL_STEPS = mf.TOL_STEPS
FLOAT_INPUTS = ("query", "key", "value", "src", "tgt", "memory")


def grad_output_for(name: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(("grad_output:" + name).encode()))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32)


def _leaves(inputs: dict, dtype) -> dict:
    """Separate leaf tensors (requires_grad) for the float inputs, in `dtype`."""
    return {k: inputs[k].detach().clone().to(dtype).requires_grad_(True)
            for k in FLOAT_INPUTS if k in inputs}


def _masks(inputs: dict, dtype) -> dict:
    return {k: (v.to(dtype) if torch.is_floating_point(v) else v)
            for k, v in inputs.items() if k not in FLOAT_INPUTS}


def torch_grads(module, kind, inputs, flags, extra, gout, dtype, train=False,
                shared_qkv=False, flag_override=None):
    """PyTorch autograd gradients {"grad.<name>": tensor} of sum(output * gout)."""
    m = copy.deepcopy(module).to(dtype)
    m.train(train)
    for p in m.parameters():
        p.requires_grad_(True)
    leaves = _leaves(inputs, dtype)
    args = dict(leaves)
    if shared_qkv:
        q = leaves["query"]
        args = {"query": q, "key": q, "value": q}
        leaves = {"query": q}
    args.update(_masks(inputs, dtype))
    args.update(_masks(extra, dtype))
    fl = dict(flags)
    fl.update(flag_override or {})
    with torch.enable_grad():
        out, _ = ex.run_module(m, kind, args, fl)
        params = dict(m.named_parameters())
        names = list(leaves) + list(params)
        tensors = list(leaves.values()) + list(params.values())
        grads = torch.autograd.grad(out, tensors, grad_outputs=gout.to(dtype),
                                    allow_unused=True)
    res = {}
    for n, t, g in zip(names, tensors, grads):
        res["grad." + n] = torch.zeros_like(t).detach() if g is None else g.detach()
    return res, out.detach()


def ref_grads(sd, meta, inputs, flags, gout, dtype):
    """reference.py's autograd gradients of sum(output * gout), computed in `dtype`."""
    psd = {k: v.detach().clone().to(dtype).requires_grad_(True) for k, v in sd.items()}
    leaves = _leaves(inputs, dtype)
    fin = dict(leaves)
    fin.update(_masks(inputs, dtype))
    with torch.enable_grad():
        out = ref.forward(psd, meta, fin, flags, dtype=dtype)["output"]
        names = list(leaves) + list(psd)
        tensors = list(leaves.values()) + list(psd.values())
        grads = torch.autograd.grad(out, tensors, grad_outputs=gout.to(dtype),
                                    allow_unused=True)
    res = {}
    for n, t, g in zip(names, tensors, grads):
        res["grad." + n] = torch.zeros_like(t).detach() if g is None else g.detach()
    return res, out.detach()


def nonfinite(d: dict) -> int:
    return sum(int((~torch.isfinite(v)).sum()) for v in d.values())


def n_finite_compared(got: dict, exp: dict) -> int:
    return sum(int((torch.isfinite(got[k]) & torch.isfinite(exp[k])).sum()) for k in exp)


def run_case(c, outdir: str):
    module, kind, inputs, flags, extra = mf.setup_case(c)
    base = os.path.join(outdir, c.name)
    # the fixture files must be the ones make_fixtures writes for this case
    sd, meta = ex.load_safetensors(base + ".model.safetensors")
    fin, fflags = ex.load_safetensors(base + ".input.safetensors")
    fexp, _ = ex.load_safetensors(base + ".expected.safetensors")
    msd = module.state_dict()
    assert list(dict(module.named_parameters())) == list(msd), c.name
    assert set(sd) == set(msd) and all(torch.equal(sd[k], msd[k]) for k in sd), \
        f"{c.name}: model file differs from the case; run make_fixtures.py first"
    assert set(fin) == set(inputs) and all(torch.equal(fin[k], inputs[k]) for k in fin), \
        f"{c.name}: input file differs from the case; run make_fixtures.py first"
    gout = grad_output_for(c.name, fexp["output"].shape)

    t32, o32 = torch_grads(module, kind, fin, flags, extra, gout, torch.float32)
    t64, _ = torch_grads(module, kind, fin, flags, extra, gout, torch.float64)
    ttr, _ = torch_grads(module, kind, fin, flags, extra, gout, torch.float32, train=True)
    r32, _ = ref_grads(sd, meta, fin, fflags, gout, torch.float32)
    r64, _ = ref_grads(sd, meta, fin, fflags, gout, torch.float64)
    names = ["grad." + k for k in FLOAT_INPUTS if k in fin] + ["grad." + k for k in msd]
    r32 = {k: r32[k] for k in names}  # state_dict order (the MODEL file's is sorted)
    r64 = {k: r64[k] for k in names}
    for d in (t32, t64, ttr, r32, r64):
        assert list(d) == names, (c.name, list(d), names)

    info = {"nan_torch": nonfinite(t32), "numel": sum(v.numel() for v in t32.values())}
    scale = max(1.0, mf.maxabs(r64))
    # reference.py's gradients are PyTorch's (float64), wherever PyTorch's are finite
    e64 = mf.within(r64, t64, 0.0, 1e-10 * scale, finite_only=True)
    if e64 > 1:
        raise AssertionError(f"{c.name}: float64 reference grads differ from torch "
                             f"({e64:.3g} x 1e-10 x scale)")
    info["ref_vs_torch64"] = e64 * 1e-10
    info["compared64"] = n_finite_compared(r64, t64)
    if not c.degenerate and (nonfinite(t32) or nonfinite(t64) or nonfinite(r32)):
        raise AssertionError(f"{c.name}: unexpected non-finite gradients")
    if c.degenerate and nonfinite(r32) + nonfinite(r64):
        raise AssertionError(f"{c.name}: non-finite reference gradients")
    # train() mode with dropout 0 is the same computation
    tr = mf.within(ttr, t32, 0.0, 1e-12, finite_only=True)
    if tr > 1 or nonfinite(ttr) != nonfinite(t32):
        raise AssertionError(f"{c.name}: train-mode gradients differ from eval-mode ({tr:.3g})")
    extra_checks = []
    if c.self_attn:
        sh, _ = torch_grads(module, kind, fin, flags, extra, gout, torch.float64, shared_qkv=True)
        summed = dict(t64)
        summed["grad.query"] = t64["grad.query"] + t64["grad.key"] + t64["grad.value"]
        del summed["grad.key"], summed["grad.value"]
        e = mf.within(summed, sh, 0.0, 1e-10 * scale, finite_only=True)
        if e > 1:
            raise AssertionError(f"{c.name}: separate q/k/v grads do not sum to the shared grad")
    if c.degenerate and kind == "MultiheadAttention" and flags.get("need_weights"):
        # PyTorch's need_weights=False path gives zeros (not NaN) for fully masked rows
        nw32, _ = torch_grads(module, kind, fin, flags, extra, gout, torch.float32,
                              flag_override={"need_weights": False})
        nw64, _ = torch_grads(module, kind, fin, flags, extra, gout, torch.float64,
                              flag_override={"need_weights": False})
        e = mf.within(r64, nw64, 0.0, 1e-10 * scale, finite_only=True)
        if e > 1:
            raise AssertionError(f"{c.name}: reference differs from torch need_weights=False")
        info["nan_torch_noweights"] = nonfinite(nw32)
        info["compared64"] = max(info["compared64"], n_finite_compared(r64, nw64))
        extra_checks.append(nw32)

    chosen = None
    for step in TOL_STEPS:
        rtol = step
        atol = float(f"{step * scale:.2g}")
        if c.degenerate:
            checks = [mf.within(r32, r64, rtol, atol, 0.25),
                      mf.within(r32, t32, rtol, atol, 0.5, finite_only=True),
                      mf.within(t32, t64, rtol, atol, 0.25, finite_only=True)]
            checks += [mf.within(r32, x, rtol, atol, 0.5, finite_only=True) for x in extra_checks]
        else:
            checks = [mf.within(t32, t64, rtol, atol, 0.25),
                      mf.within(r32, t32, rtol, atol, 0.5)]
        if max(checks) <= 1.0:
            chosen = (rtol, atol)
            used = {"f32_vs_f64": checks[0] * 0.25, "ref32_vs_torch32": checks[1] * 0.5}
            break
    if chosen is None:
        raise AssertionError(f"{c.name}: float32 gradient error exceeds the largest tolerance")
    rtol, atol = chosen
    exp, source = t32, "torch"
    if c.degenerate:
        if nonfinite(t32) or mf.within(t32, r64, rtol, atol, 0.25) > 1.0:
            exp, source = r32, "reference"
    ex.save_safetensors({"output": gout}, base + ".grad_output.safetensors",
                        {"torch_version": torch.__version__})
    ex.save_safetensors({k: v.float().contiguous() for k, v in exp.items()},
                        base + ".expected_grad.safetensors",
                        {"rtol": f"{rtol:.3g}", "atol": f"{atol:.3g}", "source": source,
                         "torch_version": torch.__version__})
    back, _ = ex.load_safetensors(base + ".expected_grad.safetensors")
    assert set(back) == set(exp) and all(torch.equal(back[k], exp[k].float()) for k in exp)
    # how far an all-zero (forgotten) gradient tensor would be from passing: the largest
    # |expected| of each tensor in units of the tolerance at that element
    weakest = min(((v.abs() / (atol + rtol * v.abs())).max().item(), k)
                  for k, v in exp.items())
    info.update(used)
    info.update(rtol=rtol, atol=atol, source=source, scale=scale,
                err32=mf.max_abs_diff(t32, t64) / scale, weakest=weakest)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--only", help="comma-separated case names (for debugging; no manifest)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.backends.mha.set_fastpath_enabled(True)
    mf.define_cases()
    todo = mf.CASES
    if a.only:
        want = set(a.only.split(","))
        todo = [c for c in mf.CASES if c.name in want]
    lines = []
    total = 0
    worst = {"f32_vs_f64": 0.0, "ref32_vs_torch32": 0.0}
    weakest = (math.inf, "")
    kinds: dict = {}
    for c in todo:
        info = run_case(c, a.out)
        size = sum(os.path.getsize(os.path.join(a.out, f"{c.name}.{p}.safetensors"))
                   for p in ("grad_output", "expected_grad"))
        total += size
        lines.append(f"{c.name} {info['rtol']:.3g} {info['atol']:.3g}")
        for k in worst:
            worst[k] = max(worst[k], info[k])
        if info["weakest"][0] < weakest[0]:
            weakest = (info["weakest"][0], f"{c.name}:{info['weakest'][1]}")
        kinds[c.cfg["module"]] = kinds.get(c.cfg["module"], 0) + 1
        tag = " degenerate" if c.degenerate else ""
        tag += " tfm-only" if c.tfm_only else ""
        nan = ""
        if info["nan_torch"] or info.get("nan_torch_noweights"):
            nan = (f" torch-nonfinite={info['nan_torch']}/{info['numel']}"
                   + (f" (need_weights=False: {info['nan_torch_noweights']})"
                      if "nan_torch_noweights" in info else "")
                   + f" compared-finite={info['compared64']}")
        if a.verbose or tag or nan:
            print(f"  {c.name:45s} rtol={info['rtol']:.0e} atol={info['atol']:.2g} "
                  f"scale={info['scale']:.3g} f32err/scale={info['err32']:.2g} "
                  f"f32/tol={info['f32_vs_f64']:.2f} ref/tol={info['ref32_vs_torch32']:.2f} "
                  f"weakest={info['weakest'][0]:.3g}({info['weakest'][1]}) "
                  f"src={info['source']}{tag}{nan}")
    if not a.only:
        with open(os.path.join(a.out, "grad_cases.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        total += os.path.getsize(os.path.join(a.out, "grad_cases.txt"))
    print("cases per module: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    print(f"largest error as a fraction of the tolerance: PyTorch float32 vs float64 "
          f"{worst['f32_vs_f64']:.2f}, reference.py float32 vs PyTorch float32 "
          f"{worst['ref32_vs_torch32']:.2f}")
    print(f"smallest max|expected| of a gradient tensor, in tolerances: {weakest[0]:.3g} "
          f"({weakest[1]})")
    print(f"make_grad_fixtures: {len(todo)} cases, {total} bytes in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
