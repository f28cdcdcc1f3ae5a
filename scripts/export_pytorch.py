#!/usr/bin/env python3
"""Export PyTorch attention/Transformer modules, inputs and outputs for tfm.

tfm reads three kinds of safetensors file:

MODEL     a module's state_dict under PyTorch's own key names (float32), with
          ``__metadata__`` = {"module": <class name>, constructor arguments under
          PyTorch's names as strings, "torch_version"}.
INPUT     forward() arguments by name (query key value key_padding_mask attn_mask;
          src src_mask src_key_padding_mask; src mask src_key_padding_mask;
          tgt memory tgt_mask memory_mask tgt_key_padding_mask
          memory_key_padding_mask; src tgt src_mask tgt_mask memory_mask
          src_key_padding_mask tgt_key_padding_mask memory_key_padding_mask);
          masks are bool (True = masked out) or float32 (added to the scores).
          ``__metadata__`` holds the boolean flags that were given: need_weights,
          average_attn_weights, is_causal, src_is_causal, tgt_is_causal,
          memory_is_causal ("true"/"false").
EXPECTED  "output" (and "attn_weights" when need_weights), metadata
          torch_version plus whatever the caller adds (make_fixtures adds rtol/atol).

Supported modules: nn.MultiheadAttention, nn.TransformerEncoderLayer,
nn.TransformerEncoder, nn.TransformerDecoderLayer, nn.TransformerDecoder and
nn.Transformer, exactly those classes (not subclasses, whose forward() tfm cannot
know), with activation relu or gelu (exact, approximate="none"), LayerNorms with
elementwise_affine, identical layers in a stack, and final norms whose eps/bias
match the layers. Anything else is rejected with a message saying why.

Note: nn.TransformerEncoder built with enable_nested_tensor=True (the default)
takes a nested-tensor fast path in eval mode under torch.no_grad() when given a
src_key_padding_mask; that path returns zeros at padded positions, whereas tfm
(like PyTorch's regular path) computes them. Compare with enable_nested_tensor=False.

Library use
-----------
    import torch, export_pytorch as ex
    layer = torch.nn.TransformerEncoderLayer(16, 4, 64, batch_first=True).eval()
    ex.export_module(layer, "layer.safetensors")
    src = torch.randn(2, 5, 16)
    ex.export_inputs("in.safetensors", {"src": src}, {"is_causal": False})
    ex.save_outputs("out.safetensors", layer(src))

Command line
------------
Export a module pickled with torch.save(module, "model.pt"):
    python3 scripts/export_pytorch.py --load model.pt --out model.safetensors

Build a fresh module from constructor flags (PyTorch's own initialisation, or
--init randn for random non-default weights), optionally with random inputs and
PyTorch's output for them:
    python3 scripts/export_pytorch.py --module TransformerEncoderLayer \\
        --d_model 16 --nhead 4 --dim_feedforward 32 --activation gelu \\
        --batch_first --norm_first --seed 0 --out m.safetensors \\
        --inputs in.safetensors --expected out.safetensors --batch 2 --src-len 5
    python3 scripts/export_pytorch.py --module MultiheadAttention --embed_dim 8 \\
        --num_heads 2 --kdim 6 --out mha.safetensors --inputs in.safetensors \\
        --expected out.safetensors --tgt-len 3 --src-len 4 --need-weights
    python3 scripts/export_pytorch.py --module Transformer --d_model 16 --nhead 4 \\
        --num_encoder_layers 2 --num_decoder_layers 2 --out t.safetensors \\
        --inputs in.safetensors --expected out.safetensors --causal

--causal adds the causal (square subsequent) mask to the self-attention (attn_mask,
src_mask/mask or tgt_mask) together with the matching is_causal flag.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import tempfile
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

MODULE_KINDS = (
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "TransformerEncoder",
    "TransformerDecoderLayer",
    "TransformerDecoder",
    "Transformer",
)

# forward() tensor arguments of each module, in PyTorch's order
INPUT_NAMES = {
    "MultiheadAttention": ("query", "key", "value", "key_padding_mask", "attn_mask"),
    "TransformerEncoderLayer": ("src", "src_mask", "src_key_padding_mask"),
    "TransformerEncoder": ("src", "mask", "src_key_padding_mask"),
    "TransformerDecoderLayer": ("tgt", "memory", "tgt_mask", "memory_mask",
                                "tgt_key_padding_mask", "memory_key_padding_mask"),
    "TransformerDecoder": ("tgt", "memory", "tgt_mask", "memory_mask",
                           "tgt_key_padding_mask", "memory_key_padding_mask"),
    "Transformer": ("src", "tgt", "src_mask", "tgt_mask", "memory_mask",
                    "src_key_padding_mask", "tgt_key_padding_mask",
                    "memory_key_padding_mask"),
}
# forward() boolean flags of each module
FLAG_NAMES = {
    "MultiheadAttention": ("need_weights", "average_attn_weights", "is_causal"),
    "TransformerEncoderLayer": ("is_causal",),
    "TransformerEncoder": ("is_causal",),
    "TransformerDecoderLayer": ("tgt_is_causal", "memory_is_causal"),
    "TransformerDecoder": ("tgt_is_causal", "memory_is_causal"),
    "Transformer": ("src_is_causal", "tgt_is_causal", "memory_is_causal"),
}
ALL_INPUT_NAMES = sorted({n for v in INPUT_NAMES.values() for n in v})
ALL_FLAG_NAMES = sorted({n for v in FLAG_NAMES.values() for n in v})
MASK_NAMES = {n for n in ALL_INPUT_NAMES if "mask" in n}


class ExportError(ValueError):
    """A module, input or option that tfm's file format cannot represent."""


