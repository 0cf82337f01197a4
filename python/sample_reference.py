"""Sample digits from a trained weights file with the Python reference (the demo's oracle).

Same samplers as `train_digits.py` (DDIM eta = 0 on t_i = round(linspace(999, 0, steps)),
classifier-free guidance eps = eps_u + g (eps_c - eps_u) with the null class, images in
[-1, 1] -> pixels round((x + 1) / 2 * 255)). For parity checks of another sampler, pass the
initial noise: `--noise-in` reads tensor `noise` F32 [B, 64, 4] (tokens, the model's layout),
and `--save` writes `images` F32 [B, 1, 16, 16] in [-1, 1] and `labels` I64 [B].

    python3 python/sample_reference.py --weights assets/digits.safetensors --class 7 --out seven.png
    python3 python/sample_reference.py --class 3 --count 8 --guidance 2 --out threes.png
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import load_weights, read_tensors  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from train_digits import (  # noqa: E402
    IMAGE,
    NULL_CLASS,
    classify,
    sample_ddim,
    sample_ddpm,
    to_pixels,
    write_png,
)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=os.path.join(here, "..", "assets", "digits.safetensors"))
    p.add_argument("--class", dest="cls", type=int, required=True, help="digit 0-9 (10 = unconditional)")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim")
    p.add_argument("--scale", type=int, default=4, help="pixel upscaling of the PNG")
    p.add_argument("--out", help="PNG: the samples side by side")
    p.add_argument("--noise-in", help="safetensors with `noise` F32 [B, 64, 4] (DDIM only)")
    p.add_argument("--save", help="safetensors with `images` F32 [B, 1, 16, 16] and `labels`")
    p.add_argument("--classifier", default=os.path.join(here, "..", "assets", "digits_classifier.safetensors"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not 0 <= args.cls <= NULL_CLASS:
        p.error(f"--class must be in [0, {NULL_CLASS}]")

    torch.set_num_threads(args.threads)
    model = load_weights(args.weights).float().eval()
    noise = None
    if args.noise_in:
        noise = read_tensors(args.noise_in)[0]["noise"].float()
        args.count = noise.shape[0]
    y = torch.full((args.count,), args.cls, dtype=torch.int64)
    gen = torch.Generator().manual_seed(args.seed)
    if args.sampler == "ddim":
        imgs = sample_ddim(model, y, args.steps, args.guidance, gen, noise=noise)
    else:
        if noise is not None:
            p.error("--noise-in works with --sampler ddim only")
        imgs = sample_ddpm(model, y, args.steps, args.guidance, gen)

    if os.path.exists(args.classifier):
        tensors, _ = read_tensors(args.classifier)
        pred = classify(tensors["weight"], tensors["bias"], imgs).tolist()
        print(f"classifier says: {pred}")
    if args.out:
        pix = to_pixels(imgs)[:, 0]
        row = np.concatenate(list(pix), axis=1) if len(pix) > 1 else pix[0]
        write_png(args.out, np.kron(row, np.ones((args.scale, args.scale), dtype=np.uint8)))
        print(f"wrote {args.out} ({len(pix)} x {IMAGE}x{IMAGE}, x{args.scale})")
    if args.save:
        save_file({"images": imgs.contiguous(), "labels": y}, args.save)
        print(f"wrote {args.save}")


if __name__ == "__main__":
    main()
