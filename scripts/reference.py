#!/usr/bin/env python3
"""Plain-torch reference of the six modules tfm implements, in evaluation mode.

Written with explicit matmuls, softmax, LayerNorm and activations (no
nn.MultiheadAttention, F.scaled_dot_product_attention or F.layer_norm), from a
MODEL file's state_dict and metadata, so it checks the file format as well as the
arithmetic. It computes in the dtype of the inputs (float32 or float64).

Semantics are PyTorch's (torch/nn/functional.py multi_head_attention_forward,
torch/nn/modules/transformer.py), with two tfm definitions where PyTorch has none:

* A query row whose every key is masked (all scores -inf) has attention weights
  zero and attention output zero before out_proj, so the MultiheadAttention output
  row is out_proj.bias (zero without bias). PyTorch gives NaN there on the
  need_weights=True path and on its fused fast paths.
* is_causal=True without an attn_mask applies the causal mask (key j > query i
  masked, top-left aligned when L != S); PyTorch's MultiheadAttention raises. With
  an attn_mask, is_causal is only a hint and the given mask is used.

Masks: bool True = masked (-inf); float masks are added to the scores. attn_mask is
(L, S) or (N*H, L, S) ((H, L, S) unbatched), key_padding_mask (N, S) ((S,)
unbatched); both are added. add_bias_kv appends bias_k/bias_v as one more key/value
(masks get a 0 column), add_zero_attn appends a zero key/value after the head split
(masks get another 0 column). q is scaled by 1/sqrt(head_dim).

Library:  forward(state_dict, meta, inputs, flags) -> {"output": ..., "attn_weights": ...}
CLI:      python3 scripts/reference.py model.safetensors input.safetensors
              [--out expected.safetensors] [--compare expected.safetensors] [--float64]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch


def _flag(meta: dict, key: str, default: bool) -> bool:
    v = meta.get(key)
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    if v not in ("true", "false"):
        raise ValueError(f"{key}: expected true/false, got {v!r}")
    return v == "true"


def _int(meta: dict, key: str, default=None) -> int:
    v = meta.get(key, default)
    if v is None:
        raise ValueError(f"missing {key}")
    return int(v)


def additive_mask(mask, dtype):
    """bool -> 0/-inf, float -> itself, in `dtype`."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise ValueError("masks must be bool or float")
    return mask.to(dtype)


def causal_mask(L: int, S: int, dtype) -> torch.Tensor:
    return torch.triu(torch.full((L, S), float("-inf"), dtype=dtype), diagonal=1)