# --------------------------------------------------------------------------------------
# safetensors writing (deterministic)
# --------------------------------------------------------------------------------------
_ST_DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.bool: "BOOL",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.int8: "I8",
}


def save_safetensors(tensors: dict, path: str, metadata: dict | None = None) -> None:
    """Write `tensors` as a safetensors file, byte-for-byte reproducibly.

    Same layout as safetensors.torch.save_file (data sorted by dtype size, then
    name; header padded with spaces to a multiple of 8), but with the metadata
    keys sorted: save_file serialises the metadata from a Rust HashMap whose
    order changes from run to run, which would make regenerated fixtures differ.
    The file is written to a temporary name and renamed into place.
    """
    items = []
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ExportError(f"{name}: not a tensor ({type(t).__name__})")
        if t.dtype not in _ST_DTYPES:
            raise ExportError(f"{name}: dtype {t.dtype} not supported")
        t = t.detach().to("cpu").contiguous()
        items.append((name, t))
    items.sort(key=lambda it: (-it[1].element_size(), it[0]))
    header: dict = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise ExportError(f"metadata {k}: value must be a string, got {v!r}")
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    blobs = []
    offset = 0
    for name, t in items:
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().tobytes()
        else:
            data = t.numpy().tobytes()
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    hdr = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hdr)))
            f.write(hdr)
            for b in blobs:
                f.write(b)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_safetensors(path: str):
    """(tensors: dict, metadata: dict) of a safetensors file."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


# --------------------------------------------------------------------------------------
# module inspection
# --------------------------------------------------------------------------------------
def _b(v: bool) -> str:
    return "true" if v else "false"


def _activation_name(layer, where: str) -> str:
    """'relu' or 'gelu' for a layer's activation, else ExportError."""
    act = getattr(layer, "activation", None)
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu:
        return "gelu"
    if isinstance(act, nn.GELU):
        if act.approximate != "none":
            raise ExportError(
                f"{where}: activation nn.GELU(approximate={act.approximate!r}) is not "
                "supported; tfm implements relu and exact gelu only")
        return "gelu"
    name = getattr(act, "__name__", None) or type(act).__name__
    raise ExportError(
        f"{where}: activation {name!r} is a custom callable; tfm implements only "
        "relu (F.relu / nn.ReLU / 'relu') and gelu (F.gelu / nn.GELU() / 'gelu')")


