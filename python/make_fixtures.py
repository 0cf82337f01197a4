"""Write the parity fixtures in `tests/fixtures/` from the float64 PyTorch reference.

Each fixture NAME is a small model with `random` weights (every tensor non-zero and
numerically relevant) and one batch of inputs with its expected output:

* `NAME.weights.safetensors` -- canonical tensor names, config JSON in the metadata key
  `linear_dit.config` (the Axon fixture instead has Axon names, no metadata, and its config
  in `NAME.config.json`).
* `NAME.io.safetensors` -- `x` F32 [B,N,D], `t` F32 [B], `y` I64 [B] (models with classes),
  `eps` F32 [B,N,D]; metadata {"grid": "ROWSxCOLS"}.

`eps` is the reference model run in float64 on the weights exactly as stored (BF16/F16
values upcast), then rounded to F32. Seeds are fixed: rerunning rewrites the same bytes.
Before writing, the script checks that scaling any single weight tensor by 1.1 moves the
output by more than 1e-3 (relative), so no layer of the fixture is silently inert.

Usage: python3 python/make_fixtures.py [--out tests/fixtures]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Optional

import torch
from safetensors.torch import save_file

from reference import (
    LinearDiT,
    LinearDiTConfig,
    init_weights,
    load_weights,
    param_count,
    save_weights,
    to_axon_state,
)

MIN_SENSITIVITY = 1e-3


@dataclass
class Fixture:
    """One fixture: a model config, how its weights are stored, and its input batch."""

    name: str
    purpose: str
    config: LinearDiTConfig
    grid: tuple[int, int]
    t: list[float]
    y: Optional[list[int]] = None
    dtype: str = "f32"
    axon: bool = False

    @property
    def batch(self) -> int:
        return len(self.t)


FIXTURES = [
    Fixture(
        "dit_uncond", "dit flavor, unconditional, default square grid",
        LinearDiTConfig(input_dim=4, hidden_size=16, num_layers=2, num_heads=2, mlp_ratio=2.0),
        grid=(4, 4), t=[0.0, 13.5, 999.0],
    ),
    Fixture(
        "dit_class", "dit flavor, 5 classes (label 5 = null class), non-square grid",
        LinearDiTConfig(input_dim=8, hidden_size=24, num_layers=2, num_heads=3, mlp_ratio=2.0,
                        num_classes=5),
        grid=(3, 5), t=[999.0, 0.25, 500.0], y=[0, 5, 3],
    ),
    Fixture(
        "dit_bf16", "dit flavor with classes, weights stored as BF16",
        LinearDiTConfig(input_dim=8, hidden_size=16, num_layers=2, num_heads=4, mlp_ratio=2.0,
                        num_classes=3),
        grid=(5, 5), t=[13.5, 740.75], y=[2, 3], dtype="bf16",
    ),
    Fixture(
        "edifice_uncond", "edifice flavor, unconditional, square grid",
        LinearDiTConfig(input_dim=4, hidden_size=16, num_layers=2, num_heads=2, mlp_ratio=2.0,
                        flavor="edifice"),
        grid=(3, 3), t=[0.0, 13.5, 999.0],
    ),
    Fixture(
        "edifice_class",
        "edifice flavor, 4 classes (labels 4 and -1 = all-zero one-hot), num_steps 250, "
        "non-square grid",
        LinearDiTConfig(input_dim=8, hidden_size=16, num_layers=2, num_heads=4, mlp_ratio=2.0,
                        num_classes=4, num_steps=250, flavor="edifice"),
        grid=(2, 7), t=[0.0, 13.5, 249.5], y=[2, 4, -1],
    ),
    Fixture(
        "edifice_odd",
        "edifice flavor, odd hidden size 27 (timestep width 26), mlp_ratio 1.5 (m = round(40.5) "
        "= 41, halves away from zero), 3 classes, F16 weights",
        LinearDiTConfig(input_dim=12, hidden_size=27, num_layers=2, num_heads=3, mlp_ratio=1.5,
                        num_classes=3, flavor="edifice"),
        grid=(4, 6), t=[999.0, 13.5], y=[1, 3], dtype="f16",
    ),
    Fixture(
        "edifice_axon",
        "edifice flavor, 3 classes, 3 layers, mlp_ratio 1.5, exported with Axon names and no "
        "metadata (config in edifice_axon.config.json)",
        LinearDiTConfig(input_dim=4, hidden_size=20, num_layers=3, num_heads=4, mlp_ratio=1.5,
                        num_classes=3, flavor="edifice"),
        grid=(5, 6), t=[42.0, 999.0], y=[0, 2], axon=True,
    ),
]


def write_weights(fx: Fixture, out_dir: str, seed: int) -> str:
    """Initialise and store the fixture's weights; returns the weights path."""
    model = LinearDiT(fx.config)
    init_weights(model, "random", seed)
    path = os.path.join(out_dir, f"{fx.name}.weights.safetensors")
    if fx.axon:
        save_file(to_axon_state(model), path)
        with open(os.path.join(out_dir, f"{fx.name}.config.json"), "w") as f:
            f.write(fx.config.to_json() + "\n")
        reloaded = load_weights(path, fx.config)
        assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in model.state_dict().items())
    else:
        save_weights(model, path, fx.dtype)
    return path