def softmax_rows(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim; rows that are all -inf give all zeros."""
    m = scores.amax(dim=-1, keepdim=True)
    dead = torch.isneginf(m)
    m = torch.where(dead, torch.zeros_like(m), m)
    e = torch.exp(scores - m)
    s = e.sum(dim=-1, keepdim=True)
    s = torch.where(dead, torch.ones_like(s), s)
    return e / s


def linear(x, w, b=None):
    y = x @ w.transpose(0, 1)
    if b is not None:
        y = y + b
    return y


def layer_norm(x, w, b, eps):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps) * w
    if b is not None:
        y = y + b
    return y


def activation(x, name):
    if name == "relu":
        return torch.clamp_min(x, 0)
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    raise ValueError(f"activation {name!r}")


# --------------------------------------------------------------------------------------
# attention, on batch-first tensors: q (N, L, E), k (N, S, kdim), v (N, S, vdim)
# --------------------------------------------------------------------------------------
def attention(sd, p, cfg, q_in, k_in, v_in, key_padding_mask=None, attn_mask=None,
              need_weights=False, average_attn_weights=True, is_causal=False):
    """MultiheadAttention on batch-first inputs. key_padding_mask (N, S), attn_mask
    (L, S) or (N*H, L, S), bool or float. Returns (out (N, L, E), weights or None)."""
    dt = q_in.dtype
    E = _int(cfg, "embed_dim")
    H = _int(cfg, "num_heads")
    hd = E // H
    N, L, _ = q_in.shape
    S = k_in.shape[1]
    if p + "in_proj_weight" in sd:
        wq, wk, wv = sd[p + "in_proj_weight"].to(dt).chunk(3)
    else:
        wq = sd[p + "q_proj_weight"].to(dt)
        wk = sd[p + "k_proj_weight"].to(dt)
        wv = sd[p + "v_proj_weight"].to(dt)
    bq = bk = bv = None
    if p + "in_proj_bias" in sd:
        bq, bk, bv = sd[p + "in_proj_bias"].to(dt).chunk(3)
    q = linear(q_in, wq, bq)  # (N, L, E)
    k = linear(k_in, wk, bk)  # (N, S, E)
    v = linear(v_in, wv, bv)

    mask = torch.zeros((N, H, L, S), dtype=dt)
    if attn_mask is None and is_causal:
        mask = mask + causal_mask(L, S, dt)
    elif attn_mask is not None:
        am = additive_mask(attn_mask, dt)
        if am.dim() == 2:
            if tuple(am.shape) != (L, S):
                raise ValueError(f"attn_mask shape {tuple(am.shape)}, expected {(L, S)}")
            mask = mask + am
        else:
            if tuple(am.shape) != (N * H, L, S):
                raise ValueError(f"attn_mask shape {tuple(am.shape)}, expected {(N * H, L, S)}")
            mask = mask + am.reshape(N, H, L, S)
    if key_padding_mask is not None:
        kpm = additive_mask(key_padding_mask, dt)
        if tuple(kpm.shape) != (N, S):
            raise ValueError(f"key_padding_mask shape {tuple(kpm.shape)}, expected {(N, S)}")
        mask = mask + kpm[:, None, None, :]

    if p + "bias_k" in sd:
        bias_k = sd[p + "bias_k"].to(dt).reshape(1, 1, E).expand(N, 1, E)
        bias_v = sd[p + "bias_v"].to(dt).reshape(1, 1, E).expand(N, 1, E)
        k = torch.cat([k, bias_k], dim=1)
        v = torch.cat([v, bias_v], dim=1)
        mask = torch.cat([mask, torch.zeros((N, H, L, 1), dtype=dt)], dim=-1)

    qh = q.reshape(N, L, H, hd).transpose(1, 2)  # (N, H, L, hd)
    kh = k.reshape(N, -1, H, hd).transpose(1, 2)
    vh = v.reshape(N, -1, H, hd).transpose(1, 2)
    if _flag(cfg, "add_zero_attn", False):
        kh = torch.cat([kh, torch.zeros((N, H, 1, hd), dtype=dt)], dim=2)
        vh = torch.cat([vh, torch.zeros((N, H, 1, hd), dtype=dt)], dim=2)
        mask = torch.cat([mask, torch.zeros((N, H, L, 1), dtype=dt)], dim=-1)

    scores = (qh * (1.0 / math.sqrt(hd))) @ kh.transpose(-2, -1) + mask
    w = softmax_rows(scores)  # (N, H, L, S')
    o = w @ vh  # (N, H, L, hd)
    o = o.transpose(1, 2).reshape(N, L, E)
    out = linear(o, sd[p + "out_proj.weight"].to(dt),
                 sd[p + "out_proj.bias"].to(dt) if p + "out_proj.bias" in sd else None)
    weights = None
    if need_weights:
        weights = w.mean(dim=1) if average_attn_weights else w
    return out, weights


# --------------------------------------------------------------------------------------
# layers, batch-first internally
# --------------------------------------------------------------------------------------
def _attn_cfg(cfg):
    d = cfg["d_model"]
    return {"embed_dim": d, "num_heads": cfg["nhead"], "add_zero_attn": "false"}


def _ln(sd, p, x, cfg):
    return layer_norm(x, sd[p + "weight"].to(x.dtype),
                      sd[p + "bias"].to(x.dtype) if p + "bias" in sd else None,
                      float(cfg["layer_norm_eps"]))


def _ff(sd, p, x, cfg):
    dt = x.dtype
    b1 = sd.get(p + "linear1.bias")
    b2 = sd.get(p + "linear2.bias")
    h = linear(x, sd[p + "linear1.weight"].to(dt), None if b1 is None else b1.to(dt))
    h = activation(h, cfg["activation"])
    return linear(h, sd[p + "linear2.weight"].to(dt), None if b2 is None else b2.to(dt))


def encoder_layer(sd, p, cfg, x, src_mask=None, src_key_padding_mask=None, is_causal=False):
    ac = _attn_cfg(cfg)

    def sa(y):
        return attention(sd, p + "self_attn.", ac, y, y, y, src_key_padding_mask, src_mask,
                         is_causal=is_causal)[0]

    if _flag(cfg, "norm_first", False):
        x = x + sa(_ln(sd, p + "norm1.", x, cfg))
        x = x + _ff(sd, p, _ln(sd, p + "norm2.", x, cfg), cfg)
    else:
        x = _ln(sd, p + "norm1.", x + sa(x), cfg)
        x = _ln(sd, p + "norm2.", x + _ff(sd, p, x, cfg), cfg)
    return x


def decoder_layer(sd, p, cfg, x, memory, tgt_mask=None, memory_mask=None,
                  tgt_key_padding_mask=None, memory_key_padding_mask=None,
                  tgt_is_causal=False, memory_is_causal=False):
    ac = _attn_cfg(cfg)

    def sa(y):
        return attention(sd, p + "self_attn.", ac, y, y, y, tgt_key_padding_mask, tgt_mask,
                         is_causal=tgt_is_causal)[0]

    def ca(y):
        return attention(sd, p + "multihead_attn.", ac, y, memory, memory,
                         memory_key_padding_mask, memory_mask, is_causal=memory_is_causal)[0]

    if _flag(cfg, "norm_first", False):
        x = x + sa(_ln(sd, p + "norm1.", x, cfg))
        x = x + ca(_ln(sd, p + "norm2.", x, cfg))
        x = x + _ff(sd, p, _ln(sd, p + "norm3.", x, cfg), cfg)
    else:
        x = _ln(sd, p + "norm1.", x + sa(x), cfg)
        x = _ln(sd, p + "norm2.", x + ca(x), cfg)
        x = _ln(sd, p + "norm3.", x + _ff(sd, p, x, cfg), cfg)
    return x


def encoder(sd, p, cfg, x, mask=None, src_key_padding_mask=None, is_causal=False,
            num_layers=None, norm=None):
    n = _int(cfg, "num_layers") if num_layers is None else num_layers
    for i in range(n):
        x = encoder_layer(sd, f"{p}layers.{i}.", cfg, x, mask, src_key_padding_mask, is_causal)
    if (_flag(cfg, "norm", False) if norm is None else norm):
        x = _ln(sd, p + "norm.", x, cfg)
    return x


def decoder(sd, p, cfg, x, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
            memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False,
            num_layers=None, norm=None):
    n = _int(cfg, "num_layers") if num_layers is None else num_layers
    for i in range(n):
        x = decoder_layer(sd, f"{p}layers.{i}.", cfg, x, memory, tgt_mask, memory_mask,
                          tgt_key_padding_mask, memory_key_padding_mask,
                          tgt_is_causal, memory_is_causal)
    if (_flag(cfg, "norm", False) if norm is None else norm):
        x = _ln(sd, p + "norm.", x, cfg)
    return x


# --------------------------------------------------------------------------------------
# top level: layout handling (batch_first, unbatched)
# --------------------------------------------------------------------------------------
def forward(sd: dict, meta: dict, inputs: dict, flags: dict | None = None, dtype=None) -> dict:
    """Evaluate a MODEL (state_dict + metadata) on INPUT tensors and flags.

    `flags` values may be bools or "true"/"false" strings; missing flags take tfm's
    defaults (need_weights false, average_attn_weights true, is_causal flags false).
    Computes in `dtype` (default: the dtype of the first float input).
    Returns {"output": tensor} plus "attn_weights" for MultiheadAttention with
    need_weights."""
    flags = dict(flags or {})
    kind = meta["module"]
    bf = _flag(meta, "batch_first", False)
    main = "query" if kind == "MultiheadAttention" else "src" if "src" in inputs else "tgt"
    if dtype is None:
        dtype = inputs[main].dtype
    t = {k: (v.to(dtype) if torch.is_floating_point(v) else v)
         for k, v in inputs.items() if v is not None}
    batched = t[main].dim() == 3

    def seq(name):  # -> (N, L, E)
        x = t.get(name)
        if x is None:
            return None
        if not batched:
            if x.dim() != 2:
                raise ValueError(f"{name}: expected 2-D (unbatched) input")
            return x.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"{name}: expected 3-D input")
        return x if bf else x.transpose(0, 1)

    def kpm(name):
        m = t.get(name)
        if m is None:
            return None
        return m.unsqueeze(0) if not batched else m

    def am(name):
        return t.get(name)

    def f(name):
        return _flag(flags, name, False)

    def unseq(x):
        if not batched:
            return x.squeeze(0)
        return x if bf else x.transpose(0, 1)

    res = {}
    if kind == "MultiheadAttention":
        need = f("need_weights")
        out, w = attention(sd, "", meta, seq("query"), seq("key"), seq("value"),
                           kpm("key_padding_mask"), am("attn_mask"), need,
                           _flag(flags, "average_attn_weights", True), f("is_causal"))
        res["output"] = unseq(out)
        if need:
            res["attn_weights"] = w if batched else w.squeeze(0)
        return res
    if kind == "TransformerEncoderLayer":
        y = encoder_layer(sd, "", meta, seq("src"), am("src_mask"),
                          kpm("src_key_padding_mask"), f("is_causal"))
    elif kind == "TransformerEncoder":
        y = encoder(sd, "", meta, seq("src"), am("mask"), kpm("src_key_padding_mask"),
                    f("is_causal"))
    elif kind == "TransformerDecoderLayer":
        y = decoder_layer(sd, "", meta, seq("tgt"), seq("memory"), am("tgt_mask"),
                          am("memory_mask"), kpm("tgt_key_padding_mask"),
                          kpm("memory_key_padding_mask"), f("tgt_is_causal"),
                          f("memory_is_causal"))
    elif kind == "TransformerDecoder":
        y = decoder(sd, "", meta, seq("tgt"), seq("memory"), am("tgt_mask"), am("memory_mask"),
                    kpm("tgt_key_padding_mask"), kpm("memory_key_padding_mask"),
                    f("tgt_is_causal"), f("memory_is_causal"))
    elif kind == "Transformer":
        mem = encoder(sd, "encoder.", meta, seq("src"), am("src_mask"),
                      kpm("src_key_padding_mask"), f("src_is_causal"),
                      num_layers=_int(meta, "num_encoder_layers"), norm=True)
        y = decoder(sd, "decoder.", meta, seq("tgt"), mem, am("tgt_mask"), am("memory_mask"),
                    kpm("tgt_key_padding_mask"), kpm("memory_key_padding_mask"),
                    f("tgt_is_causal"), f("memory_is_causal"),
                    num_layers=_int(meta, "num_decoder_layers"), norm=True)
    else:
        raise ValueError(f"unknown module {kind!r}")
    res["output"] = unseq(y)
    return res


def forward_files(model_path: str, input_path: str, dtype=None) -> dict:
    from safetensors import safe_open

    with safe_open(model_path, framework="pt") as fm:
        meta = dict(fm.metadata() or {})
        sd = {k: fm.get_tensor(k) for k in fm.keys()}
    with safe_open(input_path, framework="pt") as fi:
        flags = dict(fi.metadata() or {})
        inputs = {k: fi.get_tensor(k) for k in fi.keys()}
    return forward(sd, meta, inputs, flags, dtype=dtype)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="tfm's plain-torch reference forward pass")
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("--out", help="write the result as an EXPECTED file")
    ap.add_argument("--compare", help="an EXPECTED file to compare with (prints max |diff|)")
    ap.add_argument("--float64", action="store_true", help="compute in float64")
    a = ap.parse_args(argv)
    res = forward_files(a.model, a.inputs, torch.float64 if a.float64 else None)
    for k, v in res.items():
        print(f"{k}: shape {tuple(v.shape)}")
    if a.out:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import export_pytorch

        export_pytorch.save_outputs(a.out, res["output"], res.get("attn_weights"))
    if a.compare:
        from safetensors.torch import load_file

        exp = load_file(a.compare)
        for k, v in res.items():
            d = (v.double() - exp[k].double()).abs().max().item()
            print(f"{k}: max |ref - expected| = {d:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