def _exact_type(m, cls, where: str) -> None:
    if type(m) is not cls:
        if isinstance(m, cls):
            raise ExportError(
                f"{where}: {type(m).__module__}.{type(m).__qualname__} is a subclass "
                f"of nn.{cls.__name__}; tfm implements nn.{cls.__name__}.forward only, "
                "so subclasses (which may change forward) are not exported")
        raise ExportError(f"{where}: expected nn.{cls.__name__}, got {type(m).__name__}")


def _check_layer_norm(ln, d_model: int, eps: float, bias: bool, where: str) -> None:
    _exact_type(ln, nn.LayerNorm, where)
    if tuple(ln.normalized_shape) != (d_model,):
        raise ExportError(f"{where}: normalized_shape {tuple(ln.normalized_shape)} != ({d_model},)")
    if not ln.elementwise_affine:
        raise ExportError(f"{where}: LayerNorm without elementwise_affine is not supported")
    if ln.eps != eps:
        raise ExportError(f"{where}: eps {ln.eps!r} differs from the layer's layer_norm_eps {eps!r}")
    if (ln.bias is not None) != bias:
        raise ExportError(f"{where}: LayerNorm bias presence differs from the layer's bias={bias}")


def _mha_config(m, where: str) -> dict:
    _exact_type(m, nn.MultiheadAttention, where)
    has_in_bias = m.in_proj_bias is not None
    has_out_bias = m.out_proj.bias is not None
    if has_in_bias != has_out_bias:
        raise ExportError(f"{where}: in_proj_bias and out_proj.bias must both be present or absent")
    if (m.bias_k is None) != (m.bias_v is None):
        raise ExportError(f"{where}: bias_k and bias_v must both be present or absent")
    same = m.kdim == m.embed_dim and m.vdim == m.embed_dim
    if bool(m._qkv_same_embed_dim) != same or (m.in_proj_weight is not None) != same:
        raise ExportError(f"{where}: inconsistent _qkv_same_embed_dim/kdim/vdim")
    if m.embed_dim % m.num_heads != 0:
        raise ExportError(f"{where}: embed_dim not divisible by num_heads")
    return {
        "embed_dim": str(m.embed_dim),
        "num_heads": str(m.num_heads),
        "bias": _b(has_in_bias),
        "add_bias_kv": _b(m.bias_k is not None),
        "add_zero_attn": _b(bool(m.add_zero_attn)),
        "kdim": str(m.kdim),
        "vdim": str(m.vdim),
        "batch_first": _b(bool(m.batch_first)),
    }


def _check_inner_attn(attn, cfg_layer: dict, where: str) -> None:
    c = _mha_config(attn, where)
    d = cfg_layer["d_model"]
    want = {"embed_dim": d, "num_heads": cfg_layer["nhead"], "bias": cfg_layer["bias"],
            "add_bias_kv": "false", "add_zero_attn": "false", "kdim": d, "vdim": d,
            "batch_first": cfg_layer["batch_first"]}
    for k, v in want.items():
        if c[k] != v:
            raise ExportError(f"{where}: {k}={c[k]} but the layer needs {k}={v}")


