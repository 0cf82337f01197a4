"""PyTorch reference of the Linear DiT, written from `SPEC.md` and nothing else.

This module is the independent oracle the Rust runtime is checked against: the fixtures in
`tests/fixtures/` are produced by running this model in float64. It is deliberately plain
(one obvious formula per SPEC line, no fused or clever kernels) so that it can be read side
by side with the SPEC.

Both flavors live in one `LinearDiT` module:

* `dit`     -- DiT conventions: SiLU before adaLN, LayerNorm without affine (eps 1e-6),
               tanh GELU, fixed 2-D sin-cos positions, 256-frequency timestep embedding,
               class table with a null row, modulated final layer.
* `edifice` -- what `Edifice.Generative.LinearDiT` computes: no SiLU before adaLN, affine
               LayerNorm (eps 1e-5), exact GELU, one learned `pos_embed` vector, timestep
               embedding of width 2*floor(h/2) on t/num_steps, one-hot class MLP, plain
               final LayerNorm + linear.

`state_dict()` keys are exactly the canonical tensor names of the SPEC weights table.

Run `python3 python/reference.py --self-test` to check the parameter counts, the tensor
table, the linear attention against an explicit N x N formulation, patchify and the Axon
name round trip.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

CONFIG_KEY = "linear_dit.config"
FLAVORS = ("dit", "edifice")
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64}
ATTN_EPS = 1e-6
DIT_TIME_FREQS = 256


@dataclass
class LinearDiTConfig:
    """Model hyper-parameters; field names and defaults are those of the SPEC table."""

    input_dim: int
    hidden_size: int = 512
    num_layers: int = 12
    num_heads: int = 8
    mlp_ratio: float = 4.0
    num_classes: Optional[int] = None
    num_steps: int = 1000
    patch_size: int = 2
    flavor: str = "dit"

    def __post_init__(self) -> None:
        self.mlp_ratio = float(self.mlp_ratio)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the offending field for any combination SPEC forbids."""
        for name in ("input_dim", "hidden_size", "num_layers", "num_heads", "num_steps", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, got {self.flavor!r}")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        if self.flavor == "dit" and self.hidden_size % 4 != 0:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by 4 for flavor dit")
        if self.mlp_hidden < 1:
            raise ValueError(f"mlp_ratio {self.mlp_ratio} gives an MLP width below 1")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or null, got {self.num_classes}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        """m = round(h * mlp_ratio), halves away from zero (Elixir's and Rust's `round`).

        Python's `round` would send 27 * 1.5 = 40.5 to 40; Edifice builds 41.
        """
        exact = self.hidden_size * self.mlp_ratio
        whole = math.floor(exact)
        return whole + 1 if exact - whole >= 0.5 else whole

    @property
    def time_freq_dim(self) -> int:
        """F: width of the sinusoidal timestep embedding fed to `t_embedder.mlp.0`."""
        return DIT_TIME_FREQS if self.flavor == "dit" else 2 * (self.hidden_size // 2)

    def to_json(self) -> str:
        """The exact JSON stored under the `linear_dit.config` metadata key."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "LinearDiTConfig":
        return cls(**json.loads(text))


# --------------------------------------------------------------------------- embeddings


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """sc(E, p) = concat(sin(p w), cos(p w)), w_i = 10000^(-i/(E/2)), i < E/2; float64."""
    half = dim // 2
    omega = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / (dim / 2.0))
    angles = pos.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def dit_pos_embed(hidden: int, rows: int, cols: int) -> torch.Tensor:
    """P [rows*cols, h], P[n] = concat(sc(h/2, col), sc(h/2, row)), row-major tokens; float64."""
    n = torch.arange(rows * cols)
    row, col = n // cols, n % cols
    return torch.cat([sincos_1d(hidden // 2, col), sincos_1d(hidden // 2, row)], dim=1)


def dit_time_embed(t: torch.Tensor) -> torch.Tensor:
    """e(t) = concat(cos(t w), sin(t w)), w_i = exp(-ln(10000) i / 128), i < 128; float64."""
    half = DIT_TIME_FREQS // 2
    freqs = torch.arange(half, dtype=torch.float64, device=t.device)
    omega = torch.exp(-math.log(10000.0) * freqs / half)
    angles = t.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def edifice_time_embed(t: torch.Tensor, hidden: int, num_steps: int) -> torch.Tensor:
    """e = concat(sin(tau w), cos(tau w)), tau = t/num_steps, w_i = exp(-ln(10000) i / max(half-1, 1))."""
    half = hidden // 2
    freqs = torch.arange(half, dtype=torch.float64, device=t.device)
    omega = torch.exp(-math.log(10000.0) * freqs / max(half - 1, 1))
    tau = t.to(torch.float64) / num_steps
    angles = tau[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


# --------------------------------------------------------------------------- attention


def phi(z: torch.Tensor) -> torch.Tensor:
    """Feature map ELU(z) + 1: z + 1 for z > 0, exp(z) otherwise."""
    return F.elu(z) + 1.0


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal linear attention on heads [B, H, N, d], O(N d^2).

    S = sum_n phi(K_n)^T V_n, z = sum_n phi(K_n), O_n = phi(Q_n) S / (phi(Q_n) . z + 1e-6).
    Accumulates in at least fp32 (float64 stays float64), returns the input dtype.
    """
    acc = torch.promote_types(q.dtype, torch.float32)
    fq, fk, v32 = phi(q.to(acc)), phi(k.to(acc)), v.to(acc)
    s = torch.einsum("bhnd,bhne->bhde", fk, v32)
    z = fk.sum(dim=2)
    num = torch.einsum("bhnd,bhde->bhne", fq, s)
    den = torch.einsum("bhnd,bhd->bhn", fq, z) + ATTN_EPS
    return (num / den[..., None]).to(q.dtype)


def linear_attention_quadratic(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same attention written as an explicit N x N weight matrix (self-test only)."""
    a = phi(q) @ phi(k).transpose(-1, -2)
    return (a @ v) / (a.sum(dim=-1, keepdim=True) + ATTN_EPS)


AttentionKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- modules


class Attention(nn.Module):
    """qkv projection, per-head mixing by `self.kernel`, output projection.

    Channel j of Q, K and V belongs to head j // d. `kernel` is linear attention; the peer
    benchmark swaps it for softmax attention over the same heads.
    """

    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.kernel: AttentionKernel = linear_attention

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, n, h = u.shape
        q, k, v = (
            z.reshape(b, n, self.num_heads, h // self.num_heads).transpose(1, 2)
            for z in self.qkv(u).chunk(3, dim=-1)
        )
        o = self.kernel(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(b, n, h))


class Mlp(nn.Module):
    """fc2(GELU(fc1(v))); GELU is tanh-approximate for `dit`, exact erf for `edifice`."""

    def __init__(self, hidden: int, mlp_hidden: int, approximate: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp_hidden)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(mlp_hidden, hidden)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(v)))


def layer_norm(config: LinearDiTConfig) -> nn.LayerNorm:
    """dit: no affine, eps 1e-6; edifice: learned gamma/beta, eps 1e-5."""
    if config.flavor == "dit":
        return nn.LayerNorm(config.hidden_size, eps=1e-6, elementwise_affine=False)
    return nn.LayerNorm(config.hidden_size, eps=1e-5)


def pre_adaln(config: LinearDiTConfig) -> nn.Module:
    """The activation `a` applied to c before adaLN: SiLU for dit, identity for edifice."""
    return nn.SiLU() if config.flavor == "dit" else nn.Identity()


class Block(nn.Module):
    """One Linear DiT block with adaLN modulation (SPEC "The block")."""

    def __init__(self, config: LinearDiTConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.norm1 = layer_norm(config)
        self.attn = Attention(h, config.num_heads)
        self.norm2 = layer_norm(config)
        self.mlp = Mlp(h, config.mlp_hidden, "tanh" if config.flavor == "dit" else "none")
        self.adaLN_modulation = nn.Sequential(pre_adaln(config), nn.Linear(h, 6 * h))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            m[:, None, :] for m in self.adaLN_modulation(c).chunk(6, dim=-1)
        )
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class TimestepEmbedder(nn.Module):
    """t_emb = mlp.2(SiLU(mlp.0(e(t)))), e(t) computed in float64 then cast."""

    def __init__(self, config: LinearDiTConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.mlp = nn.Sequential(nn.Linear(config.time_freq_dim, h), nn.SiLU(), nn.Linear(h, h))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.flavor == "dit":
            e = dit_time_embed(t)
        else:
            e = edifice_time_embed(t, cfg.hidden_size, cfg.num_steps)
        return self.mlp(e.to(self.mlp[0].weight.dtype))


class DitLabelEmbedder(nn.Module):
    """dit class embedding: a table of C + 1 rows, row C being the null class."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if bool(((y < 0) | (y > self.num_classes)).any()):
            raise ValueError(f"class labels must lie in [0, {self.num_classes}], got {y.tolist()}")
        return self.embedding_table(y)


class EdificeLabelEmbedder(nn.Module):
    """edifice class embedding: mlp.2(SiLU(mlp.0(onehot_C(y)))), all-zero one-hot outside [0, C)."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.mlp = nn.Sequential(nn.Linear(num_classes, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        classes = torch.arange(self.num_classes, device=y.device)
        onehot = (y[:, None] == classes[None, :]).to(self.mlp[0].weight.dtype)
        return self.mlp(onehot)


class FinalLayer(nn.Module):
    """dit: linear(LN(x)(1 + scale) + shift); edifice: linear(LN_affine(x))."""

    def __init__(self, config: LinearDiTConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.norm_final = layer_norm(config)
        self.linear = nn.Linear(h, config.input_dim)
        self.modulated = config.flavor == "dit"
        if self.modulated:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(h, 2 * h))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.norm_final(x)
        if self.modulated:
            shift, scale = (m[:, None, :] for m in self.adaLN_modulation(c).chunk(2, dim=-1))
            x = x * (1 + scale) + shift
        return self.linear(x)


class LinearDiT(nn.Module):
    """The whole denoiser: eps = LinearDiT(x [B,N,D], t [B], y [B] | None, grid)."""

    def __init__(self, config: LinearDiTConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.x_embedder = nn.Linear(config.input_dim, h)
        if config.flavor == "edifice":
            self.pos_embed = nn.Parameter(torch.zeros(h))
        self.t_embedder = TimestepEmbedder(config)
        if config.num_classes is not None:
            label = DitLabelEmbedder if config.flavor == "dit" else EdificeLabelEmbedder
            self.y_embedder = label(config.num_classes, h)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_layer = FinalLayer(config)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        grid: Optional[tuple[int, int]] = None,
    ) -> torch.Tensor:
        cfg = self.config
        b, n, d = x.shape
        if d != cfg.input_dim:
            raise ValueError(f"x has patch dimension {d}, config input_dim is {cfg.input_dim}")
        if t.shape != (b,):
            raise ValueError(f"t must have shape [{b}], got {list(t.shape)}")
        if (y is None) != (cfg.num_classes is None):
            raise ValueError("y must be given exactly when the model has num_classes")
        if y is not None and y.shape != (b,):
            raise ValueError(f"y must have shape [{b}], got {list(y.shape)}")
        rows, cols = grid if grid is not None else square_grid(n)
        if rows * cols != n:
            raise ValueError(f"grid {rows}x{cols} does not hold {n} tokens")
        dtype = self.x_embedder.weight.dtype

        tok = self.x_embedder(x.to(dtype))
        if cfg.flavor == "dit":
            tok = tok + dit_pos_embed(cfg.hidden_size, rows, cols).to(dtype=dtype, device=x.device)
        else:
            tok = tok + self.pos_embed

        c = self.t_embedder(t)
        if y is not None:
            c = c + self.y_embedder(y)
        for block in self.blocks:
            tok = block(tok, c)
        return self.final_layer(tok, c)


def square_grid(n: int) -> tuple[int, int]:
    """The default grid: square, so N must be a perfect square."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} tokens do not form a square grid; pass grid=(rows, cols)")
    return side, side


# --------------------------------------------------------------------------- tensor table


def canonical_shapes(config: LinearDiTConfig) -> dict[str, tuple[int, ...]]:
    """The SPEC weights table, row by row: canonical name -> shape, for this config."""
    h, d_in, m, f = config.hidden_size, config.input_dim, config.mlp_hidden, config.time_freq_dim
    edifice = config.flavor == "edifice"
    c = config.num_classes
    shapes: dict[str, tuple[int, ...]] = {"x_embedder.weight": (h, d_in), "x_embedder.bias": (h,)}
    if edifice:
        shapes["pos_embed"] = (h,)
    shapes |= {
        "t_embedder.mlp.0.weight": (h, f),
        "t_embedder.mlp.0.bias": (h,),
        "t_embedder.mlp.2.weight": (h, h),
        "t_embedder.mlp.2.bias": (h,),
    }
    if c is not None and not edifice:
        shapes["y_embedder.embedding_table.weight"] = (c + 1, h)
    if c is not None and edifice:
        shapes |= {
            "y_embedder.mlp.0.weight": (h, c),
            "y_embedder.mlp.0.bias": (h,),
            "y_embedder.mlp.2.weight": (h, h),
            "y_embedder.mlp.2.bias": (h,),
        }
    for i in range(config.num_layers):
        p = f"blocks.{i}."
        shapes |= {p + "adaLN_modulation.1.weight": (6 * h, h), p + "adaLN_modulation.1.bias": (6 * h,)}
        if edifice:
            shapes |= {p + f"{n}.{w}": (h,) for n in ("norm1", "norm2") for w in ("weight", "bias")}
        shapes |= {
            p + "attn.qkv.weight": (3 * h, h),
            p + "attn.qkv.bias": (3 * h,),
            p + "attn.proj.weight": (h, h),
            p + "attn.proj.bias": (h,),
            p + "mlp.fc1.weight": (m, h),
            p + "mlp.fc1.bias": (m,),
            p + "mlp.fc2.weight": (h, m),
            p + "mlp.fc2.bias": (h,),
        }
    if edifice:
        shapes |= {"final_layer.norm_final.weight": (h,), "final_layer.norm_final.bias": (h,)}
    else:
        shapes |= {
            "final_layer.adaLN_modulation.1.weight": (2 * h, h),
            "final_layer.adaLN_modulation.1.bias": (2 * h,),
        }
    shapes |= {"final_layer.linear.weight": (d_in, h), "final_layer.linear.bias": (d_in,)}
    return shapes


def param_count(config: LinearDiTConfig) -> int:
    """Exact parameter count: every tensor of the weights table, biases and norms included."""
    return sum(math.prod(shape) for shape in canonical_shapes(config).values())


# --------------------------------------------------------------------------- initialisation


def init_weights(model: LinearDiT, kind: str, seed: int) -> None:
    """Fill every parameter deterministically from `seed`.

    `dit`: AdaLN-Zero (SPEC): adaLN and final linear weights and biases zero, other linears
    Xavier-uniform with zero bias, timestep MLP weights normal(0, 0.02), class table
    normal(0, 0.02). For the edifice flavor, whose tensors SPEC's rule does not name, the
    class MLP is treated like the timestep MLP, LayerNorms start at gamma 1, beta 0 and
    `pos_embed` at zero.

    `random`: every tensor non-zero and every layer numerically relevant: weights
    normal(0, 1/sqrt(fan_in)) (adaLN weights a third of that, so modulations are O(0.1-1)),
    biases normal(0, 0.2), LayerNorm gamma 1 + normal(0, 0.1) and beta normal(0, 0.2),
    class table normal(0, 1), `pos_embed` normal(0, 0.5).
    """
    if kind not in ("dit", "random"):
        raise ValueError(f"init kind must be 'dit' or 'random', got {kind!r}")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            init = _init_dit if kind == "dit" else _init_random
            p.copy_(init(name, p, gen).to(p.dtype))


def _kind_of(name: str) -> str:
    if "adaLN_modulation" in name:
        return "adaln"
    if "norm" in name:
        return "norm"
    if name.startswith(("t_embedder.", "y_embedder.mlp.")):
        return "embed_mlp"
    if name.startswith("y_embedder.embedding_table"):
        return "table"
    if name == "pos_embed":
        return "pos"
    if name.startswith("final_layer.linear"):
        return "final_linear"
    return "linear"


def _init_dit(name: str, p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    kind, bias = _kind_of(name), name.endswith(".bias")
    out = torch.zeros(p.shape, dtype=torch.float32)
    if kind == "norm":
        return out if bias else out + 1.0
    if kind in ("adaln", "final_linear", "pos") or bias:
        return out
    if kind in ("embed_mlp", "table"):
        return out.normal_(0.0, 0.02, generator=gen)
    fan_out, fan_in = p.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return out.uniform_(-bound, bound, generator=gen)


def _init_random(name: str, p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    kind, bias = _kind_of(name), name.endswith(".bias")
    out = torch.zeros(p.shape, dtype=torch.float32)
    if kind == "norm" and bias:
        return out.normal_(0.0, 0.2, generator=gen)
    if kind == "norm":
        return out.normal_(0.0, 0.1, generator=gen) + 1.0
    if kind == "table":
        return out.normal_(0.0, 1.0, generator=gen)
    if kind == "pos":
        return out.normal_(0.0, 0.5, generator=gen)
    if bias:
        return out.normal_(0.0, 0.2, generator=gen)
    std = 1.0 / math.sqrt(p.shape[1])
    if kind == "adaln":
        std /= 3.0
    return out.normal_(0.0, std, generator=gen)


# --------------------------------------------------------------------------- files


def save_weights(model: LinearDiT, path: str, dtype: str | torch.dtype = "f32") -> None:
    """Write canonical tensors in `dtype` (f32, bf16, f16) with the config in the metadata."""
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, path, metadata={CONFIG_KEY: model.config.to_json()})


def read_tensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of a safetensors file and its metadata ({} when it has none)."""
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def load_weights(path: str, config: Optional[LinearDiTConfig] = None) -> LinearDiT:
    """Load a weights file into a model in the file's dtype.

    The config comes from the `linear_dit.config` metadata unless given (an Axon export has
    none). Files with Axon names are converted with `from_axon_state`. Missing, extra or
    misshapen tensors raise.
    """
    tensors, metadata = read_tensors(path)
    if config is None:
        if CONFIG_KEY not in metadata:
            raise ValueError(f"{path} has no {CONFIG_KEY} metadata; pass a config")
        config = LinearDiTConfig.from_json(metadata[CONFIG_KEY])
    if "input_embed.kernel" in tensors:
        tensors = from_axon_state(tensors, config)
    expected = canonical_shapes(config)
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"missing tensor {name}, expected shape {list(shape)}")
        if tuple(tensors[name].shape) != shape:
            raise ValueError(
                f"tensor {name}: expected shape {list(shape)}, got {list(tensors[name].shape)}"
            )
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ValueError(f"unknown tensor {extra[0]}")
    dtypes = {v.dtype for v in tensors.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    model = LinearDiT(config).to(dtype)
    model.load_state_dict(tensors, strict=True)
    return model


# --------------------------------------------------------------------------- Axon names


def _axon_pairs(config: LinearDiTConfig) -> list[tuple[str, str]]:
    """(Axon layer, canonical module) for every one-to-one layer of the SPEC Axon table."""
    pairs = [
        ("input_embed", "x_embedder"),
        ("time_mlp_1", "t_embedder.mlp.0"),
        ("time_mlp_2", "t_embedder.mlp.2"),
    ]
    if config.num_classes is not None:
        pairs += [("class_embed_1", "y_embedder.mlp.0"), ("class_embed_2", "y_embedder.mlp.2")]
    for k in range(1, config.num_layers + 1):
        a, c = f"linear_dit_block_{k}_", f"blocks.{k - 1}."
        pairs += [
            (a + "attn_norm", c + "norm1"),
            (a + "mlp_norm", c + "norm2"),
            (a + "attn_out_proj", c + "attn.proj"),
            (a + "mlp_up", c + "mlp.fc1"),
            (a + "mlp_down", c + "mlp.fc2"),
        ]
    return pairs + [("final_norm", "final_layer.norm_final"), ("output_proj", "final_layer.linear")]


def _is_norm(axon_layer: str) -> bool:
    return axon_layer.endswith("_norm")


def to_axon_state(model: LinearDiT) -> dict[str, torch.Tensor]:
    """Canonical tensors of an edifice model under Axon's flat `<layer>.<param>` names.

    Kernels are `[in, out]` (transposed), LayerNorms use `gamma`/`beta`, qkv splits into
    `_attn_q|k|v`, adaLN into `_adaln_attn` (first 3h rows) and `_adaln_mlp` (last 3h).
    """
    cfg = model.config
    if cfg.flavor != "edifice":
        raise ValueError("only edifice models have an Axon layout")
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {"pos_embed.bias": sd["pos_embed"]}

    def dense(axon: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
        out[axon + ".kernel"] = weight.t()
        out[axon + ".bias"] = bias

    for axon, canon in _axon_pairs(cfg):
        w, b = sd[canon + ".weight"], sd[canon + ".bias"]
        if _is_norm(axon):
            out[axon + ".gamma"], out[axon + ".beta"] = w, b
        else:
            dense(axon, w, b)
    h = cfg.hidden_size
    for k in range(1, cfg.num_layers + 1):
        a, c = f"linear_dit_block_{k}_", f"blocks.{k - 1}."
        qkv_w, qkv_b = sd[c + "attn.qkv.weight"], sd[c + "attn.qkv.bias"]
        for j, part in enumerate("qkv"):
            dense(a + "attn_" + part, qkv_w[j * h : (j + 1) * h], qkv_b[j * h : (j + 1) * h])
        ada_w, ada_b = sd[c + "adaLN_modulation.1.weight"], sd[c + "adaLN_modulation.1.bias"]
        dense(a + "adaln_attn", ada_w[: 3 * h], ada_b[: 3 * h])
        dense(a + "adaln_mlp", ada_w[3 * h :], ada_b[3 * h :])
    return {k: v.contiguous().clone() for k, v in out.items()}


def from_axon_state(axon: dict[str, torch.Tensor], config: LinearDiTConfig) -> dict[str, torch.Tensor]:
    """Inverse of `to_axon_state`: Axon flat names -> canonical names. Unknown names raise."""
    src = dict(axon)

    def take(name: str) -> torch.Tensor:
        if name not in src:
            raise ValueError(f"missing Axon tensor {name}")
        return src.pop(name)

    out = {"pos_embed": take("pos_embed.bias")}
    for a, canon in _axon_pairs(config):
        if _is_norm(a):
            out[canon + ".weight"], out[canon + ".bias"] = take(a + ".gamma"), take(a + ".beta")
        else:
            out[canon + ".weight"], out[canon + ".bias"] = take(a + ".kernel").t(), take(a + ".bias")
    for k in range(1, config.num_layers + 1):
        a, c = f"linear_dit_block_{k}_", f"blocks.{k - 1}."
        for axon_parts, canon in (
            (("attn_q", "attn_k", "attn_v"), "attn.qkv"),
            (("adaln_attn", "adaln_mlp"), "adaLN_modulation.1"),
        ):
            out[c + canon + ".weight"] = torch.cat([take(a + s + ".kernel").t() for s in axon_parts])
            out[c + canon + ".bias"] = torch.cat([take(a + s + ".bias") for s in axon_parts])
    if src:
        raise ValueError(f"unknown Axon tensor {sorted(src)[0]}")
    return {k: v.contiguous() for k, v in out.items()}


# --------------------------------------------------------------------------- patches


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """[B, c, H, W] -> [B, (H/p)(W/p), c p p]; tokens row-major, vector order (channel, row, col)."""
    b, c, hh, ww = imgs.shape
    if hh % p or ww % p:
        raise ValueError(f"image {hh}x{ww} is not divisible by patch size {p}")
    x = imgs.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (hh // p) * (ww // p), c * p * p)


def unpatchify(tokens: torch.Tensor, p: int, c: int, hh: int, ww: int) -> torch.Tensor:
    """Inverse of `patchify`: [B, (H/p)(W/p), c p p] -> [B, c, H, W]."""
    b = tokens.shape[0]
    x = tokens.reshape(b, hh // p, ww // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, hh, ww)


# --------------------------------------------------------------------------- self-test


def numpy_forward(sd: dict, cfg: LinearDiTConfig, x, t, y, rows: int, cols: int):
    """A second, independent transcription of SPEC in NumPy float64, reading the tensor dict.

    It shares no code with the modules above (heads are looped, chunks sliced by hand), so
    the self-test can check the modules against it.
    """
    import numpy as np

    erf = np.vectorize(math.erf)

    w = {k: v.double().numpy() for k, v in sd.items()}
    h, nh = cfg.hidden_size, cfg.num_heads
    dit = cfg.flavor == "dit"

    def lin(name, v):
        return v @ w[name + ".weight"].T + w[name + ".bias"]

    def silu(v):
        return v / (1.0 + np.exp(-v))

    def ln(name, v):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        if dit:
            return (v - mu) / np.sqrt(var + 1e-6)
        return (v - mu) / np.sqrt(var + 1e-5) * w[name + ".weight"] + w[name + ".bias"]

    def gelu(v):
        if dit:
            return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))
        return 0.5 * v * (1 + erf(v / np.sqrt(2)))

    def sc(e, pos):
        om = 10000.0 ** (-np.arange(e // 2) / (e / 2))
        return np.concatenate([np.sin(pos[:, None] * om), np.cos(pos[:, None] * om)], 1)

    b, n, _ = x.shape
    tok = lin("x_embedder", x)
    if dit:
        r, k = np.arange(n) // cols, np.arange(n) % cols
        tok = tok + np.concatenate([sc(h // 2, k), sc(h // 2, r)], 1)
        om = np.exp(-np.log(10000.0) * np.arange(128) / 128)
        e = np.concatenate([np.cos(t[:, None] * om), np.sin(t[:, None] * om)], 1)
    else:
        tok = tok + w["pos_embed"]
        half = h // 2
        om = np.exp(-np.log(10000.0) * np.arange(half) / max(half - 1, 1))
        tau = t[:, None] / cfg.num_steps
        e = np.concatenate([np.sin(tau * om), np.cos(tau * om)], 1)
    c = lin("t_embedder.mlp.2", silu(lin("t_embedder.mlp.0", e)))
    if y is not None and dit:
        c = c + w["y_embedder.embedding_table.weight"][y]
    elif y is not None:
        onehot = (y[:, None] == np.arange(cfg.num_classes)[None, :]).astype(np.float64)
        c = c + lin("y_embedder.mlp.2", silu(lin("y_embedder.mlp.0", onehot)))
    a = silu(c) if dit else c
    for i in range(cfg.num_layers):
        p = f"blocks.{i}."
        mod = lin(p + "adaLN_modulation.1", a)[:, None, :]
        sh1, sc1, g1, sh2, sc2, g2 = (mod[..., j * h : (j + 1) * h] for j in range(6))
        qkv = lin(p + "attn.qkv", ln(p + "norm1", tok) * (1 + sc1) + sh1)
        o = np.zeros((b, n, h))
        for head in range(nh):
            sl = slice(head * cfg.head_dim, (head + 1) * cfg.head_dim)
            q, k, v = (qkv[..., j * h : (j + 1) * h][..., sl] for j in range(3))
            fq, fk = np.where(q > 0, q + 1, np.exp(q)), np.where(k > 0, k + 1, np.exp(k))
            s, z = np.einsum("bnd,bne->bde", fk, v), fk.sum(1)
            o[..., sl] = np.einsum("bnd,bde->bne", fq, s) / (np.einsum("bnd,bd->bn", fq, z) + 1e-6)[..., None]
        tok = tok + g1 * lin(p + "attn.proj", o)
        u = ln(p + "norm2", tok) * (1 + sc2) + sh2
        tok = tok + g2 * lin(p + "mlp.fc2", gelu(lin(p + "mlp.fc1", u)))
    tok = ln("final_layer.norm_final", tok)
    if dit:
        mod = lin("final_layer.adaLN_modulation.1", a)[:, None, :]
        tok = tok * (1 + mod[..., h:]) + mod[..., :h]
    return lin("final_layer.linear", tok)



def self_test() -> None:
    """Checks that do not depend on fixtures; prints one line per check."""
    expected = {"dit": 57_700_928, "edifice": 57_332_800}
    for flavor, count in expected.items():
        cfg = LinearDiTConfig(input_dim=64, flavor=flavor)
        model = LinearDiT(cfg)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert shapes == canonical_shapes(cfg), f"{flavor}: state_dict differs from the SPEC table"
        numel = sum(p.numel() for p in model.parameters())
        assert param_count(cfg) == numel == count, (flavor, param_count(cfg), numel, count)
        print(f"param_count {flavor:8s} recommended: {numel:,} (SPEC {count:,}) ok")
        del model

    for flavor, classes in (("dit", 3), ("edifice", 3), ("edifice", None)):
        cfg = LinearDiTConfig(input_dim=8, hidden_size=12, num_layers=1, num_heads=3,
                              num_classes=classes, flavor=flavor)
        shapes = {k: tuple(v.shape) for k, v in LinearDiT(cfg).state_dict().items()}
        assert shapes == canonical_shapes(cfg), f"{flavor}/{classes}: state_dict differs from table"
    print("state_dict names and shapes == SPEC weights table (dit/edifice, with/without classes) ok")

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 5, generator=gen, dtype=torch.float64) for _ in range(3))
    err = (linear_attention(q, k, v) - linear_attention_quadratic(q, k, v)).abs().max().item()
    assert err < 1e-12, err
    print(f"linear attention O(N d^2) vs explicit N x N (float64): max abs diff {err:.2e} ok")

    imgs = torch.randn(2, 3, 6, 10, generator=gen)
    tok = patchify(imgs, 2)
    assert tok.shape == (2, 15, 12)
    assert torch.equal(tok[0, 5 + 1, 4 + 2 * 1 + 0], imgs[0, 1, 2 * 1 + 1, 2 * 1 + 0])
    assert torch.equal(unpatchify(tok, 2, 3, 6, 10), imgs)
    print("patchify/unpatchify: (channel, row, col) order and round trip ok")

    assert LinearDiTConfig(input_dim=4, hidden_size=27, num_heads=3, mlp_ratio=1.5,
                           flavor="edifice").mlp_hidden == 41
    print("mlp width: round(h * mlp_ratio) takes halves away from zero (27 * 1.5 -> 41) ok")

    cfg = LinearDiTConfig(input_dim=4, hidden_size=12, num_layers=2, num_heads=3, num_classes=2,
                          flavor="edifice")
    model = LinearDiT(cfg)
    init_weights(model, "random", 1)
    back = from_axon_state(to_axon_state(model), cfg)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    print("Axon names: canonical -> Axon -> canonical round trip ok")

    cases = (
        ("dit", 5, 16, 4, (3, 5), [0, 5, 4]),
        ("dit", None, 24, 3, (4, 4), None),
        ("edifice", 4, 15, 3, (2, 7), [0, 4, -1]),
        ("edifice", None, 16, 2, (3, 3), None),
    )
    for flavor, classes, hidden, heads, (rows, cols), labels in cases:
        cfg = LinearDiTConfig(input_dim=8, hidden_size=hidden, num_layers=2, num_heads=heads,
                              mlp_ratio=2.0, num_classes=classes, num_steps=300, flavor=flavor)
        model = LinearDiT(cfg).double()
        init_weights(model, "random", 2)
        x = torch.randn(3, rows * cols, 8, generator=gen, dtype=torch.float64)
        t = torch.tensor([0.0, 13.5, 299.0], dtype=torch.float64)
        y = None if labels is None else torch.tensor(labels)
        with torch.no_grad():
            ours = model(x, t, y, grid=(rows, cols)).numpy()
        y_np = None if y is None else y.numpy()
        theirs = numpy_forward(model.state_dict(), cfg, x.numpy(), t.numpy(), y_np, rows, cols)
        err = abs(ours - theirs).max() / abs(theirs).max()
        assert err < 1e-12, (flavor, classes, err)
        print(f"forward {flavor:7s} classes={classes}: module vs NumPy transcription rel diff {err:.1e} ok")
    print("self-test passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self-test", action="store_true", help="run the built-in checks")
    args = parser.parse_args()
    if not args.self_test:
        parser.print_help()
        return
    self_test()


if __name__ == "__main__":
    main()
