#!/usr/bin/env python3
"""Randomized conformance sweep: `tfm forward` against PyTorch on random configurations.

    python3 scripts/random_check.py [--count 300] [--seed 0] [--tfm build/tfm]
                                    [--case I] [--keep DIR] [--invalid-rate 0.06] [-v]

For each of --count cases (each seeded from (--seed, case index), so `--seed S --case I`
re-runs exactly one case) it draws:

* a module kind, uniformly from the six tfm implements, and every constructor option:
  MultiheadAttention (embed_dim, num_heads 1-4, bias, add_bias_kv, add_zero_attn,
  kdim/vdim, batch_first); layers (d_model 4..32 divisible by nhead, nhead 1-4,
  dim_feedforward, relu/gelu, layer_norm_eps, norm_first, bias, batch_first);
  TransformerEncoder/Decoder (num_layers 1-4, final norm on/off); Transformer
  (1-3 encoder and 1-3 decoder layers);
* random weights (export_pytorch.randomize_parameters: randn, non-zero biases,
  LayerNorm weights around 1);
* random inputs: N = 0 (unbatched) or 1-3, L and S in 1..7, self-attention
  (query = key = value) sometimes for MultiheadAttention;
* random masks for every attention: attn_mask none / bool / float / float with -inf /
  causal (float or bool, with is_causal true, false or absent), 2-D (L, S) or 3-D
  (N*H, L, S); key padding masks none / bool / float / float with -inf; is_causal
  without a mask (tfm applies the causal mask; PyTorch raises, so PyTorch is given the
  explicit causal mask instead); need_weights and average_attn_weights for
  MultiheadAttention. About a quarter of the cases may have fully masked query rows.

The module and inputs are exported with export_pytorch (export_module, export_inputs),
`tfm forward` is run as a subprocess, and its output is compared with PyTorch's
float32 output (regular, grad-enabled path): |tfm - expected| <= atol + rtol*|expected|
with rtol = 1e-5, atol = 1e-5 * max(1, max|expected|); 1e-4 for stacks deeper than 2
layers. Where PyTorch's output is NaN (fully masked rows: a documented difference),
the expected value is scripts/reference.py's (float64), which defines those rows as
tfm does. A case that misses the float32 expectation is re-checked against PyTorch in
float64 (then reference.py in float64 for NaN entries); it fails only if it misses
that too (PyTorch's own float32 rounding is not tfm's fault).

One PyTorch inconsistency is worked around: MultiheadAttention with add_bias_kv or
add_zero_attn, a (causal) attn_mask, is_causal=True, no key_padding_mask and
need_weights=False drops the mask and lets scaled_dot_product_attention build its own
causal mask over all keys, masking the appended bias_k / zero columns too, so its
output differs from the same call with need_weights=True or is_causal=False. tfm (and
reference.py) keep those columns open, as PyTorch's other paths do; there PyTorch is
run with is_causal=False (the mask itself is unchanged) and the case is counted.

With probability --invalid-rate a case's inputs are made invalid on purpose (wrong
mask shapes, wrong widths, mismatched batch sizes or lengths, integer masks, ...):
PyTorch must raise, and tfm must exit 1 with one line on stderr and no output file.
Every combination PyTorch raises on is skipped and counted by reason, with what tfm
did for it. PyTorch accepts one kind of malformed input: a wrongly shaped attn_mask
together with is_causal=True (the hint path above drops the mask before checking it);
tfm rejects it, which is counted as "tfm rejects (stricter)", not as a failure.
--max-dim, --max-len and --max-batch widen the sizes (e.g. --max-len 90 crosses
tfm's 64-query attention blocks).

Prints one line per failure (case, full config, max error) and a summary; exits 1 if
any case failed. Temporary files live in a temporary directory that is removed at the
end; --keep DIR keeps the model/input/expected/tfm-output files of failing cases
there (`tfm forward --model DIR/<case>.model.safetensors ...` reproduces them).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import export_pytorch as ex  # noqa: E402
import reference as ref  # noqa: E402

warnings.filterwarnings("ignore")

KINDS = ex.MODULE_KINDS
MHA, EL, EN, DL, DE, TF = KINDS
# size limits (command-line options; the defaults are the documented sweep)
LIMITS = {"dim": 32, "len": 7, "batch": 3}
EPS_CHOICES = (1e-5, 1e-5, 1e-6, 1e-3, 0.1, 1e-12)

AM_SPECS = (  # (spec, weight); "causal_flag" = no mask, is_causal true
    ("none", 30), ("bool", 14), ("float", 10), ("float_inf", 14),
    ("causal", 10), ("causal_bool", 8), ("causal_flag", 8))
KPM_SPECS = (("none", 50), ("bool", 25), ("float", 10), ("float_inf", 15))


def wchoice(rng, table):
    names = [n for n, _ in table]
    weights = [w for _, w in table]
    return rng.choices(names, weights)[0]


# --------------------------------------------------------------------------------------
# random configurations
# --------------------------------------------------------------------------------------
def sample_config(rng: random.Random) -> dict:
    kind = rng.choice(KINDS)
    H = rng.randint(1, 4)
    E = H * rng.randint(-(-4 // H), LIMITS["dim"] // H)  # 4..32, divisible by H
    cfg = {"module": kind, "bias": rng.random() < 0.75, "batch_first": rng.random() < 0.5}
    if kind == MHA:
        cfg.update(embed_dim=E, num_heads=H,
                   add_bias_kv=rng.random() < 0.3, add_zero_attn=rng.random() < 0.3,
                   kdim=E if rng.random() < 0.6 else rng.randint(1, LIMITS["dim"]),
                   vdim=E if rng.random() < 0.6 else rng.randint(1, LIMITS["dim"]))
        return cfg
    cfg.update(d_model=E, nhead=H, dim_feedforward=rng.randint(1, 2 * LIMITS["dim"]),
               activation=rng.choice(("relu", "gelu")),
               layer_norm_eps=rng.choice(EPS_CHOICES), norm_first=rng.random() < 0.5)
    if kind in (EN, DE):
        cfg.update(num_layers=rng.randint(1, 4), norm=rng.random() < 0.6)
    if kind == TF:
        cfg.update(num_encoder_layers=rng.randint(1, 3), num_decoder_layers=rng.randint(1, 3))
    return cfg


def depth(cfg) -> int:
    k = cfg["module"]
    if k in (EN, DE):
        return cfg["num_layers"]
    if k == TF:
        return max(cfg["num_encoder_layers"], cfg["num_decoder_layers"])
    return 1


# --------------------------------------------------------------------------------------
# random tensors and masks
# --------------------------------------------------------------------------------------
class Gen:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape):
        return torch.randn(shape, generator=self.g, dtype=torch.float32)

    def rand(self, *shape):
        return torch.rand(shape, generator=self.g, dtype=torch.float32)

    def seq(self, N, L, E, bf):
        if N == 0:
            return self.randn(L, E)
        return self.randn(N, L, E) if bf else self.randn(L, N, E)


def causal_bool(L, S):
    return torch.triu(torch.ones(L, S, dtype=torch.bool), diagonal=1)


def make_mask(gen, rng, shape, spec):
    """bool: True = masked; float: randn; float_inf: randn with -inf where closed;
    causal / causal_bool: the top-left aligned causal mask, broadcast to `shape`."""
    L, S = shape[-2] if len(shape) > 1 else 1, shape[-1]
    if spec in ("causal", "causal_bool"):
        m = causal_bool(L, S).expand(shape).clone()
        return m if spec == "causal_bool" else torch.zeros(shape).masked_fill(m, float("-inf"))
    closed = gen.rand(*shape) < rng.choice((0.2, 0.35, 0.5))
    if spec == "bool":
        return closed
    vals = gen.randn(*shape)
    if spec == "float":
        return vals
    if spec == "float_inf":
        return vals.masked_fill(closed, float("-inf"))
    raise ValueError(spec)


def closed_of(m):
    if m is None:
        return None
    return m if m.dtype == torch.bool else torch.isneginf(m)


def full_rows(kpm, am, causal_flag, N, H, L, S):
    """Whether some (batch, head, query) row has every one of its S keys masked."""
    n = max(N, 1)
    full = torch.zeros(n, H, L, S, dtype=torch.bool)
    if am is not None:
        c = closed_of(am)
        full = full | (c.reshape(n, H, L, S) if c.dim() == 3 else c)
    elif causal_flag:
        full = full | causal_bool(L, S)
    if kpm is not None:
        full = full | closed_of(kpm).reshape(n, 1, 1, S)
    return bool(full.all(-1).any())


def force_full_row(gen, rng, kpm, am, N, H, L, S, am_is_causal=False):
    """Mask out every key of one row (attn_mask row, or a whole batch element's keys).
    A causal attn_mask is left alone: it must stay causal for the is_causal hint."""
    opts = []
    if am is not None and not am_is_causal:
        opts.append("am")
    if kpm is not None:
        opts.append("kpm")
    if not opts:
        return kpm, am
    which = rng.choice(opts)
    if which == "am":
        am = am.clone()
        idx = (rng.randrange(am.shape[0]), rng.randrange(L)) if am.dim() == 3 else (rng.randrange(L),)
        am[idx] = True if am.dtype == torch.bool else float("-inf")
    else:
        kpm = kpm.clone()
        idx = (rng.randrange(kpm.shape[0]),) if kpm.dim() == 2 else ()
        kpm[idx] = True if kpm.dtype == torch.bool else float("-inf")
    return kpm, am


def attn_masks(gen, rng, N, H, L, S, allow_full, extra_cols, desc, self_attn=True):
    """Masks and is_causal flag for one attention.
    Returns (kpm, am, flag, tfm_only_causal, explicit_causal_mask_for_torch)."""
    am_spec = wchoice(rng, AM_SPECS)
    kpm_spec = wchoice(rng, KPM_SPECS)
    three_d = rng.random() < 0.3
    n = max(N, 1)
    am_shape = (n * H, L, S) if three_d else (L, S)
    kpm_shape = (N, S) if N else (S,)
    flag = None
    tfm_only = False
    for attempt in range(100):
        am = None
        if am_spec == "causal_flag":
            flag = True
            tfm_only = True
        elif am_spec != "none":
            am = make_mask(gen, rng, am_shape, am_spec)
        kpm = None if kpm_spec == "none" else make_mask(gen, rng, kpm_shape, kpm_spec)
        if allow_full and rng.random() < 0.5:
            kpm, am = force_full_row(gen, rng, kpm, am, N, H, L, S,
                                     am_spec in ("causal", "causal_bool"))
            break
        if allow_full or extra_cols or not full_rows(kpm, am, flag, N, H, L, S):
            break
    if am_spec in ("causal", "causal_bool"):
        flag = rng.choice((True, True, True, False, None))
    elif am_spec != "causal_flag":
        flag = rng.choice((False, None, None))
    explicit = None
    if tfm_only:
        explicit = torch.zeros(L, S).masked_fill(causal_bool(L, S), float("-inf"))
    full = full_rows(kpm, am, flag, N, H, L, S)
    desc.append(f"am={am_spec}{'/3d' if three_d and am is not None else ''}"
                f" kpm={kpm_spec} causal={flag}" + (" FULLY-MASKED-ROW" if full else ""))
    return kpm, am, flag, tfm_only, explicit, full


def sample_inputs(rng, gen, cfg, module):
    """(inputs, flags, torch_extra, info): tensors and flags for the INPUT file, extra
    tensors to give PyTorch only (explicit causal masks where tfm uses is_causal alone)."""
    kind = cfg["module"]
    N = rng.choice(range(LIMITS["batch"] + 1))
    L, S = rng.randint(1, LIMITS["len"]), rng.randint(1, LIMITS["len"])
    bf = cfg["batch_first"]
    allow_full = rng.random() < 0.25
    inputs, flags, extra = {}, {}, {}
    info = {"N": N, "allow_full": allow_full, "tfm_only": False, "full": False, "masks": []}

    def one(prefix_kpm, name_am, flag_name, L_, S_, H, extra_cols=False):
        desc = [name_am + ":"]
        kpm, am, flag, tfm_only, explicit, full = attn_masks(gen, rng, N, H, L_, S_, allow_full,
                                                             extra_cols, desc)
        info["full"] = info["full"] or (full and not extra_cols)
        inputs[prefix_kpm] = kpm
        inputs[name_am] = am
        if flag is not None:
            flags[flag_name] = flag
        if tfm_only:
            extra[name_am] = explicit
            info["tfm_only"] = True
        info["masks"].append(" ".join(desc))

    if kind == MHA:
        E, H, kd, vd = cfg["embed_dim"], cfg["num_heads"], cfg["kdim"], cfg["vdim"]
        self_attn = kd == E and vd == E and rng.random() < 0.35
        if self_attn:
            S = L
        q = gen.seq(N, L, E, bf)
        if self_attn:
            k = v = q
        else:
            k = gen.seq(N, S, kd, bf)
            v = gen.seq(N, S, vd, bf)
        inputs.update(query=q, key=k, value=v)
        one("key_padding_mask", "attn_mask", "is_causal", L, S, H,
            extra_cols=cfg["add_bias_kv"] or cfg["add_zero_attn"])
        r = rng.random()
        if r < 0.2:
            pass  # need_weights absent: tfm's default false
        else:
            flags["need_weights"] = r < 0.65
            if rng.random() < 0.8:
                flags["average_attn_weights"] = rng.random() < 0.5
        info["self_attn"] = self_attn
    elif kind in (EL, EN):
        H = cfg["nhead"]
        inputs["src"] = gen.seq(N, S, cfg["d_model"], bf)
        one("src_key_padding_mask", "src_mask" if kind == EL else "mask", "is_causal", S, S, H)
        L = S
    elif kind in (DL, DE):
        H = cfg["nhead"]
        inputs["tgt"] = gen.seq(N, L, cfg["d_model"], bf)
        inputs["memory"] = gen.seq(N, S, cfg["d_model"], bf)
        one("tgt_key_padding_mask", "tgt_mask", "tgt_is_causal", L, L, H)
        one("memory_key_padding_mask", "memory_mask", "memory_is_causal", L, S, H)
    else:
        H = cfg["nhead"]
        inputs["src"] = gen.seq(N, S, cfg["d_model"], bf)
        inputs["tgt"] = gen.seq(N, L, cfg["d_model"], bf)
        one("src_key_padding_mask", "src_mask", "src_is_causal", S, S, H)
        one("tgt_key_padding_mask", "tgt_mask", "tgt_is_causal", L, L, H)
        one("memory_key_padding_mask", "memory_mask", "memory_is_causal", L, S, H)
        # the memory keys are the src positions: often the same padding mask
        if inputs["src_key_padding_mask"] is not None and rng.random() < 0.5:
            inputs["memory_key_padding_mask"] = inputs["src_key_padding_mask"].clone()
            info["masks"].append("memory_key_padding_mask = src_key_padding_mask")
    info.update(L=L, S=S)
    inputs = {k: v for k, v in inputs.items() if v is not None}
    return inputs, flags, extra, info


# --------------------------------------------------------------------------------------
# deliberately invalid inputs
# --------------------------------------------------------------------------------------
def mutate_invalid(rng, cfg, inputs, info):
    """Make `inputs` invalid in one way; returns a reason, or None if none applies."""
    kind = cfg["module"]
    N = info["N"]
    seqs = [k for k in ("query", "key", "value", "src", "tgt", "memory") if k in inputs]
    masks_am = [k for k in ("attn_mask", "src_mask", "mask", "tgt_mask", "memory_mask")
                if k in inputs]
    masks_kpm = [k for k in inputs if k.endswith("key_padding_mask")]
    opts = ["width", "seq_rank"]
    if masks_am:
        opts += ["am_shape", "am_int"]
    if masks_kpm:
        opts += ["kpm_shape"]
    if N >= 1:
        opts += ["batch_mismatch", "unbatched_mix"]
    if N >= 2 and masks_am:
        opts += ["am_3d_heads_only"]
    if kind == MHA and not info.get("self_attn"):
        opts += ["kv_len"]
    what = rng.choice(opts)
    if what == "width":
        k = rng.choice(seqs)
        x = inputs[k]
        inputs[k] = torch.cat([x, x[..., :1]], dim=-1)
        return f"wrong width ({k})"
    if what == "seq_rank":
        k = rng.choice(seqs)
        inputs[k] = inputs[k].reshape(1, *inputs[k].shape, 1) if rng.random() < 0.5 \
            else inputs[k].reshape(-1)
        return f"wrong rank ({k})"
    if what == "am_shape":
        k = rng.choice(masks_am)
        m = inputs[k]
        inputs[k] = torch.cat([m, m[..., :1]], dim=-1)  # one column too many
        return f"attn mask wrong shape ({k})"
    if what == "am_int":
        k = rng.choice(masks_am)
        inputs[k] = closed_of(inputs[k]).to(torch.int64)
        return f"integer mask ({k})"
    if what == "kpm_shape":
        k = rng.choice(masks_kpm)
        m = inputs[k]
        inputs[k] = torch.cat([m, m[..., :1]], dim=-1)
        return f"key padding mask wrong shape ({k})"
    if what == "am_3d_heads_only":
        k = rng.choice(masks_am)
        m = inputs[k]
        H = cfg.get("num_heads", cfg.get("nhead"))
        if m.dim() == 2:
            inputs[k] = m.expand(H, *m.shape).clone()
        else:
            inputs[k] = m[:H].clone()
        return f"3-D attn mask (H, L, S) for batched input ({k})"
    if what == "batch_mismatch":
        k = {MHA: "key", EL: "src", EN: "src", DL: "memory", DE: "memory", TF: "tgt"}[kind]
        if kind in (EL, EN):
            return None
        if kind == MHA:  # key and value together, else it is a different error
            ks = ["key", "value"]
        else:
            ks = [k]
        for k in ks:
            x = inputs[k]
            bdim = 0 if cfg["batch_first"] else 1
            inputs[k] = torch.cat([x, x.narrow(bdim, 0, 1)], dim=bdim)
        return "batch size mismatch"
    if what == "unbatched_mix":
        if kind in (EL, EN):
            return None
        k = {MHA: "key", DL: "memory", DE: "memory", TF: "tgt"}[kind]
        ks = ["key", "value"] if kind == MHA else [k]
        for k in ks:
            x = inputs[k]
            inputs[k] = x[0] if cfg["batch_first"] else x[:, 0]
        return "batched and unbatched inputs mixed"
    if what == "kv_len":
        x = inputs["value"]
        sdim = 1 if (cfg["batch_first"] and N) else 0
        inputs["value"] = torch.cat([x, x.narrow(sdim, 0, 1)], dim=sdim)
        return "key and value lengths differ"
    return None


def write_raw_inputs(path, inputs, flags):
    """Like export_inputs, without its checks (for invalid inputs)."""
    meta = {k: ("true" if v else "false") for k, v in flags.items() if v is not None}
    ex.save_safetensors({k: v.contiguous() for k, v in inputs.items()}, path, meta)


# --------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------
def run_torch(module, kind, inputs, flags, dtype):
    m = module if dtype == torch.float32 else copy.deepcopy(module).to(dtype)
    args = {}
    for k, v in inputs.items():
        args[k] = v.to(dtype) if torch.is_floating_point(v) else v
    if args.get("key") is not None and inputs.get("key") is inputs.get("query"):
        args["key"] = args["query"]
    if args.get("value") is not None and inputs.get("value") is inputs.get("key"):
        args["value"] = args["key"]
    with torch.enable_grad():
        out, w = ex.run_module(m, kind, args, flags)
    res = {"output": out.detach()}
    if w is not None:
        res["attn_weights"] = w.detach()
    return res


def torch_flags(cfg, tin, flags):
    """The flags to give PyTorch, and whether they differ from tfm's.

    PyTorch's MultiheadAttention with is_causal=True, an attn_mask, no key_padding_mask
    and need_weights=False drops the attn_mask and asks scaled_dot_product_attention
    for its own causal mask over all S' keys, so with add_bias_kv / add_zero_attn the
    appended key columns get masked for the early queries as well: the result then
    differs from the same call with need_weights=True or is_causal=False, which keep
    those columns open (as tfm and reference.py do). There the hint is dropped for
    PyTorch: is_causal only says that the given mask is causal."""
    if (cfg["module"] == MHA and (cfg["add_bias_kv"] or cfg["add_zero_attn"])
            and flags.get("is_causal") and tin.get("attn_mask") is not None
            and tin.get("key_padding_mask") is None and not flags.get("need_weights")):
        f = dict(flags)
        f["is_causal"] = False
        return f, True
    return flags, False


def run_tfm(tfm, model, inp, out):
    cmd = [tfm, "forward", "--model", model, "--input", inp, "--output", out]
    for attempt in range(20):  # the binary may be being relinked by a concurrent build
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            return p.returncode, p.stderr.strip()
        except (PermissionError, FileNotFoundError, OSError):
            if attempt == 19:
                raise
            time.sleep(0.5)


def load_out(path):
    t, _ = ex.load_safetensors(path)
    return t


def merge(torch_res, ref_res):
    """PyTorch's values where finite, reference.py's elsewhere."""
    out = {}
    for k, t in torch_res.items():
        r = ref_res[k]
        if tuple(r.shape) != tuple(t.shape):
            raise AssertionError(f"reference {k} shape {tuple(r.shape)} != torch {tuple(t.shape)}")
        out[k] = torch.where(torch.isfinite(t), t.double(), r.double())
    return out


def check(got, exp, rtol, tol):
    """(ok, max abs error, worst ratio err/(atol+rtol|exp|), detail)."""
    scale = max([1.0] + [float(v.abs().max()) for v in exp.values() if v.numel()])
    atol = tol * scale
    worst, maxerr, detail = 0.0, 0.0, ""
    for k, e in exp.items():
        if k not in got:
            return False, math.inf, math.inf, f"tfm output lacks {k}"
        g = got[k].double()
        e = e.double()
        if tuple(g.shape) != tuple(e.shape):
            return False, math.inf, math.inf, f"{k}: shape {tuple(g.shape)} != {tuple(e.shape)}"
        if not bool(torch.isfinite(g).all()):
            return False, math.inf, math.inf, f"{k}: tfm gave non-finite values"
        if not bool(torch.isfinite(e).all()):
            return False, math.inf, math.inf, f"{k}: expected has non-finite values"
        if g.numel() == 0:
            continue
        d = (g - e).abs()
        r = float((d / (atol + rtol * e.abs())).max())
        if r > worst:
            worst, detail = r, k
        maxerr = max(maxerr, float(d.max()))
    if set(got) - set(exp):
        return False, maxerr, worst, f"unexpected tfm outputs {sorted(set(got) - set(exp))}"
    return worst <= 1.0, maxerr, worst, detail


def short_exc(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    msg = re.sub(r"\d+", "#", msg)
    return f"{type(e).__name__}: {msg[:110]}"


def limits_args(a):
    out = ""
    if a.max_dim != 32:
        out += f" --max-dim {a.max_dim}"
    if a.max_len != 7:
        out += f" --max-len {a.max_len}"
    if a.max_batch != 3:
        out += f" --max-batch {a.max_batch}"
    return out


def cfg_str(cfg):
    return json.dumps(cfg, separators=(",", ":"))


class Stats:
    def __init__(self):
        self.cases = collections.Counter()
        self.passed = collections.Counter()
        self.failures = []
        self.skips = collections.Counter()  # (reason, tfm behaviour) -> count
        self.tfm_only = 0
        self.hint_quirk = 0
        self.worst = collections.defaultdict(lambda: (0.0, ""))  # kind -> (err/tol, case)
        self.full = 0
        self.degenerate = 0
        self.nan_torch = 0
        self.f64_rescue = 0
        self.ref_disagree = 0
        self.invalid_ok = 0
        self.invalid_bad = []


def run_case(a, index, tmp, stats: Stats):
    case_seed = (a.seed * 1_000_003 + index) & 0x7FFFFFFFFFFF
    rng = random.Random(case_seed)
    gen = Gen(case_seed)
    cfg = sample_config(rng)
    kind = cfg["module"]
    torch.manual_seed(case_seed)
    module = ex.build_module(cfg).eval()
    ex.randomize_parameters(module, gen.g)
    inputs, flags, extra, info = sample_inputs(rng, gen, cfg, module)
    invalid = None
    if rng.random() < a.invalid_rate:
        invalid = mutate_invalid(rng, cfg, inputs, info)
    name = f"s{a.seed}_c{index}"
    model_p = os.path.join(tmp, name + ".model.safetensors")
    in_p = os.path.join(tmp, name + ".input.safetensors")
    out_p = os.path.join(tmp, name + ".tfm.safetensors")
    exp_p = os.path.join(tmp, name + ".expected.safetensors")
    shapes = " ".join(f"{k}{list(v.shape)}{'b' if v.dtype == torch.bool else ''}"
                      for k, v in inputs.items())
    desc = (f"case {name} (--seed {a.seed} --case {index}{limits_args(a)}) {kind} cfg={cfg_str(cfg)} "
            f"N={info['N']} L={info['L']} S={info['S']} inputs: {shapes} flags={flags} "
            f"masks: {'; '.join(info['masks'])}"
            + (f" self_attn" if info.get("self_attn") else "")
            + (f" INVALID: {invalid}" if invalid else ""))
    if a.verbose:
        print(desc)
    stats.cases[kind] += 1
    files = [model_p, in_p, out_p, exp_p]

    def keep():
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            for f in files:
                if os.path.exists(f):
                    shutil.copy(f, a.keep)

    def cleanup():
        for f in files:
            if os.path.exists(f):
                os.unlink(f)

    def fail(msg):
        stats.failures.append(f"FAIL {desc} :: {msg}")
        print(f"FAIL {desc} :: {msg}", flush=True)
        keep()

    try:
        ex.export_module(module, model_p)
        if invalid:
            write_raw_inputs(in_p, inputs, flags)
        else:
            ex.export_inputs(in_p, inputs, flags)

        # PyTorch (with explicit causal masks where tfm uses the is_causal flag alone)
        tin = dict(inputs)
        tin.update(extra)
        tflags, quirk = torch_flags(cfg, tin, flags)
        if quirk:
            stats.hint_quirk += 1
        torch_err = None
        try:
            t32 = run_torch(module, kind, tin, tflags, torch.float32)
        except Exception as e:  # invalid for PyTorch
            torch_err = short_exc(e)
        rc, err = run_tfm(a.tfm, model_p, in_p, out_p)
        if torch_err is not None:
            if rc == 0:
                tfm_does = "tfm accepts"
            elif rc == 1 and err and "\n" not in err and not os.path.exists(out_p):
                tfm_does = "tfm rejects"
            else:
                tfm_does = f"tfm exit {rc}, {'output file left' if os.path.exists(out_p) else 'no output'}"
            reason = (invalid + " | " if invalid else "") + torch_err
            stats.skips[(reason, tfm_does)] += 1
            if a.verbose:
                print(f"  skip: {reason} -> {tfm_does}: {err}")
            if invalid:
                if tfm_does == "tfm rejects":
                    stats.invalid_ok += 1
                else:
                    stats.invalid_bad.append(f"{desc} :: torch: {torch_err}; {tfm_does}")
                    fail(f"invalid input ({invalid}) rejected by PyTorch ({torch_err}) but {tfm_does}")
            cleanup()
            return
        if invalid:
            clean = rc == 1 and err and "\n" not in err and not os.path.exists(out_p)
            if rc != 0 and clean:
                # e.g. a malformed attn_mask with is_causal=True: PyTorch's MHA drops the
                # mask (the hint path) before checking its shape; tfm checks every input
                why = " with is_causal" if any(flags.values()) else ""
                stats.skips[(f"{invalid}{why} | PyTorch accepts", "tfm rejects (stricter)")] += 1
                if a.verbose:
                    print(f"  PyTorch accepts, tfm rejects: {err}")
                cleanup()
                return
            stats.skips[(f"{invalid} | PyTorch accepts", "compared")] += 1
        if rc != 0:
            fail(f"tfm failed (exit {rc}): {err}")
            cleanup()
            return
        got = load_out(out_p)

        # reference.py (from the files, float64) for PyTorch's NaN entries
        sd, meta = ex.load_safetensors(model_p)
        fin, fflags = ex.load_safetensors(in_p)
        r64 = ref.forward(sd, meta, fin, fflags, dtype=torch.float64)
        if info["tfm_only"]:
            stats.tfm_only += 1
        nan = any(not bool(torch.isfinite(v).all()) for v in t32.values())
        stats.nan_torch += nan
        stats.full += info["full"]
        exp32 = merge(t32, r64)
        ex.save_outputs(exp_p, exp32["output"], exp32.get("attn_weights"))
        tol = 1e-4 if depth(cfg) > 2 else 1e-5
        ok, maxerr, ratio, detail = check(got, exp32, tol, tol)
        # the reference must agree with PyTorch wherever PyTorch is finite
        rok, rerr, rratio, _ = check({k: v for k, v in r64.items()}, exp32, tol, tol)
        if not rok:
            stats.ref_disagree += 1
            print(f"WARN reference.py differs from PyTorch (max err {rerr:.3g}, {rratio:.2f}x tol): "
                  f"{desc}", flush=True)
        if not ok:
            t64 = run_torch(module, kind, tin, tflags, torch.float64)
            exp64 = merge(t64, r64)
            ok64, maxerr64, ratio64, detail64 = check(got, exp64, tol, tol)
            _, e32_64, _, _ = check(exp32, exp64, tol, tol)
            if ok64:
                stats.f64_rescue += 1
                if a.verbose:
                    print(f"  float32 miss ({maxerr:.3g}) but within tolerance of float64")
            else:
                fail(f"max |tfm - torch32| = {maxerr:.3g} ({ratio:.2f}x tol, {detail}); "
                     f"|tfm - torch64| = {maxerr64:.3g} ({ratio64:.2f}x tol); "
                     f"|torch32 - torch64| = {e32_64:.3g}; tol rtol=atol={tol:g}*scale"
                     + ("; PyTorch NaN entries taken from reference.py" if nan else ""))
                cleanup()
                return
        stats.passed[kind] += 1
        if ok and ratio > stats.worst[kind][0]:
            stats.worst[kind] = (ratio, name)
        cleanup()
    except Exception as e:  # a bug in this script or an export error
        import traceback
        fail(f"script error: {short_exc(e)}\n{traceback.format_exc()}")
        cleanup()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case", type=int, help="run only this case index (of --seed)")
    ap.add_argument("--tfm", default=os.path.join(REPO, "build", "tfm"))
    ap.add_argument("--keep", metavar="DIR", help="keep the files of failing cases here")
    ap.add_argument("--invalid-rate", type=float, default=0.06,
                    help="fraction of cases made invalid on purpose (default 0.06)")
    ap.add_argument("--max-dim", type=int, default=32,
                    help="largest embed_dim/d_model/kdim/vdim (dim_feedforward up to twice it)")
    ap.add_argument("--max-len", type=int, default=7, help="largest L and S")
    ap.add_argument("--max-batch", type=int, default=3, help="largest N")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if not os.access(a.tfm, os.X_OK):
        print(f"random_check: {a.tfm} is not an executable; build first "
              "(cmake -S . -B build && cmake --build build)", file=sys.stderr)
        return 2
    LIMITS.update(dim=max(4, a.max_dim), len=max(1, a.max_len), batch=max(1, a.max_batch))
    torch.set_num_threads(1)
    stats = Stats()
    tmp = tempfile.mkdtemp(prefix="tfm-random-check-")
    try:
        indices = [a.case] if a.case is not None else range(a.count)
        for i in indices:
            run_case(a, i, tmp, stats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    total = sum(stats.cases.values())
    print(f"\nrandom_check seed {a.seed}: {total} cases, {sum(stats.passed.values())} passed, "
          f"{len(stats.failures)} failed, {sum(stats.skips.values())} skipped/invalid")
    for k in KINDS:
        w, wc = stats.worst[k]
        print(f"  {k:26s} {stats.cases[k]:4d} cases  {stats.passed[k]:4d} passed"
              f"  (worst passing error {w:.3f} of the tolerance{', ' + wc if wc else ''})")
    print(f"  is_causal without a mask (tfm-only, PyTorch given the explicit mask): {stats.tfm_only}")
    print(f"  MultiheadAttention is_causal hint with add_bias_kv/add_zero_attn (PyTorch "
          f"run with is_causal=False): {stats.hint_quirk}")
    print(f"  cases with fully masked query rows: {stats.full}")
    print(f"  PyTorch NaN somewhere (fully masked rows; reference.py used there): {stats.nan_torch}")
    print(f"  passed only against PyTorch float64 (PyTorch float32 rounding): {stats.f64_rescue}")
    if stats.ref_disagree:
        print(f"  reference.py disagreed with finite PyTorch values: {stats.ref_disagree}")
    if stats.skips:
        print("  PyTorch raised (skipped; what tfm did):")
        for (reason, tfm_does), n in sorted(stats.skips.items(), key=lambda kv: -kv[1]):
            print(f"    {n:4d}  {reason}  ->  {tfm_does}")
    print(f"  deliberately invalid inputs rejected by both: {stats.invalid_ok}")
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