def _layer_config(layer, decoder: bool, where: str) -> dict:
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    _exact_type(layer, cls, where)
    sa = layer.self_attn
    _exact_type(sa, nn.MultiheadAttention, where + ".self_attn")
    _exact_type(layer.linear1, nn.Linear, where + ".linear1")
    _exact_type(layer.linear2, nn.Linear, where + ".linear2")
    d_model = sa.embed_dim
    bias = layer.linear1.bias is not None
    eps = layer.norm1.eps
    cfg = {
        "d_model": str(d_model),
        "nhead": str(sa.num_heads),
        "dim_feedforward": str(layer.linear1.out_features),
        "activation": _activation_name(layer, where),
        "layer_norm_eps": repr(float(eps)),
        "batch_first": _b(bool(sa.batch_first)),
        "norm_first": _b(bool(layer.norm_first)),
        "bias": _b(bias),
    }
    if layer.linear1.in_features != d_model or layer.linear2.in_features != layer.linear1.out_features \
            or layer.linear2.out_features != d_model:
        raise ExportError(f"{where}: linear1/linear2 shapes do not fit d_model={d_model}")
    if (layer.linear2.bias is not None) != bias:
        raise ExportError(f"{where}: linear1.bias and linear2.bias must both be present or absent")
    _check_inner_attn(sa, cfg, where + ".self_attn")
    norms = ["norm1", "norm2"]
    if decoder:
        _check_inner_attn(layer.multihead_attn, cfg, where + ".multihead_attn")
        norms.append("norm3")
    for n in norms:
        _check_layer_norm(getattr(layer, n), d_model, eps, bias, f"{where}.{n}")
    return cfg


def _stack_config(stack, decoder: bool, where: str, need_norm: bool = False) -> dict:
    cls = nn.TransformerDecoder if decoder else nn.TransformerEncoder
    _exact_type(stack, cls, where)
    layers = stack.layers
    if len(layers) < 1:
        raise ExportError(f"{where}: no layers")
    cfg = _layer_config(layers[0], decoder, f"{where}.layers.0")
    for i in range(1, len(layers)):
        ci = _layer_config(layers[i], decoder, f"{where}.layers.{i}")
        if ci != cfg:
            diff = {k: (cfg[k], ci[k]) for k in cfg if cfg[k] != ci[k]}
            raise ExportError(f"{where}.layers.{i}: differs from layers.0 in {diff}; "
                              "tfm needs identical layers")
    cfg = dict(cfg)
    cfg["num_layers"] = str(len(layers))
    if stack.norm is None:
        if need_norm:
            raise ExportError(f"{where}: nn.Transformer needs a final norm")
        cfg["norm"] = "false"
    else:
        _check_layer_norm(stack.norm, int(cfg["d_model"]), float(cfg["layer_norm_eps"]),
                          cfg["bias"] == "true", f"{where}.norm")
        cfg["norm"] = "true"
    return cfg


def module_config(module) -> dict:
    """The MODEL-file metadata (all strings, without torch_version) of a live module."""
    kind = type(module).__name__
    if kind not in MODULE_KINDS or getattr(nn, kind) is not type(module):
        for k in MODULE_KINDS:
            if isinstance(module, getattr(nn, k)):
                _exact_type(module, getattr(nn, k), "module")
        raise ExportError(f"cannot export {type(module).__qualname__}: tfm implements "
                          + ", ".join("nn." + k for k in MODULE_KINDS))
    if kind == "MultiheadAttention":
        cfg = _mha_config(module, "module")
    elif kind == "TransformerEncoderLayer":
        cfg = _layer_config(module, False, "module")
    elif kind == "TransformerDecoderLayer":
        cfg = _layer_config(module, True, "module")
    elif kind == "TransformerEncoder":
        cfg = _stack_config(module, False, "module")
    elif kind == "TransformerDecoder":
        cfg = _stack_config(module, True, "module")
    else:
        enc = _stack_config(module.encoder, False, "encoder", need_norm=True)
        dec = _stack_config(module.decoder, True, "decoder", need_norm=True)
        ke = {k: v for k, v in enc.items() if k not in ("num_layers", "norm")}
        kd = {k: v for k, v in dec.items() if k not in ("num_layers", "norm")}
        if ke != kd:
            diff = {k: (ke[k], kd[k]) for k in ke if ke[k] != kd[k]}
            raise ExportError(f"encoder and decoder layers differ in {diff}")
        cfg = dict(ke)
        cfg["num_encoder_layers"] = enc["num_layers"]
        cfg["num_decoder_layers"] = dec["num_layers"]
    return {"module": kind, **cfg}