def check_sensitivity(model: LinearDiT, args: tuple, baseline: torch.Tensor, name: str) -> float:
    """Assert that scaling any one parameter tensor by 1.1 changes the output; returns the min."""
    scale = baseline.abs().max().item()
    weakest = float("inf")
    with torch.no_grad():
        for pname, p in model.named_parameters():
            saved = p.clone()
            p.mul_(1.1)
            change = (model(*args) - baseline).abs().max().item() / scale
            p.copy_(saved)
            assert change > MIN_SENSITIVITY, f"{name}: output insensitive to {pname} ({change:.1e})"
            weakest = min(weakest, change)
    return weakest


def write_io(fx: Fixture, weights: str, out_dir: str, seed: int) -> float:
    """Draw the inputs, run the float64 reference, store inputs and expected output."""
    cfg = fx.config
    model = load_weights(weights, fx.config if fx.axon else None)
    assert model.config == cfg
    model = model.double().eval()

    gen = torch.Generator().manual_seed(seed)
    rows, cols = fx.grid
    x = torch.randn(fx.batch, rows * cols, cfg.input_dim, generator=gen, dtype=torch.float32)
    t = torch.tensor(fx.t, dtype=torch.float32)
    y = None if fx.y is None else torch.tensor(fx.y, dtype=torch.int64)
    args = (x.double(), t.double(), y, fx.grid)
    with torch.no_grad():
        eps = model(*args)
    weakest = check_sensitivity(model, args, eps, fx.name)

    tensors = {"x": x, "t": t, "eps": eps.to(torch.float32)}
    if y is not None:
        tensors["y"] = y
    save_file(tensors, os.path.join(out_dir, f"{fx.name}.io.safetensors"),
              metadata={"grid": f"{rows}x{cols}"})
    return weakest


README_HEAD = """\
# Parity fixtures

Generated by `python3 python/make_fixtures.py` (PyTorch reference in `python/reference.py`);
do not edit by hand. Rerunning the script rewrites the same bytes (fixed seeds).

For each fixture `NAME`:

- `NAME.weights.safetensors`: `random`-initialised weights (every tensor non-zero; scaling
  any single tensor by 1.1 moves the output by more than 1e-3 relative), canonical tensor
  names, config JSON in the metadata key `linear_dit.config`. Exception: `edifice_axon` uses
  the Axon flat names (`<layer>.<param>`, kernels `[in, out]`), has no metadata, and keeps its
  config in `edifice_axon.config.json` (the same JSON the metadata would hold).
- `NAME.io.safetensors`: `x` F32 `[B,N,D]`, `t` F32 `[B]` (mixed, fractional timesteps),
  `y` I64 `[B]` (only for models with classes) and the expected output `eps` F32 `[B,N,D]`;
  metadata `{"grid": "ROWSxCOLS"}` (pass it as `--grid`).

`eps` is the float64 reference result: the weights exactly as stored (BF16/F16 values upcast
to float64), x and t upcast to float64, sin/cos embeddings in float64, then rounded to F32.
The same reference evaluated in f32 matches `eps` to about 2e-7 of max |eps|, so a tolerance
of 1e-5 of max |eps| is ample for an f32 runtime; do not loosen it much: mixing up the tanh
and erf GELU moves the output by only 5e-5 to 1e-4 of max |eps|. The BF16/F16 fixtures test
loading those storage types (expected outputs use the stored values), not reduced-precision
arithmetic.

| fixture | what it covers | flavor | D | h | L | heads | mlp_ratio | classes | num_steps | weights | params | B | grid | t | y | bytes (weights + io) |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""


def readme_row(fx: Fixture, out_dir: str) -> str:
    cfg = fx.config
    size = sum(
        os.path.getsize(os.path.join(out_dir, f"{fx.name}.{kind}.safetensors"))
        for kind in ("weights", "io")
    )
    cells = [
        f"`{fx.name}`", fx.purpose, cfg.flavor, cfg.input_dim, cfg.hidden_size, cfg.num_layers,
        cfg.num_heads, cfg.mlp_ratio, cfg.num_classes if cfg.num_classes is not None else "none",
        cfg.num_steps, "F32 (Axon names)" if fx.axon else fx.dtype.upper(), param_count(cfg),
        fx.batch, f"{fx.grid[0]}x{fx.grid[1]}", fx.t, fx.y if fx.y is not None else "-", size,
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |\n"


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    rows = []
    for i, fx in enumerate(FIXTURES):
        weights = write_weights(fx, args.out, seed=1000 + i)
        weakest = write_io(fx, weights, args.out, seed=2000 + i)
        rows.append(readme_row(fx, args.out))
        print(f"{fx.name:15s} params {param_count(fx.config):6d}  weakest tensor moves output "
              f"by {weakest:.1e}")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README_HEAD + "".join(rows))
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"wrote {len(FIXTURES)} fixtures to {args.out}, {total} bytes in total")


if __name__ == "__main__":
    main()
