#!/usr/bin/env python3
"""make_corpus.py — (re)write the committed seed corpus fuzz/corpus/<target>/.

Seeds: a few small fixtures from tests/fixtures/ (valid models and input files),
hand-made malformed and unusual safetensors files, and a few TSV files. Standard
library only; the output is deterministic. Run from anywhere:
    python3 fuzz/make_corpus.py
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "fuzz", "corpus")


def st_bytes(tensors, meta=None, pad=True):
    """A safetensors file from [(name, dtype, shape, raw bytes)], in order."""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def raw_header(text, data=b""):
    h = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(h)) + h + data


def f32(*xs):
    return struct.pack("<%df" % len(xs), *xs)


def f16(*xs):
    return struct.pack("<%de" % len(xs), *xs)


def bf16(*xs):
    return b"".join(struct.pack("<f", x)[2:] for x in xs)


def f64(*xs):
    return struct.pack("<%dd" % len(xs), *xs)


def vals(n, scale=0.1):
    return [((i * 7919) % 23 - 11) * scale for i in range(n)]


def write(target, name, blob):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def fixture(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()


def safetensors_seeds():
    t = "fuzz_safetensors"
    for name in ["mha_no_bias_kdim.model", "mha_unbatched_bias_kv_zero_attn.model",
                 "enc_layer_unbatched.model", "dec_layer_unbatched.model",
                 "enc_stack2_no_bias_unbatched.model", "dec_stack2_unbatched.model",
                 "tf_unbatched.model", "mha_unbatched_bias_kv_zero_attn.input",
                 "dec_layer_unbatched_masks.input", "tf_all_masks_float_3d.input"]:
        write(t, name + ".safetensors", fixture(name + ".safetensors"))
    # A tiny MultiheadAttention (E=2, one head) with F16, BF16 and F64 parameters:
    # loading converts instead of copying F32.
    mha_meta = {"module": "MultiheadAttention", "embed_dim": "2", "num_heads": "1",
                "batch_first": "true"}
    write(t, "mha_e2_mixed_dtypes.safetensors", st_bytes([
        ("in_proj_weight", "F16", [6, 2], f16(*vals(12))),
        ("in_proj_bias", "BF16", [6], bf16(*vals(6))),
        ("out_proj.weight", "F64", [2, 2], f64(*vals(4))),
        ("out_proj.bias", "F32", [2], f32(0.5, -0.5)),
    ], mha_meta))
    # The same with kdim/vdim and bias_kv, no bias.
    write(t, "mha_e2_kdim_vdim_bias_kv.safetensors", st_bytes([
        ("q_proj_weight", "F32", [2, 2], f32(*vals(4))),
        ("k_proj_weight", "F32", [2, 3], f32(*vals(6))),
        ("v_proj_weight", "F32", [2, 1], f32(*vals(2))),
        ("bias_k", "F32", [1, 1, 2], f32(0.25, 0.75)),
        ("bias_v", "F32", [1, 1, 2], f32(-0.25, 1.0)),
        ("out_proj.weight", "F32", [2, 2], f32(*vals(4))),
    ], {"module": "MultiheadAttention", "embed_dim": "2", "num_heads": "1", "kdim": "3",
        "vdim": "1", "bias": "false", "add_bias_kv": "true", "add_zero_attn": "true"}))
    # Every dtype, a 0-sized tensor, a scalar, unaligned data (no padding).
    write(t, "all_dtypes_unaligned.safetensors", st_bytes([
        ("b", "BOOL", [3], b"\x00\x01\x01"),
        ("u8", "U8", [2], b"\x07\xff"),
        ("i8", "I8", [1], b"\x80"),
        ("h", "F16", [2], f16(1.0, -2.5)),
        ("bf", "BF16", [2], bf16(3.0, -0.125)),
        ("i16", "I16", [1], struct.pack("<h", -3)),
        ("i32", "I32", [1], struct.pack("<i", 70000)),
        ("d", "F64", [1, 1], f64(1e300)),
        ("i64", "I64", [1], struct.pack("<q", -1)),
        ("f", "F32", [], f32(float("inf"))),
        ("empty", "F32", [0, 5], b""),
    ], {"note": "dtypes", "é": "ü"}, pad=False))
    # Metadata that config_from_meta refuses.
    write(t, "bad_config.safetensors", st_bytes([("x", "F32", [1], f32(1.0))],
          {"module": "TransformerEncoder", "d_model": "6", "nhead": "4", "num_layers": "99999",
           "activation": "tanh", "layer_norm_eps": "nan"}))
    write(t, "unknown_module.safetensors", st_bytes([], {"module": "LSTM"}))
    # Malformed headers.
    write(t, "empty", b"")
    write(t, "short_length", b"\x08\x00\x00")
    write(t, "length_too_big", struct.pack("<Q", 1 << 40) + b"{}")
    write(t, "empty_object", raw_header("{}      "))
    write(t, "not_object", raw_header("[1, 2, 3]"))
    write(t, "bad_json", raw_header('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]'))
    write(t, "duplicate_key", raw_header(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32(1.0)))
    write(t, "overlap", raw_header(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32(1.0, 2.0)))
    write(t, "hole", raw_header(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32(1.0, 2.0)))
    write(t, "bad_dtype", raw_header(
        '{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', b"\x00"))
    write(t, "huge_shape", raw_header(
        '{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', f64(0.0)))
    write(t, "negative_dim", raw_header(
        '{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', f32(0.0)))
    write(t, "float_offsets", raw_header(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0.0,4.5]}}', f32(0.0)))
    write(t, "escaped_nul", raw_header('{"__metadata__":{"k\\u0000":"v"}}'))
    write(t, "bad_utf8", raw_header(b'{"__metadata__":{"k":"\xc0\xaf"}}'))
    write(t, "meta_not_string", raw_header('{"__metadata__":{"module":7}}'))


# The first byte of a fuzz_forward_input input picks its module (see N_MODELS there);
# bit 7 runs forward_train + backward too.
FORWARD_SEEDS = [
    (0x00, "mha_no_bias_kdim"), (0x01, "mha_unbatched_bias_kv_zero_attn"),
    (0x02, "mha_batch_first_cross"), (0x03, "enc_layer_unbatched_masks"),
    (0x04, "enc_stack2_no_bias_unbatched"), (0x05, "dec_layer_unbatched_masks"),
    (0x06, "dec_stack2_unbatched"), (0x07, "tf_unbatched"), (0x87, "tf_all_masks_float_3d"),
    (0x88, "enc_layer_unbatched"), (0x81, "mha_unbatched_attn_mask_3d"),
]


def forward_seeds():
    t = "fuzz_forward_input"
    for kind, name in FORWARD_SEEDS:
        write(t, "%02x_%s" % (kind, name), bytes([kind]) + fixture(name + ".input.safetensors"))
    q = f16(*vals(3 * 8))
    write(t, "01_f16_query_causal_weights", bytes([0x01]) + st_bytes(
        [("query", "F16", [3, 8], q), ("key", "BF16", [3, 8], bf16(*vals(24))),
         ("value", "F64", [3, 8], f64(*vals(24)))],
        {"is_causal": "true", "need_weights": "true", "average_attn_weights": "false"}))
    ninf = float("-inf")
    write(t, "83_all_masked_rows", bytes([0x83]) + st_bytes(
        [("src", "F32", [2, 3, 8], f32(*vals(48))),
         ("src_mask", "F32", [3, 3], f32(ninf, ninf, ninf, 0, ninf, ninf, 0, 0, 0)),
         ("src_key_padding_mask", "BOOL", [2, 3], b"\x01\x01\x01\x00\x00\x01")]))
    write(t, "07_empty_input", bytes([0x07]) + st_bytes([], {}))
    write(t, "05_zero_length", bytes([0x05]) + st_bytes(
        [("tgt", "F32", [0, 2, 8], b""), ("memory", "F32", [0, 2, 8], b"")]))
    # An empty batch has no data, so nothing bounds its lengths (2^40 here).
    huge = 1 << 40
    write(t, "01_empty_batch_huge_lengths", bytes([0x01]) + st_bytes(
        [("query", "F32", [huge, 0, 8], b""), ("key", "F32", [huge, 0, 8], b""),
         ("value", "F32", [huge, 0, 8], b""), ("attn_mask", "BOOL", [0, huge, huge], b""),
         ("key_padding_mask", "F32", [0, huge], b"")],
        {"need_weights": "true"}))
    write(t, "87_empty_batch_huge_lengths", bytes([0x87]) + st_bytes(
        [("src", "F32", [huge, 0, 8], b""), ("tgt", "F32", [3, 0, 8], b""),
         ("memory_mask", "BOOL", [0, 3, huge], b"")], {"tgt_is_causal": "true"}))
    write(t, "00_wrong_dtype", bytes([0x00]) + st_bytes(
        [("query", "I32", [1, 8], b"\x00" * 32), ("key_padding_mask", "U8", [1], b"\x01")]))


def tsv_seeds():
    t = "fuzz_tsv"
    with open(os.path.join(ROOT, "examples", "data", "reverse.tsv"), "rb") as f:
        lines = f.read().split(b"\n")
    write(t, "reverse_head.tsv", b"\n".join(lines[:12]) + b"\n")
    write(t, "crlf_bom_blank.tsv", b"\xef\xbb\xbfab\tba\r\n\r\n\ncd\tdc\r\nlast\ttsal")
    write(t, "utf8.tsv", "Grüße\tsalutations\n東京\tTōkyō\n🙂 ok\t😀\n".encode())
    write(t, "nul_and_cr_inside.tsv", b"n\x00l\tx\ry\n")
    write(t, "no_tab.tsv", b"abc\tdef\nno tab here\n")
    write(t, "two_tabs.tsv", b"a\tb\tc\n")
    write(t, "empty_side.tsv", b"\tb\na\t\n")
    write(t, "bad_utf8.tsv", b"ok\tfine\n\xc0\xaf\tx\n\xed\xa0\x80\ty\n\xf4\x90\x80\x80\tz\n")
    write(t, "long_line.tsv", b"x" * 4100 + b"\ty\n")
    write(t, "only_blank.tsv", b"\n\r\n\n")
    write(t, "lengths.tsv", b"a\tbbbbbbbbbbbb\nccccccccccccc\td\ne\tf\nggggggggggg\thhhhhhhhhhh\n")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    safetensors_seeds()
    forward_seeds()
    tsv_seeds()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print("fuzz/corpus: %d bytes" % total)


if __name__ == "__main__":
    main()