def build_module(cfg: dict, dropout: float = 0.0, device=None):
    """A fresh PyTorch module (PyTorch's initialisation) from a config dict whose values
    are strings (as in MODEL metadata) or Python values. Encoders get
    enable_nested_tensor=False. device="meta" builds it without allocating."""
    def g(k, default=None):
        v = cfg.get(k, default)
        if v is None:
            raise ExportError(f"missing constructor argument {k}")
        return v

    def gb(k, default=None):
        v = g(k, default)
        if isinstance(v, str):
            if v not in ("true", "false"):
                raise ExportError(f"{k} must be true or false, got {v!r}")
            return v == "true"
        return bool(v)

    def gi(k, default=None):
        return int(g(k, default))

    kind = g("module")
    if kind not in MODULE_KINDS:
        raise ExportError(f"unknown module {kind!r}; one of {', '.join(MODULE_KINDS)}")
    if kind == "MultiheadAttention":
        e = gi("embed_dim")
        return nn.MultiheadAttention(
            e, gi("num_heads"), dropout=dropout, bias=gb("bias", True),
            add_bias_kv=gb("add_bias_kv", False), add_zero_attn=gb("add_zero_attn", False),
            kdim=gi("kdim", e), vdim=gi("vdim", e), batch_first=gb("batch_first", False),
            device=device)
    d = gi("d_model")
    act = g("activation", "relu")
    if act not in ("relu", "gelu"):
        raise ExportError(f"activation must be relu or gelu, got {act!r}")
    lkw = dict(d_model=d, nhead=gi("nhead"), dim_feedforward=gi("dim_feedforward", 2048),
               dropout=dropout, activation=act, layer_norm_eps=float(g("layer_norm_eps", 1e-5)),
               batch_first=gb("batch_first", False), norm_first=gb("norm_first", False),
               bias=gb("bias", True), device=device)
    if kind == "TransformerEncoderLayer":
        return nn.TransformerEncoderLayer(**lkw)
    if kind == "TransformerDecoderLayer":
        return nn.TransformerDecoderLayer(**lkw)
    if kind in ("TransformerEncoder", "TransformerDecoder"):
        norm = None
        if gb("norm", False):
            norm = nn.LayerNorm(d, eps=lkw["layer_norm_eps"], bias=lkw["bias"], device=device)
        if kind == "TransformerEncoder":
            return nn.TransformerEncoder(nn.TransformerEncoderLayer(**lkw), gi("num_layers"),
                                         norm=norm, enable_nested_tensor=False)
        return nn.TransformerDecoder(nn.TransformerDecoderLayer(**lkw), gi("num_layers"), norm=norm)
    with warnings.catch_warnings():  # "enable_nested_tensor is True, but ..." (turned off below)
        warnings.simplefilter("ignore")
        t = nn.Transformer(num_encoder_layers=gi("num_encoder_layers", 6),
                           num_decoder_layers=gi("num_decoder_layers", 6), **lkw)
    t.encoder.enable_nested_tensor = False
    t.encoder.use_nested_tensor = False
    return t


def randomize_parameters(module, generator: torch.Generator) -> None:
    """Overwrite every parameter with random non-default values (in state_dict order):
    matrices randn/sqrt(fan_in), LayerNorm weights 1 + 0.1*randn, LayerNorm biases
    0.1*randn, bias_k/bias_v 0.5*randn, other biases 0.2*randn."""
    ln_params = set()
    for mname, mod in module.named_modules():
        if isinstance(mod, nn.LayerNorm):
            for pname, _ in mod.named_parameters(recurse=False):
                ln_params.add(f"{mname}.{pname}" if mname else pname)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            r = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            if name in ln_params:
                v = 1.0 + 0.1 * r if leaf == "weight" else 0.1 * r
            elif leaf in ("bias_k", "bias_v"):
                v = 0.5 * r
            elif p.dim() >= 2:
                v = r / math.sqrt(p.shape[-1])
            else:
                v = 0.2 * r
            p.copy_(v.to(p.dtype))


