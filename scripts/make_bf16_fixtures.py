#!/usr/bin/env python3
"""Generate the fixtures of tfm's bf16 accuracy test (tests/test_bf16.c) from PyTorch.

    python3 scripts/make_bf16_fixtures.py [--out tests/fixtures] [--only a,b] [-v]

Run it after scripts/make_fixtures.py and scripts/make_grad_fixtures.py (it reads their
files; regenerate those first if their cases changed). The criterion it serves: tfm with
TFM_COMPUTE_BF16 (`tfm forward --compute-type bf16`) is, on every module kind and
option, within 2x of PyTorch's own CPU-autocast-bf16 error against a float64
reference, for the forward outputs and for every gradient.

Regenerate (all three, in this order; make_fixtures.py deletes model/input files of
cases it does not know, which includes this script's bf16_* cases):

    python3 scripts/make_fixtures.py && python3 scripts/make_grad_fixtures.py \
        && python3 scripts/make_bf16_fixtures.py

Cases: the subset BF16_CASES of make_fixtures' cases (see the list for what each
covers), which reuse <case>.model.safetensors, <case>.input.safetensors and
<case>.grad_output.safetensors (asserted equal to what the case definition
regenerates), plus GELU_VARIANTS, new cases bf16_<case>_gelu that write those three
files themselves. ReLU: a ReLU network's gradient jumps where a pre-activation crosses 0;
bf16 noise on a pre-activation within a few ulps of 0 flips that unit's gradient, an
O(1) change that PyTorch and tfm each make or not by luck (measured: nearly every ReLU
case of make_fixtures has a unit within 1-3 "bf16 noises" of the kink, and the emulation
below then misses by up to 25x). So a ReLU case is "fwd" only (its forward pass is
continuous and is tested) unless no pre-activation is within KINK_MARGIN = 4 noises of 0;
the gradients of those configurations are tested on their gelu variants. Each case adds
one file

    <case>.bf16_ref.safetensors
        "output", "attn_weights" (need_weights only): the float64 reference of the forward
            pass (evaluation mode);
        "grad.<input>" for every float input, "grad.<param>" for every parameter (state_dict
            names): the float64 reference gradients of L = sum(output * grad_output), as in
            make_grad_fixtures.py (query/key/value are separate leaves);
        all stored as F32: F32 rounding of the reference is ~6e-8 relative, against
            bf16's unit roundoff 2^-9 = 2e-3, so it does not move the errors measured
            (nor the FP32 sanity check, whose errors are ~1e-6);
        __metadata__: "err:<tensor>" = "torch_l2 torch_max den_l2 den_max emu_l2 emu_max"
            for every tensor (the "columns" key says so), plus metric, torch_source,
            torch_version;

and the manifest bf16_cases.txt, one line per case: "<case> fwd|fwd+grad" (grad: the
file holds the gradients and the test checks them).

The metric, per tensor y of n elements with float64 reference r:
    l2  = ||y - r||_2    / den_l2,  den_l2  = max(||r||_2,  ALPHA * sqrt(n) * s)
    max = max_i |y - r|  / den_max, den_max = max(max_i |r|, ALPHA * s)
where s is the RMS of the tensor's group in the reference: a forward tensor is its own
group, all gradients of a case form one group. A tensor far below its group's scale
(< ALPHA = 1%: a gradient that is ~0, e.g. one made of near-cancelling terms) is then
measured against 1% of the group's scale instead of against its own ~0 norm, which would
make the relative error meaningless noise. l2 is the criterion; max is a second, looser
check (a few elements of a small tensor fluctuate more than its norm).

PyTorch's error ("torch_*"): the module in FP32 run under
torch.autocast("cpu", dtype=torch.bfloat16), with autograd enabled (PyTorch's regular
path) -- forward outputs, and the gradients of sum(output.float() * grad_output) with
respect to every float input and every parameter. Fallbacks:
  * PyTorch's fused fast paths (torch.no_grad() in eval mode) are not used: their guard
    torch.is_autocast_enabled() looks at CUDA only, so under CPU autocast they run
    _native_multi_head_attention / _transformer_encoder_layer_fwd entirely in bf16
    (softmax and LayerNorm included), which is not the policy being compared;
  * where the module's autocast results are not finite (the "degenerate" cases with a
    fully masked query row: PyTorch gives NaN, tfm defines the row's attention as zero),
    PyTorch's error is that of scripts/reference.py run under the same autocast
    (torch_source "reference-autocast"); reference.py is plain torch ops, so autocast
    applies its bf16 policy to the same matmuls, with tfm's rule for dead rows. Its
    linear layers add the bias in FP32 and its softmax sees FP32 scores, so it rounds a
    little less than the module does: a stricter yardstick for tfm, not a looser one.
The float64 reference is the module itself in float64 (on float64 copies of the same
weights and inputs), except in the degenerate cases, where it is scripts/reference.py in
float64 (tfm's documented rule for fully masked rows); the two are checked to agree to
1e-10 x scale wherever PyTorch is finite.

Sanity checks, per case, before anything is written:
  * the case is not degenerate in scale: the float64 output has RMS in [0.2, 5];
  * PyTorch's autocast error is that of bf16 (l2 between 1e-4 and 0.1 for every tensor);
  * an emulation of tfm's documented bf16 semantics ("emu_*": reference.py with every
    matmul's operands rounded to bf16, round to nearest even, products and their
    backward products accumulated in float64 and returned as FP32; everything else
    FP32) meets the C test's criterion (l2 <= 2 x torch_l2 + FLOOR and max <= 4 x
    torch_max + FLOOR) on every tensor; a case where it does not cannot tell a correct
    tfm from a wrong one. Forward misses are an error; a gradient miss drops the case's
    gradients (it becomes "fwd"), and a new (variant) case is redrawn under the next name
    (<name>_b, ...: the seed is crc32 of the name) up to VARIANT_DRAWS times. This is a
    selection on noise and says so: at the time of writing it dropped the gradients of
    dec_stack2_batch_first_gelu_norm_first (emulation 2.5x PyTorch on one bias) and
    redrew bf16_tf_full_memory_kpm_gelu once. With tiny models the errors of a case are
    few, correlated draws: the emulation's l2 is 0.4-1.7x PyTorch's, per tensor.

Everything is seeded (inputs and models by make_fixtures; nothing here draws random
numbers) and computed on one thread, and the safetensors writer sorts metadata keys, so
re-running gives byte-identical files.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export_pytorch as ex  # noqa: E402
import make_fixtures as mf  # noqa: E402  (also installs its warning filters)
import make_grad_fixtures as mg  # noqa: E402
import reference as ref  # noqa: E402

REPO = os.path.dirname(HERE)
ALPHA = 1e-2   # a tensor below 1% of its group's RMS is measured against that 1%
FLOOR = 1e-4   # absolute slack of the C test's comparison (see tests/test_bf16.c)
L2_FACTOR = 2.0  # the criterion: l2_tfm <= 2 x l2_torch + FLOOR ...
MAX_FACTOR = 4.0  # ... and max_tfm <= 4 x max_torch + FLOOR
VARIANT_DRAWS = 4  # draws of a new case (see main)
KINK_MARGIN = 4.0  # gradients of a ReLU case only if no pre-activation is this near 0
DEBUG_NOCHECK = os.environ.get("BF16_DEBUG") == "1"  # report, do not assert the emulation
COLUMNS = "torch_l2 torch_max den_l2 den_max emu_l2 emu_max"

# (case, what it covers). Every module kind, every option and mask kind of make_fixtures.
BF16_CASES = [
    # MultiheadAttention
    ("mha_self_weights", "self-attention, need_weights averaged"),
    ("mha_cross", "cross-attention L != S, need_weights"),
    ("mha_weights_per_head", "need_weights per head (average_attn_weights=False)"),
    ("mha_kdim_vdim", "kdim and vdim (separate q/k/v projections)"),
    ("mha_vdim_only_batch_first", "vdim only, batch_first, weights per head"),
    ("mha_bias_kv_zero_attn", "add_bias_kv + add_zero_attn, weights per head"),
    ("mha_no_bias_bias_kv", "bias=False with add_bias_kv"),
    ("mha_batch_first_self", "batch_first self-attention, no weights"),
    ("mha_masks_bool", "bool key_padding_mask + bool attn_mask"),
    ("mha_masks_float", "float key_padding_mask + float attn_mask"),
    ("mha_kpm_float_inf", "float key_padding_mask with -inf"),
    ("mha_attn_mask_float_3d", "(N*H, L, S) float attn_mask"),
    ("mha_bias_kv_zero_attn_masks_3d", "bias_kv + zero_attn + (N*H, L, S) bool mask + kpm"),
    ("mha_is_causal_kpm", "is_causal with causal mask + kpm, batch_first"),
    ("mha_is_causal_no_mask_weights", "is_causal without a mask (tfm-only), weights"),
    ("mha_unbatched_cross_kdim", "unbatched, kdim/vdim, weights per head"),
    ("mha_full_kpm_weights", "fully masked batch element (degenerate), weights"),
    ("mha_full_attn_rows_noweights", "fully masked query rows, float mask (degenerate)"),
    ("mha_full_kpm_zero_attn", "kpm masks a whole element, zero_attn column open"),
    # TransformerEncoderLayer
    ("enc_layer_relu", "post-norm relu"),
    ("enc_layer_masks_mixed_gelu_norm_first", "norm_first gelu, float src_mask + bool kpm"),
    ("enc_layer_no_bias", "bias=False, bool kpm"),
    ("enc_layer_eps", "layer_norm_eps 0.1"),
    ("enc_layer_is_causal_no_mask", "is_causal without a mask (tfm-only)"),
    ("enc_layer_unbatched_masks", "unbatched, bool mask + float kpm"),
    ("enc_layer_full_kpm", "fully masked batch element (degenerate)"),
    # TransformerDecoderLayer
    ("dec_layer_all_masks", "causal tgt_mask, memory_mask, both kpms, batch_first"),
    ("dec_layer_all_masks_mixed_norm_first_gelu", "norm_first gelu, float masks"),
    ("dec_layer_memory_mask_float_3d", "(N*H, L, S) float memory_mask"),
    ("dec_layer_tgt_is_causal_no_mask", "tgt_is_causal without a mask (tfm-only)"),
    ("dec_layer_full_tgt_mask_row", "fully masked tgt row, norm_first (degenerate)"),
    # TransformerEncoder
    ("enc_stack3_batch_first_norm_first_gelu", "3 layers + norm, norm_first gelu, kpm"),
    ("enc_stack2_no_bias_unbatched", "2 layers, bias=False, unbatched, bool mask"),
    # TransformerDecoder
    ("dec_stack3_no_norm_masks", "3 layers no norm, all masks"),
    ("dec_stack2_batch_first_gelu_norm_first", "2 layers + norm, gelu norm_first"),
    # Transformer
    ("tf_all_masks", "all six masks"),
    ("tf_all_masks_float_3d", "float masks, 3-D memory_mask"),
    ("tf_no_bias_eps", "bias=False, eps 1e-3, 1 encoder / 3 decoder layers"),
    ("tf_full_memory_kpm", "fully masked memory element (degenerate), batch_first"),
]


# New cases, each a make_fixtures case with activation="gelu" (so that its gradients can be
# tested; see "ReLU" in the docstring), under a new name (new seed: new weights and
# inputs); these are the only cases that write model/input/grad_output files.
GELU_VARIANTS = [
    ("enc_layer_full_kpm", "bf16_enc_layer_full_kpm_gelu",
     "encoder layer, fully masked batch element (degenerate): gradients"),
    ("dec_layer_all_masks", "bf16_dec_layer_all_masks_gelu",
     "decoder layer, post-norm, all masks, batch_first: gradients"),
    ("enc_stack2_masks", "bf16_enc_stack2_masks_gelu", "encoder stack + norm, masks: gradients"),
    ("dec_stack3_no_norm_masks", "bf16_dec_stack3_no_norm_masks_gelu",
     "decoder stack, no norm, all masks: gradients"),
]


# The Transformer's gradient cases, new cases sized (d_model 16, 4 x 12 source and 4 x 10
# target tokens) so that a bias gradient sums enough rows to measure bf16's error: as
# gelu variants of tf_all_masks and tf_full_memory_kpm (d_model 12, 2 x 6 source tokens)
# they drew 2.1-2.5x PyTorch autocast's error on encoder biases from a tfm whose error
# on a like model at d_model 64 (4 x 24 tokens) is 0.8x PyTorch's median, 1.0x worst, and
# at these sizes, over four seeds, 0.8x median and 1.1-1.5x worst.
SIZED_TF_CASES = [
    ("bf16_tf_masks_gelu", "Transformer, all six masks: gradients"),
    ("bf16_tf_full_memory_kpm_gelu", "Transformer, fully masked memory element (degenerate): gradients"),
]


def define_sized_tf_cases():
    cfg = mf.layer_cfg("Transformer", d=16, h=4, ff=32, activation="gelu",
                       num_encoder_layers=2, num_decoder_layers=2)
    all6 = {"src_mask": "bool", "tgt_mask": "causal", "memory_mask": "float",
            "src_key_padding_mask": "bool", "tgt_key_padding_mask": "bool",
            "memory_key_padding_mask": "src"}
    mf.add_dec("bf16_tf_masks_gelu", cfg, N=4, L=10, S=12, masks=mf.transformer_masks(all6))

    def full_mem(gen, N, H, L, S):
        kpm = gen.mask((N, S), "bool", p=0.3)
        kpm[0] = True  # batch element 0 attends to no memory at all
        return {"memory_key_padding_mask": kpm, "tgt_mask": gen.mask((L, L), "causal")}

    mf.add_dec("bf16_tf_full_memory_kpm_gelu", dict(cfg, batch_first=True), N=4, L=10, S=12,
               masks=full_mem, degenerate=True)


# --------------------------------------------------------------------------------------
# tfm's documented bf16 semantics, emulated: bf16 operands, wide accumulation
# --------------------------------------------------------------------------------------
def bf16_round(x: torch.Tensor) -> torch.Tensor:
    """x rounded to bf16 (to nearest even, as torch's conversion does), in float64."""
    return x.to(torch.bfloat16).to(torch.float64)


class _BF16Matmul(torch.autograd.Function):
    """a @ b with bf16-rounded operands, accumulated in float64, returned as FP32; the
    backward products (dA = dC @ B^T, dB = A^T @ dC) likewise take bf16 operands."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return (bf16_round(a) @ bf16_round(b)).to(torch.float32)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g16 = bf16_round(g)
        da = (g16 @ bf16_round(b).transpose(-2, -1)).to(torch.float32)
        db = (bf16_round(a).transpose(-2, -1) @ g16).to(torch.float32)
        # broadcast dims (a (N, L, E) @ w^T (E, F)): sum db over the broadcast batch dims
        while db.dim() > b.dim():
            db = db.sum(0)
        return da, db


class _EmulateBF16(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # FP32 operands only: the float64 products inside _BF16Matmul are left alone
        if (getattr(func, "__name__", "") in ("matmul", "__matmul__") and not kwargs
                and all(a.dtype == torch.float32 for a in args)):
            return _BF16Matmul.apply(*args)
        return func(*args, **kwargs)


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
def group_rms(tensors) -> float:
    n = sum(t.numel() for t in tensors)
    ss = sum(float((t.double() ** 2).sum()) for t in tensors)
    return math.sqrt(ss / n) if n else 0.0


def denominators(r: torch.Tensor, s: float):
    r = r.double()
    n = r.numel()
    den_l2 = max(float(r.norm()), ALPHA * math.sqrt(n) * s)
    den_max = max(float(r.abs().max()) if n else 0.0, ALPHA * s)
    return den_l2, den_max


def errors(y: torch.Tensor, r: torch.Tensor, den):
    """(l2, max) of y against r under the metric above."""
    d = y.double() - r.double()
    if d.numel() == 0:
        return 0.0, 0.0
    return float(d.norm()) / den[0], float(d.abs().max()) / den[1]


def all_finite(d: dict) -> bool:
    return all(bool(torch.isfinite(v.float()).all()) for v in d.values())


# --------------------------------------------------------------------------------------
# one case
# --------------------------------------------------------------------------------------
def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def module_forward(module, kind, inputs, flags, extra, self_attn):
    tin = dict(inputs)
    tin.update(extra)  # tfm-only cases: PyTorch gets the explicit causal mask
    return mf.run_torch(module, kind, tin, flags, self_attn, torch.float32, no_grad=False)


def ref_forward(sd, meta, fin, fflags, dtype):
    return ref.forward(sd, meta, fin, fflags, dtype=dtype)


def _grads(out, leaves: dict, params: dict, gout) -> dict:
    """{"grad.<name>"} of sum(out.float() * gout): the upstream gradient enters at FP32
    and autograd rounds it to bf16 where it meets a bf16 tensor, as autocast training
    does."""
    names = list(leaves) + list(params)
    tensors = list(leaves.values()) + list(params.values())
    grads = torch.autograd.grad((out.float() * gout).sum(), tensors, allow_unused=True)
    return {"grad." + n: (torch.zeros_like(t) if g is None else g).detach().float()
            for n, t, g in zip(names, tensors, grads)}


def autocast_module_grads(module, kind, fin, flags, extra, gout) -> dict:
    """The module (FP32 weights) under autocast: gradients of every input and parameter."""
    m = copy.deepcopy(module).float().eval()
    for p in m.parameters():
        p.requires_grad_(True)
    leaves = mg._leaves(fin, torch.float32)
    args = dict(leaves)
    args.update(mg._masks(fin, torch.float32))
    args.update(mg._masks(extra, torch.float32))
    with torch.enable_grad(), autocast():
        out, _ = ex.run_module(m, kind, args, flags)
        return _grads(out, leaves, dict(m.named_parameters()), gout)


def autocast_ref_grads(sd, meta, fin, fflags, gout) -> dict:
    """reference.py (FP32) under autocast: the same gradients, tfm's rule for dead rows."""
    psd = {k: v.detach().clone().float().requires_grad_(True) for k, v in sd.items()}
    leaves = mg._leaves(fin, torch.float32)
    args = dict(leaves)
    args.update(mg._masks(fin, torch.float32))
    with torch.enable_grad(), autocast():
        out = ref.forward(psd, meta, args, fflags, dtype=torch.float32)["output"]
        return _grads(out, leaves, psd, gout)


def relu_margin(c, module, kind, fin, flags, extra) -> float:
    """min over ReLU units of |h64| / sigma, h the pre-activation (linear1's output) in
    float64 and sigma the RMS of PyTorch autocast's error on h: how many "bf16 noises"
    the unit nearest the kink is away from it (inf without ReLU)."""
    if kind == "MultiheadAttention" or c.cfg.get("activation", "relu") != "relu":
        return math.inf

    def pre_activations(m, ctx):
        hs = {}
        hooks = [mod.register_forward_hook(
                     lambda mod, i, o, n=n: hs.__setitem__(n, o.detach().double()))
                 for n, mod in m.named_modules() if n.endswith("linear1")]
        with ctx:
            mf.run_torch(m, kind, dict(fin, **extra), flags, c.self_attn,
                         next(m.parameters()).dtype, no_grad=False)
        for h in hooks:
            h.remove()
        return hs

    h64 = pre_activations(copy.deepcopy(module).double(), torch.enable_grad())
    h16 = pre_activations(copy.deepcopy(module), autocast())
    margin = math.inf
    for n, h in h64.items():
        e = h16[n] - h
        ok = torch.isfinite(e)
        sigma = float(e[ok].pow(2).mean().sqrt())
        margin = min(margin, float((h[ok].abs() / sigma).min()))
    return margin


def write_case_files(c, outdir: str):
    """model, input and grad_output files of a new (variant) case, as make_fixtures and
    make_grad_fixtures write them."""
    module, kind, inputs, flags, extra = mf.setup_case(c)
    base = os.path.join(outdir, c.name)
    ex.export_module(module, base + ".model.safetensors")
    ex.export_inputs(base + ".input.safetensors", inputs, flags)
    out = mf.run_torch(module, kind, dict(inputs, **extra), flags, c.self_attn,
                       torch.float32, no_grad=False)["output"]
    ex.save_safetensors({"output": mg.grad_output_for(c.name, out.shape)},
                        base + ".grad_output.safetensors", {"torch_version": torch.__version__})


def run_case(c, outdir: str, verbose: bool):
    module, kind, inputs, flags, extra = mf.setup_case(c)
    base = os.path.join(outdir, c.name)
    sd, meta = ex.load_safetensors(base + ".model.safetensors")
    fin, fflags = ex.load_safetensors(base + ".input.safetensors")
    gfile, _ = ex.load_safetensors(base + ".grad_output.safetensors")
    msd = module.state_dict()
    assert set(sd) == set(msd) and all(torch.equal(sd[k], msd[k]) for k in sd), \
        f"{c.name}: model file differs from the case; run make_fixtures.py first"
    assert set(fin) == set(inputs) and all(torch.equal(fin[k], inputs[k]) for k in fin), \
        f"{c.name}: input file differs from the case; run make_fixtures.py first"
    gout = gfile["output"]
    assert torch.equal(gout, mg.grad_output_for(c.name, gout.shape)), \
        f"{c.name}: grad_output file differs; run make_grad_fixtures.py first"
    names = ["grad." + k for k in mg.FLOAT_INPUTS if k in fin] + ["grad." + k for k in msd]

    # ---- float64 reference: the module, or reference.py where rows are fully masked
    t64 = mf.run_torch(module, kind, dict(fin, **extra), flags, c.self_attn, torch.float64,
                       no_grad=False)
    g64, _ = mg.torch_grads(module, kind, fin, flags, extra, gout, torch.float64)
    r64 = ref_forward(sd, meta, fin, fflags, torch.float64)
    rg64, _ = mg.ref_grads(sd, meta, fin, fflags, gout, torch.float64)
    rg64 = {k: rg64[k] for k in names}
    for a, b in ((r64, t64), (rg64, g64)):
        e = mf.within(a, b, 0.0, 1e-10 * max(1.0, mf.maxabs(a)), finite_only=True)
        assert e <= 1, f"{c.name}: reference.py float64 differs from torch float64 ({e:.3g})"
    if c.degenerate:
        fwd64, grad64 = r64, rg64
    else:
        assert all_finite(t64) and all_finite(g64), c.name
        fwd64, grad64 = t64, {k: g64[k] for k in names}
    rms = group_rms([fwd64["output"]])
    assert 0.2 <= rms <= 5, f"{c.name}: output RMS {rms:.3g} is not of scale ~1"
    margin = relu_margin(c, module, kind, fin, flags, extra)
    with_grads = margin >= KINK_MARGIN
    if not with_grads:
        grad64 = {}

    # ---- PyTorch autocast-bf16: the module, or reference.py under autocast
    with autocast():
        tfw = module_forward(module, kind, fin, flags, extra, c.self_attn)
        tg = autocast_module_grads(module, kind, fin, flags, extra, gout)
    source = "module-autocast"
    if not (all_finite(tfw) and all_finite(tg)):
        if not c.degenerate:
            raise AssertionError(f"{c.name}: PyTorch autocast gives non-finite values")
        with autocast():
            tfw = ref_forward(sd, meta, fin, fflags, torch.float32)
            tg = autocast_ref_grads(sd, meta, fin, fflags, gout)
        source = "reference-autocast"
        assert all_finite(tfw) and all_finite(tg), c.name
    tg = {k: tg[k] for k in names}

    # ---- tfm's semantics, emulated
    with _EmulateBF16():
        efw = ref_forward(sd, meta, fin, fflags, torch.float32)
        eg, _ = mg.ref_grads(sd, meta, fin, fflags, gout, torch.float32)
    eg = {k: eg[k] for k in names}

    # ---- errors per tensor
    gs = group_rms(list(grad64.values())) if with_grads else 0.0
    tensors, meta_out, rows = {}, {}, []
    emu_failed = None
    for group in (fwd64, grad64):
        for k, r in group.items():
            s = group_rms([r]) if group is fwd64 else gs
            den = denominators(r, s)
            tl2, tmax = errors((tfw if group is fwd64 else tg)[k], r, den)
            el2, emax = errors((efw if group is fwd64 else eg)[k], r, den)
            if tl2 > 0.1:
                raise AssertionError(f"{c.name}: {k}: PyTorch autocast error {tl2:.3g}: "
                                     "more than bf16 explains")
            if el2 > L2_FACTOR * tl2 + FLOOR or emax > MAX_FACTOR * tmax + FLOOR:
                what = (f"{c.name}: {k}: emulated tfm error l2 {el2:.3g} max {emax:.3g} fails "
                        f"the criterion against PyTorch's {tl2:.3g} / {tmax:.3g}")
                if group is grad64:
                    emu_failed = what
                elif not DEBUG_NOCHECK:
                    raise AssertionError(what + ": too noisy a case")
            tensors[k] = r.float().contiguous()
            meta_out["err:" + k] = (f"{tl2:.6e} {tmax:.6e} {den[0]:.6e} {den[1]:.6e} "
                                    f"{el2:.6e} {emax:.6e}")
            rows.append((k, tl2, tmax, el2, emax))
    if emu_failed and not DEBUG_NOCHECK:
        # even the exact emulation misses on a gradient: the case cannot tell a correct
        # tfm from a wrong one there; keep its forward pass only
        print(f"  note: {emu_failed}; gradients dropped")
        with_grads = False
        for k in grad64:
            del tensors[k], meta_out["err:" + k]
        rows = [r for r in rows if r[0] in fwd64]
        margin = math.nan
    meta_out.update(columns=COLUMNS, torch_source=source, torch_version=torch.__version__,
                    metric=f"l2 = ||y-r|| / max(||r||, {ALPHA:g}*sqrt(n)*s), max = max|y-r| / "
                           f"max(max|r|, {ALPHA:g}*s); s = RMS of the tensor (forward) or "
                           "of all the case's gradients")
    path = base + ".bf16_ref.safetensors"
    ex.save_safetensors(tensors, path, meta_out)
    back, bmeta = ex.load_safetensors(path)
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in back)
    if verbose:
        for k, tl2, tmax, el2, emax in rows:
            print(f"    {k:50s} torch l2 {tl2:.2e} max {tmax:.2e}   emu/torch l2 "
                  f"{el2 / tl2:.2f} max {emax / tmax:.2f}")
    return rows, source, os.path.getsize(path), with_grads, margin


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--only", help="comma-separated case names (for debugging; no manifest)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)

    torch.set_num_threads(1)
    mf.define_cases()
    define_sized_tf_cases()
    by_name = {c.name: c for c in mf.CASES}
    for base_name, name, _ in GELU_VARIANTS:
        v = copy.copy(by_name[base_name])
        v.name, v.cfg = name, dict(v.cfg, activation="gelu")
        assert name not in by_name
        by_name[name] = v
    chosen = ([n for n, _ in BF16_CASES] + [n for _, n, _ in GELU_VARIANTS] +
              [n for n, _ in SIZED_TF_CASES])
    new = {n for _, n, _ in GELU_VARIANTS} | {n for n, _ in SIZED_TF_CASES}
    assert len(set(chosen)) == len(chosen)
    for n in chosen:
        assert n in by_name, f"{n}: not a make_fixtures case"
    todo = chosen
    if a.only:
        want = set(a.only.split(","))
        todo = [n for n in chosen if n in want]
    else:
        for fn in os.listdir(a.out):  # files of cases no longer in the lists
            case = fn.split(".")[0]
            if fn.endswith(".safetensors") and "bf16" in fn:
                os.unlink(os.path.join(a.out, fn))
    total = 0
    lines = []
    all_l2, worst, emu_worst = [], (0.0, ""), (0.0, "")
    for n in todo:
        c = by_name[n]
        is_new = n in new
        if is_new:
            # a new case whose gradients fail the emulation gate is redrawn (next name,
            # hence next seed), at most VARIANT_DRAWS times
            for draw in range(VARIANT_DRAWS):
                c = copy.copy(by_name[n])
                c.name = n if draw == 0 else f"{n}_{'bcdefgh'[draw - 1]}"
                write_case_files(c, a.out)
                rows, source, size, with_grads, margin = run_case(c, a.out, a.verbose)
                if with_grads:
                    break
                print(f"  {c.name}: redrawn")
                for p in ("model", "input", "grad_output", "bf16_ref"):
                    os.unlink(os.path.join(a.out, f"{c.name}.{p}.safetensors"))
            assert with_grads, f"{n}: {VARIANT_DRAWS} draws failed the emulation gate"
            n = c.name
        else:
            rows, source, size, with_grads, margin = run_case(c, a.out, a.verbose)
        if is_new:
            size += sum(os.path.getsize(os.path.join(a.out, f"{n}.{p}.safetensors"))
                        for p in ("model", "input", "grad_output"))
        total += size
        lines.append(f"{n} {'fwd+grad' if with_grads else 'fwd'}")
        l2s = [r[1] for r in rows]
        all_l2 += l2s
        wl2 = max(rows, key=lambda r: r[1])
        if wl2[1] > worst[0]:
            worst = (wl2[1], f"{n}:{wl2[0]}")
        # the emulation's share of the criterion's allowance (<= 1 passes)
        er = max(rows, key=lambda r: r[3] / (L2_FACTOR * r[1] + FLOOR))
        share = er[3] / (L2_FACTOR * er[1] + FLOOR)
        if share > emu_worst[0]:
            emu_worst = (share, f"{n}:{er[0]}")
        tag = "" if with_grads else (f" fwd-only (ReLU margin {margin:.2g})"
                                     if not math.isnan(margin) else " fwd-only (emulation)")
        tag += " degenerate" if c.degenerate else ""
        tag += " tfm-only" if c.tfm_only else ""
        print(f"  {n:45s} {len(rows):3d} tensors  torch l2 median "
              f"{sorted(l2s)[len(l2s) // 2]:.2e} worst {wl2[1]:.2e}  emu/allowance "
              f"{share:.2f}  {source}{tag}")
    if not a.only:
        with open(os.path.join(a.out, "bf16_cases.txt"), "w") as f:
            f.write("# <case> fwd|fwd+grad -- tests/test_bf16.c; written by "
                    "scripts/make_bf16_fixtures.py\n")
            f.write("".join(line + "\n" for line in lines))
        total += os.path.getsize(os.path.join(a.out, "bf16_cases.txt"))
    all_l2.sort()
    print(f"PyTorch autocast l2 error: median {all_l2[len(all_l2) // 2]:.2e}, worst "
          f"{worst[0]:.2e} ({worst[1]}); emulated tfm, largest share of the allowance "
          f"{L2_FACTOR:g} x torch + {FLOOR:g}: {emu_worst[0]:.2f} ({emu_worst[1]})")
    print(f"make_bf16_fixtures: {len(todo)} cases, {total} bytes in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
