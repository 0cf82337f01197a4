#!/usr/bin/env python3
"""Converts a canonical `edifice` weights file (F32) to Edifice's Axon names, without the
`linear_dit.config` metadata: the seed of the `axon_import` fuzz target.

    python3 fuzz/make_axon_seed.py IN.safetensors OUT.safetensors

(The standard library only; SPEC, "Weights file", gives the mapping.)
"""
import json
import struct
import sys


def read(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n :]
    return {
        name: (info["shape"], body[info["data_offsets"][0] : info["data_offsets"][1]])
        for name, info in header.items()
    }


def transpose(shape, raw):
    rows, cols = shape
    vals = struct.unpack(f"<{rows * cols}f", raw)
    out = [vals[r * cols + c] for c in range(cols) for r in range(rows)]
    return [cols, rows], struct.pack(f"<{rows * cols}f", *out)


def split_rows(shape, raw, parts):
    step = len(raw) // parts
    rows = shape[0] // parts
    return [([rows] + shape[1:], raw[i * step : (i + 1) * step]) for i in range(parts)]


def main(src, dst):
    tensors = read(src)
    out = {}

    def linear(prefix, axon):
        w, b = tensors[f"{prefix}.weight"], tensors[f"{prefix}.bias"]
        out[f"{axon}.kernel"] = transpose(*w)
        out[f"{axon}.bias"] = b

    def norm(prefix, axon):
        out[f"{axon}.gamma"] = tensors[f"{prefix}.weight"]
        out[f"{axon}.beta"] = tensors[f"{prefix}.bias"]

    linear("x_embedder", "input_embed")
    out["pos_embed.bias"] = tensors["pos_embed"]
    linear("t_embedder.mlp.0", "time_mlp_1")
    linear("t_embedder.mlp.2", "time_mlp_2")
    if "y_embedder.mlp.0.weight" in tensors:
        linear("y_embedder.mlp.0", "class_embed_1")
        linear("y_embedder.mlp.2", "class_embed_2")
    i = 0
    while f"blocks.{i}.attn.qkv.weight" in tensors:
        b, k = f"blocks.{i}", f"linear_dit_block_{i + 1}"
        for group, names in [("attn.qkv", ["attn_q", "attn_k", "attn_v"]),
                             ("adaLN_modulation.1", ["adaln_attn", "adaln_mlp"])]:
            ws = split_rows(*tensors[f"{b}.{group}.weight"], len(names))
            bs = split_rows(*tensors[f"{b}.{group}.bias"], len(names))
            for name, w, bias in zip(names, ws, bs):
                out[f"{k}_{name}.kernel"] = transpose(*w)
                out[f"{k}_{name}.bias"] = bias
        norm(f"{b}.norm1", f"{k}_attn_norm")
        norm(f"{b}.norm2", f"{k}_mlp_norm")
        linear(f"{b}.attn.proj", f"{k}_attn_out_proj")
        linear(f"{b}.mlp.fc1", f"{k}_mlp_up")
        linear(f"{b}.mlp.fc2", f"{k}_mlp_down")
        i += 1
    norm("final_layer.norm_final", "final_norm")
    linear("final_layer.linear", "output_proj")

    header, body = {}, b""
    for name in sorted(out):
        shape, raw = out[name]
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(text)) + text + body)


if __name__ == "__main__":
    main(*sys.argv[1:])