# --------------------------------------------------------------------------------------
# file writers
# --------------------------------------------------------------------------------------
def export_module(module, path: str) -> dict:
    """Write `module`'s state_dict and config as a tfm MODEL file; returns the metadata.

    Raises ExportError for modules tfm cannot represent."""
    meta = module_config(module)
    sd = module.state_dict()
    # the state_dict must have exactly the keys of a module built from the config
    ref_keys = list(build_module(meta, device="meta").state_dict().keys())
    if list(sd.keys()) != ref_keys:
        extra = sorted(set(sd) - set(ref_keys))
        missing = sorted(set(ref_keys) - set(sd))
        raise ExportError(f"state_dict keys do not match nn.{meta['module']}: "
                          f"unexpected {extra}, missing {missing}")
    tensors = {}
    for k, v in sd.items():
        if not torch.is_floating_point(v):
            raise ExportError(f"{k}: dtype {v.dtype} is not a float")
        tensors[k] = v.detach().to("cpu", torch.float32).contiguous()
    meta = dict(meta)
    meta["torch_version"] = torch.__version__
    save_safetensors(tensors, path, meta)
    return meta


def export_inputs(path: str, tensors: dict, flags: dict | None = None) -> None:
    """Write forward() arguments as a tfm INPUT file. `tensors` maps argument names to
    tensors (None values are skipped); float tensors are stored as float32, masks as
    bool or float32. `flags` maps flag names to bools (None values are skipped)."""
    out = {}
    for name, t in tensors.items():
        if t is None:
            continue
        if name not in ALL_INPUT_NAMES:
            raise ExportError(f"unknown input {name!r}; known: {' '.join(ALL_INPUT_NAMES)}")
        if not isinstance(t, torch.Tensor):
            raise ExportError(f"{name}: not a tensor")
        if t.is_nested:
            raise ExportError(f"{name}: nested tensors are not supported; pad and use a key_padding_mask")
        if t.dtype == torch.bool:
            if name not in MASK_NAMES:
                raise ExportError(f"{name}: only masks may be bool")
            out[name] = t.detach().cpu().contiguous()
        elif torch.is_floating_point(t):
            out[name] = t.detach().to("cpu", torch.float32).contiguous()
        else:
            raise ExportError(f"{name}: dtype {t.dtype} not supported (float or bool masks)")
    meta = {}
    for k, v in (flags or {}).items():
        if v is None:
            continue
        if k not in ALL_FLAG_NAMES:
            raise ExportError(f"unknown flag {k!r}; known: {' '.join(ALL_FLAG_NAMES)}")
        meta[k] = _b(bool(v))
    save_safetensors(out, path, meta)


def save_outputs(path: str, output, attn_weights=None, meta: dict | None = None) -> None:
    """Write an EXPECTED file: "output" (and "attn_weights"), metadata torch_version
    plus `meta` (values converted with str)."""
    tensors = {"output": output.detach().to("cpu", torch.float32).contiguous()}
    if attn_weights is not None:
        tensors["attn_weights"] = attn_weights.detach().to("cpu", torch.float32).contiguous()
    m = {"torch_version": torch.__version__}
    for k, v in (meta or {}).items():
        m[k] = v if isinstance(v, str) else str(v)
    save_safetensors(tensors, path, m)


