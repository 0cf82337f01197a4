"""Time the PyTorch reference model, as the peer of `linear-dit bench`.

The model is `reference.LinearDiT`, the same computation the Rust runtime performs, so the
two timings compare like with like: same config, batch, tokens, dtype and thread count.
`--attention softmax` keeps every weight and projection but mixes each block's Q, K, V heads
with `torch.nn.functional.scaled_dot_product_attention` instead of linear attention: the
O(N^2) peer (FlashAttention / memory-efficient kernels on CUDA).

Prints human-readable lines, then as the last line one JSON object:
{"impl", "device", "dtype", "attention", "batch", "tokens", "threads", "ms_per_forward",
 "tokens_per_s", "torch_version", "config"}.

The GFLOP/s line counts matmul FLOPs only (2 per multiply-add): the per-token linears, plus
per token and layer 4*h*d for linear attention (phi(K)^T V and phi(Q) S) or 4*N*h for
softmax attention (Q K^T and A V).

Example: python3 python/peer_bench.py --batch 4 --tokens 256 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import torch
import torch.nn.functional as F

from reference import DTYPES, LinearDiT, LinearDiTConfig, init_weights, load_weights


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Standard softmax attention over the same heads [B, H, N, d] (scale 1/sqrt(d))."""
    return F.scaled_dot_product_attention(q, k, v)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="safetensors file with linear_dit.config metadata")
    p.add_argument("--input-dim", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=512)
    p.add_argument("--num-layers", type=int, default=12)
    p.add_argument("--num-heads", type=int, default=8)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--num-steps", type=int, default=1000)
    p.add_argument("--patch-size", type=int, default=2)
    p.add_argument("--flavor", choices=("dit", "edifice"), default="dit")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=256,
                   help="tokens per sample; grid square when N is a perfect square, else 1xN")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("f32", "bf16", "f16"), default="f32")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (implies --compile), e.g. max-autotune")
    p.add_argument("--attention", choices=("linear", "softmax"), default="linear")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    return p.parse_args()


def build_model(args: argparse.Namespace) -> LinearDiT:
    """The model from --weights, or from the config flags with `random` init, seed 0."""
    if args.weights:
        return load_weights(args.weights)
    cfg = LinearDiTConfig(
        input_dim=args.input_dim, hidden_size=args.hidden_size, num_layers=args.num_layers,
        num_heads=args.num_heads, mlp_ratio=args.mlp_ratio, num_classes=args.num_classes,
        num_steps=args.num_steps, patch_size=args.patch_size, flavor=args.flavor,
    )
    model = LinearDiT(cfg)
    init_weights(model, "random", 0)
    return model


def matmul_flops_per_token(cfg: LinearDiTConfig, tokens: int, attention: str) -> int:
    """Matmul FLOPs per token of one forward (per-sample conditioning excluded)."""
    h, m, d = cfg.hidden_size, cfg.mlp_hidden, cfg.head_dim
    linears = cfg.input_dim * h + cfg.num_layers * (3 * h * h + h * h + 2 * h * m) + h * cfg.input_dim
    mixing = 4 * h * d if attention == "linear" else 4 * tokens * h
    return 2 * linears + cfg.num_layers * mixing


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    compiled = args.compile or args.compile_mode is not None

    model = build_model(args).to(device=device, dtype=dtype).eval()
    cfg = model.config
    if args.attention == "softmax":
        for block in model.blocks:
            block.attn.kernel = softmax_attention
    forward = torch.compile(model, mode=args.compile_mode) if compiled else model

    b, n = args.batch, args.tokens
    side = math.isqrt(n)
    grid = (side, side) if side * side == n else (1, n)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(b, n, cfg.input_dim, generator=gen, device=device).to(dtype)
    t = torch.rand(b, generator=gen, device=device) * cfg.num_steps
    y = None
    if cfg.num_classes is not None:
        y = torch.randint(0, cfg.num_classes, (b,), generator=gen, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    impl = "pytorch-compile" if compiled else "pytorch-eager"
    print(f"{impl} {args.attention} attention, {cfg.flavor} flavor, device {args.device}, "
          f"dtype {args.dtype}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"config {cfg.to_json()}")
    print(f"batch {b}, tokens {n} (grid {grid[0]}x{grid[1]}), warmup {args.warmup}, iters {args.iters}")
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(args.warmup):
            forward(x, t, y, grid)
        sync()
        print(f"warmup {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        for _ in range(args.iters):
            forward(x, t, y, grid)
        sync()
        elapsed = time.perf_counter() - start

    ms = elapsed * 1000.0 / args.iters
    tokens_per_s = b * n / (ms / 1000.0)
    gflops = matmul_flops_per_token(cfg, n, args.attention) * tokens_per_s / 1e9
    print(f"{ms:.3f} ms/forward, {tokens_per_s:,.0f} tokens/s, {gflops:.1f} GFLOP/s (matmul)")
    print(json.dumps({
        "impl": impl,
        "device": args.device,
        "dtype": args.dtype,
        "attention": args.attention,
        "batch": b,
        "tokens": n,
        "threads": torch.get_num_threads(),
        "ms_per_forward": round(ms, 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "torch_version": torch.__version__,
        "config": dataclasses.asdict(cfg),
    }))


if __name__ == "__main__":
    main()