def run_module(module, kind: str, inputs: dict, flags: dict | None = None):
    """Call `module` with INPUT-file style arguments; returns (output, attn_weights)."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    kw = {k: v for k, v in inputs.items() if v is not None}
    kw.update(flags)
    if kind == "MultiheadAttention":
        q, k, v = kw.pop("query"), kw.pop("key"), kw.pop("value")
        kw.setdefault("need_weights", False)  # tfm's default
        out, w = module(q, k, v, **kw)
        return out, (w if kw["need_weights"] else None)
    return module(**kw), None


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def _causal(n: int) -> torch.Tensor:
    return torch.triu(torch.full((n, n), float("-inf")), diagonal=1)


def random_inputs(module, kind: str, batch: int, src_len: int, tgt_len: int,
                  generator: torch.Generator, causal: bool = False, need_weights: bool = False):
    """Random (inputs, flags) for `module` (no padding masks)."""
    cfg = module_config(module)
    bf = cfg["batch_first"] == "true"

    def seq(n, e):
        shape = (batch, n, e) if bf else (n, batch, e)
        if batch == 0:
            shape = (n, e)
        return torch.randn(shape, generator=generator)

    if kind == "MultiheadAttention":
        e, kd, vd = int(cfg["embed_dim"]), int(cfg["kdim"]), int(cfg["vdim"])
        inputs = {"query": seq(tgt_len, e), "key": seq(src_len, kd), "value": seq(src_len, vd)}
        flags = {"need_weights": need_weights, "average_attn_weights": True}
        if causal:
            if tgt_len != src_len:
                raise ExportError("--causal needs --tgt-len == --src-len for MultiheadAttention")
            inputs["attn_mask"] = _causal(tgt_len)
            flags["is_causal"] = True
        return inputs, flags
    d = int(cfg["d_model"])
    if kind in ("TransformerEncoderLayer", "TransformerEncoder"):
        inputs = {"src": seq(src_len, d)}
        flags = {}
        if causal:
            inputs["src_mask" if kind == "TransformerEncoderLayer" else "mask"] = _causal(src_len)
            flags["is_causal"] = True
        return inputs, flags
    if kind in ("TransformerDecoderLayer", "TransformerDecoder"):
        inputs = {"tgt": seq(tgt_len, d), "memory": seq(src_len, d)}
        flags = {}
        if causal:
            inputs["tgt_mask"] = _causal(tgt_len)
            flags["tgt_is_causal"] = True
        return inputs, flags
    inputs = {"src": seq(src_len, d), "tgt": seq(tgt_len, d)}
    flags = {}
    if causal:
        inputs["tgt_mask"] = _causal(tgt_len)
        flags["tgt_is_causal"] = True
    return inputs, flags


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description="Export PyTorch attention/Transformer modules to tfm's safetensors format.",
        epilog="See the module docstring (python3 -c 'import export_pytorch; "
               "help(export_pytorch)') for the file formats.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--load", metavar="FILE.pt", help="a module saved with torch.save(module, path)")
    src.add_argument("--module", choices=MODULE_KINDS, help="build a fresh module of this class")
    p.add_argument("--out", required=True, help="MODEL file to write (.safetensors)")
    # constructor arguments (PyTorch's names)
    p.add_argument("--embed_dim", type=int)
    p.add_argument("--num_heads", type=int)
    p.add_argument("--kdim", type=int)
    p.add_argument("--vdim", type=int)
    p.add_argument("--add_bias_kv", action="store_true")
    p.add_argument("--add_zero_attn", action="store_true")
    p.add_argument("--d_model", type=int)
    p.add_argument("--nhead", type=int)
    p.add_argument("--dim_feedforward", type=int, default=2048)
    p.add_argument("--activation", choices=("relu", "gelu"), default="relu")
    p.add_argument("--layer_norm_eps", type=float, default=1e-5)
    p.add_argument("--norm_first", action="store_true")
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--norm", type=_parse_bool, default=True,
                   help="TransformerEncoder/Decoder: final LayerNorm (default true)")
    p.add_argument("--num_encoder_layers", type=int, default=6)
    p.add_argument("--num_decoder_layers", type=int, default=6)
    p.add_argument("--bias", type=_parse_bool, default=True)
    p.add_argument("--batch_first", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=("torch", "randn"), default="torch",
                   help="torch: PyTorch's initialisation; randn: random non-default "
                        "weights (LayerNorm around 1, non-zero biases)")
    # inputs / expected output
    p.add_argument("--inputs", metavar="IN.safetensors", help="also write random inputs")
    p.add_argument("--expected", metavar="OUT.safetensors",
                   help="also write PyTorch's output for those inputs (needs --inputs)")
    p.add_argument("--batch", type=int, default=2, help="batch size N (0 = unbatched)")
    p.add_argument("--src-len", type=int, default=5, help="S: source / key length")
    p.add_argument("--tgt-len", type=int, default=4, help="L: target / query length")
    p.add_argument("--causal", action="store_true",
                   help="add a causal self-attention mask and its is_causal flag")
    p.add_argument("--need-weights", action="store_true",
                   help="MultiheadAttention: also return attention weights")
    a = p.parse_args(argv)

    try:
        if a.expected and not a.inputs:
            raise ExportError("--expected needs --inputs")
        if a.inputs and a.causal and a.module == "MultiheadAttention" and a.tgt_len != a.src_len:
            raise ExportError("--causal needs --tgt-len == --src-len for MultiheadAttention")
        if a.load:
            module = torch.load(a.load, map_location="cpu", weights_only=False)
            if isinstance(module, dict):
                raise ExportError(
                    f"{a.load} holds a dict (a state_dict?), not a module: build the module "
                    "in Python, load_state_dict() it, and call export_module(), or "
                    "torch.save() the module itself")
            if not isinstance(module, nn.Module):
                raise ExportError(f"{a.load} holds a {type(module).__name__}, not an nn.Module")
        else:
            cfg = {"module": a.module, "bias": a.bias, "batch_first": a.batch_first}
            if a.module == "MultiheadAttention":
                if a.embed_dim is None or a.num_heads is None:
                    raise ExportError("MultiheadAttention needs --embed_dim and --num_heads")
                cfg.update(embed_dim=a.embed_dim, num_heads=a.num_heads,
                           kdim=a.kdim or a.embed_dim, vdim=a.vdim or a.embed_dim,
                           add_bias_kv=a.add_bias_kv, add_zero_attn=a.add_zero_attn)
            else:
                if a.d_model is None or a.nhead is None:
                    raise ExportError(f"{a.module} needs --d_model and --nhead")
                cfg.update(d_model=a.d_model, nhead=a.nhead, dim_feedforward=a.dim_feedforward,
                           activation=a.activation, layer_norm_eps=a.layer_norm_eps,
                           norm_first=a.norm_first, num_layers=a.num_layers, norm=a.norm,
                           num_encoder_layers=a.num_encoder_layers,
                           num_decoder_layers=a.num_decoder_layers)
            torch.manual_seed(a.seed)
            module = build_module(cfg)
            if a.init == "randn":
                g = torch.Generator().manual_seed(a.seed)
                randomize_parameters(module, g)
        module = module.eval()
        meta = export_module(module, a.out)
        print(f"wrote {a.out}: {meta['module']} "
              + " ".join(f"{k}={v}" for k, v in meta.items() if k not in ("module", "torch_version")))
        if a.inputs:
            kind = meta["module"]
            g = torch.Generator().manual_seed(a.seed + 1)
            inputs, flags = random_inputs(module, kind, a.batch, a.src_len, a.tgt_len, g,
                                          causal=a.causal, need_weights=a.need_weights)
            export_inputs(a.inputs, inputs, flags)
            print(f"wrote {a.inputs}: " + " ".join(f"{k}{tuple(v.shape)}" for k, v in inputs.items()))
            if a.expected:
                with torch.no_grad():
                    out, w = run_module(module, kind, inputs, flags)
                save_outputs(a.expected, out, w)
                print(f"wrote {a.expected}: output{tuple(out.shape)}"
                      + (f" attn_weights{tuple(w.shape)}" if w is not None else ""))
    except ExportError as e:
        print(f"export_pytorch: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
