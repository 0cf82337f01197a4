"""Train the demo model: a class-conditional Linear DiT on scikit-learn's 8x8 digits, on CPU.

Writes, under `assets/` (or `--out-dir`):

* `digits_classifier.safetensors` -- multinomial logistic regression on real digits, used to
  judge generated samples (`weight` F32 [10, 256], `bias` F32 [10]; logits = weight . x + bias).
* `digits_real.safetensors` -- 10 real digits per class (`images`, `labels`), for Rust tests.
* `digits.safetensors` -- the EMA weights of a `dit`-flavor LinearDiT (F32, SPEC metadata).
* `digits_preview.png` -- 10 classes x 8 samples, DDIM 20 steps, guidance 4, upscaled x4.
* `digits_eval.json` -- the numbers quoted in `assets/README.md`.

Image representation (shared by the classifier, the training data and the sampler output):
`load_digits().images` (values 0..16) / 16 -> [0, 1], bilinear upsampling 8x8 -> 16x16 with
`F.interpolate(mode="bilinear", align_corners=False)`, then x * 2 - 1 -> [-1, 1]; one channel.
`patchify(img [B,1,16,16], 2)` gives the model's tokens [B, 64, 4] (8x8 grid, row-major).

Diffusion: epsilon prediction, DDPM linear schedule beta_t = linspace(1e-4, 0.02, 1000),
alpha_bar_t = cumprod(1 - beta), t integer in [0, 999], x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
Classifier-free guidance: eps = eps_u + g (eps_c - eps_u), eps_u with the null class 10.

    python3 python/train_digits.py                 # classifier, training (~19 min), evaluation
    python3 python/train_digits.py --eval-only     # evaluate / redraw the preview of saved weights
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import (  # noqa: E402
    CONFIG_KEY,
    LinearDiT,
    LinearDiTConfig,
    init_weights,
    load_weights,
    param_count,
    patchify,
    read_tensors,
    save_weights,
    unpatchify,
)
from safetensors.torch import save_file  # noqa: E402

NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES
NUM_STEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
IMAGE = 16
PATCH = 2
SCHEDULE_META = {
    "linear_dit.schedule": "linear 1e-4 0.02 1000",
    "linear_dit.prediction": "eps",
    "linear_dit.image": "1x16x16 [-1,1]",
    "linear_dit.null_class": str(NULL_CLASS),
}


# --------------------------------------------------------------------------- data


def load_digits_16() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as [N, 1, 16, 16] float32 in [-1, 1] and labels [N] int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(IMAGE, IMAGE), mode="bilinear", align_corners=False)
    return x * 2.0 - 1.0, torch.tensor(d.target, dtype=torch.int64)


def shift(imgs: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate by (dy, dx) pixels, filling with background (-1)."""
    out = torch.full_like(imgs, -1.0)
    h, w = imgs.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = imgs[..., ys, xs]
    return out


def random_shift(imgs: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Each image translated by its own random (dy, dx) in [-max_shift, max_shift]^2."""
    if max_shift == 0:
        return imgs
    k = 2 * max_shift + 1
    pad = F.pad(imgs, (max_shift,) * 4, value=-1.0)
    oy = torch.randint(0, k, (imgs.shape[0],), generator=gen)
    ox = torch.randint(0, k, (imgs.shape[0],), generator=gen)
    rows = (oy[:, None] + torch.arange(IMAGE)[None, :])[:, None, :, None]
    cols = (ox[:, None] + torch.arange(IMAGE)[None, :])[:, None, None, :]
    b = torch.arange(imgs.shape[0])[:, None, None, None]
    return pad[b, 0, rows, cols]


# --------------------------------------------------------------------------- classifier


def classifier_features(imgs: torch.Tensor) -> np.ndarray:
    """[N, 1, 16, 16] in [-1, 1] -> [N, 256] row-major, float64."""
    return imgs.reshape(imgs.shape[0], -1).double().numpy()


def augment_for_classifier(imgs: torch.Tensor, labels: torch.Tensor, seed: int):
    """Real digits, their 8 one-pixel translations, and noisy copies (sigma 0.2, clipped)."""
    gen = torch.Generator().manual_seed(seed)
    parts = [shift(imgs, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    noisy = (imgs + 0.2 * torch.randn(imgs.shape, generator=gen)).clamp(-1, 1)
    parts += [noisy]
    x = torch.cat(parts)
    return x, labels.repeat(len(parts))


class LogReg:
    """Multinomial logistic regression, L2 penalty 1/(2 C n) ||W||^2 on the weights (not the
    bias), i.e. scikit-learn's objective divided by n; fitted full-batch with L-BFGS in float64.
    """

    def __init__(self, c: float) -> None:
        self.c = c

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LogReg":
        xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y)
        w = torch.zeros(NUM_CLASSES, xt.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(NUM_CLASSES, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=300, tolerance_grad=1e-9,
                                tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
        lam = 1.0 / (self.c * len(yt))

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(xt @ w.T + b, yt) + 0.5 * lam * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.coef_, self.intercept_ = w.detach().numpy(), b.detach().numpy()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (x @ self.coef_.T + self.intercept_).argmax(axis=1)


def fit_logreg(x: np.ndarray, y: np.ndarray, c: float) -> LogReg:
    return LogReg(c).fit(x, y)


def train_classifier(imgs: torch.Tensor, labels: torch.Tensor, out: str, seed: int) -> dict:
    """Hold out 20% (stratified) to choose C and report accuracy, then refit on everything."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=0.2, random_state=seed, stratify=labels.numpy())
    tr, te = torch.tensor(tr), torch.tensor(te)
    xa, ya = augment_for_classifier(imgs[tr], labels[tr], seed)
    x_te, y_te = classifier_features(imgs[te]), labels[te].numpy()
    gen = torch.Generator().manual_seed(seed + 1)
    x_te_shift = classifier_features(random_shift(imgs[te], gen, 1))
    results = {}
    for c in (0.1, 0.3, 1.0):
        clf = fit_logreg(classifier_features(xa), ya.numpy(), c)
        acc = float((clf.predict(x_te) == y_te).mean())
        acc_shift = float((clf.predict(x_te_shift) == y_te).mean())
        results[c] = (acc, acc_shift)
        print(f"classifier C={c:<5} held-out accuracy {acc:.4f} (randomly shifted by <=1 px: {acc_shift:.4f})")
    best_c = max(results, key=lambda c: (round(results[c][0] + results[c][1], 6), -c))
    xa, ya = augment_for_classifier(imgs, labels, seed)
    clf = fit_logreg(classifier_features(xa), ya.numpy(), best_c)
    weight = torch.tensor(clf.coef_, dtype=torch.float32).contiguous()
    bias = torch.tensor(clf.intercept_, dtype=torch.float32).contiguous()
    assert weight.shape == (NUM_CLASSES, IMAGE * IMAGE) and bias.shape == (NUM_CLASSES,)
    save_file(
        {"weight": weight, "bias": bias},
        out,
        metadata={
            "input": "1x16x16 in [-1,1], row-major",
            "classes": "0-9",
            "logits": "weight . x + bias",
            "model": f"multinomial logistic regression, C={best_c}",
        },
    )
    train_acc = float((classify(weight, bias, imgs) == labels).float().mean())
    print(f"classifier: C={best_c}, accuracy on all real digits after refit {train_acc:.4f} -> {out}")
    return {
        "C": best_c,
        "heldout_accuracy": results[best_c][0],
        "heldout_accuracy_shifted": results[best_c][1],
        "refit_accuracy_all_real": train_acc,
        "sweep": {str(c): v for c, v in results.items()},
    }


def write_real_digits(imgs: torch.Tensor, labels: torch.Tensor, out: str, per_class: int = 10) -> None:
    """The first `per_class` real digits of every class, in the model's representation:
    `images` F32 [10 * per_class, 1, 16, 16] in [-1, 1], `labels` I64. Rust tests check the
    classifier (and their own reading of images) against these."""
    idx = torch.cat([torch.nonzero(labels == k)[:per_class, 0] for k in range(NUM_CLASSES)])
    save_file(
        {"images": imgs[idx].float().contiguous(), "labels": labels[idx].long().contiguous()},
        out,
        metadata={"source": "sklearn.datasets.load_digits, upsampled 8x8 -> 16x16, [-1,1]"},
    )
    print(f"real digits: {len(idx)} -> {out}")


def classify(weight: torch.Tensor, bias: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
    return (imgs.reshape(imgs.shape[0], -1).float() @ weight.T + bias).argmax(dim=1)


# --------------------------------------------------------------------------- diffusion


def alphas_cumprod() -> torch.Tensor:
    """abar_t, t = 0..999, float64."""
    betas = torch.linspace(BETA_START, BETA_END, NUM_STEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def guided_eps(model, x, t: float, y, guidance: float) -> torch.Tensor:
    """eps = eps_u + g (eps_c - eps_u); eps_u with the null class. g = 1 is the plain conditional."""
    b = x.shape[0]
    if guidance == 1.0:
        return model(x, torch.full((b,), float(t)), y)
    both = model(torch.cat([x, x]), torch.full((2 * b,), float(t)),
                 torch.cat([y, torch.full_like(y, NULL_CLASS)]))
    eps_c, eps_u = both[:b], both[b:]
    return eps_u + guidance * (eps_c - eps_u)


def ddim_timesteps(steps: int) -> list[int]:
    """t_i = round(linspace(999, 0, steps)): for 20 steps 999, 946, 894, ..., 53, 0."""
    return [int(round(v)) for v in np.linspace(NUM_STEPS - 1, 0, steps)]


@torch.no_grad()
def sample_ddim(model, y: torch.Tensor, steps: int, guidance: float, gen: torch.Generator,
                noise: torch.Tensor | None = None, clip: bool = False) -> torch.Tensor:
    """Deterministic DDIM (eta = 0). Returns images [B, 1, 16, 16] clamped to [-1, 1].

    x <- N(0, I) tokens [B, 64, 4]; for each t_i (previous t_{i+1}, abar = 1 after the last):
      eps = guided_eps(x, t_i); x0 = (x - sqrt(1 - abar_t) eps) / sqrt(abar_t)
      x   = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps
    """
    abar = alphas_cumprod()
    x = noise if noise is not None else torch.randn(y.shape[0], (IMAGE // PATCH) ** 2, PATCH * PATCH, generator=gen)
    ts = ddim_timesteps(steps)
    for i, t in enumerate(ts):
        a_t = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        eps = guided_eps(model, x, t, y, guidance).double()
        x0 = (x.double() - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if clip:
            x0 = x0.clamp(-1, 1)
        x = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).float()
    return unpatchify(x, PATCH, 1, IMAGE, IMAGE).clamp(-1, 1)


@torch.no_grad()
def sample_ddpm(model, y: torch.Tensor, steps: int, guidance: float, gen: torch.Generator,
                clip: bool = True) -> torch.Tensor:
    """Ancestral DDPM on `steps` evenly respaced timesteps (same t_i as DDIM), x0 clipped to [-1, 1].

    beta'_i = 1 - abar_{t_i} / abar_{t_{i+1}}; posterior mean from (x0, x_t), variance
    beta'_i (1 - abar_prev) / (1 - abar_t); no noise on the last step.
    """
    abar = alphas_cumprod()
    x = torch.randn(y.shape[0], (IMAGE // PATCH) ** 2, PATCH * PATCH, generator=gen)
    ts = ddim_timesteps(steps)
    for i, t in enumerate(ts):
        a_t = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        beta = 1 - a_t / a_prev
        eps = guided_eps(model, x, t, y, guidance).double()
        xd = x.double()
        x0 = (xd - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if clip:
            x0 = x0.clamp(-1, 1)
        mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * xd
        if i + 1 < len(ts):
            var = beta * (1 - a_prev) / (1 - a_t)
            mean = mean + var.sqrt() * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        x = mean.float()
    return unpatchify(x, PATCH, 1, IMAGE, IMAGE).clamp(-1, 1)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def make_probe(imgs: torch.Tensor, labels: torch.Tensor, clf_path: str, seed: int, n: int = 300):
    """A cheap progress probe: noise n fixed real digits to t in {300, 500, 700, 900}, take the
    model's one-step x0 estimate with the true class, and report the classifier's accuracy on it.
    (A model that learned the classes gets near 1 even at t = 900: the estimate is a class mean.)"""
    if not os.path.exists(clf_path):
        return None
    tensors, _ = read_tensors(clf_path)
    w, b = tensors["weight"], tensors["bias"]
    gen = torch.Generator().manual_seed(seed + 55)
    idx = torch.randperm(imgs.shape[0], generator=gen)[:n]
    x0, y = patchify(imgs[idx], PATCH), labels[idx]
    noise = torch.randn(x0.shape, generator=gen)
    abar = alphas_cumprod().float()

    @torch.no_grad()
    def run(model) -> dict[int, float]:
        out = {}
        for t in (300, 500, 700, 900):
            a = abar[t]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            x0_hat = (xt - (1 - a).sqrt() * model(xt, torch.full((n,), float(t)), y)) / a.sqrt()
            out[t] = float((classify(w, b, unpatchify(x0_hat, PATCH, 1, IMAGE, IMAGE)) == y).float().mean())
        return out

    return run


def train(args, imgs: torch.Tensor, labels: torch.Tensor) -> tuple[LinearDiT, dict]:
    cfg = LinearDiTConfig(input_dim=PATCH * PATCH, hidden_size=args.hidden, num_layers=args.layers,
                          num_heads=args.heads, mlp_ratio=args.mlp_ratio, num_classes=NUM_CLASSES,
                          num_steps=NUM_STEPS, patch_size=PATCH, flavor="dit")
    torch.manual_seed(args.seed)
    model = LinearDiT(cfg)
    init_weights(model, "dit", args.seed)
    ema = copy.deepcopy(model).requires_grad_(False)
    print(f"model: {cfg.to_json()}  params {param_count(cfg):,} ({4 * param_count(cfg) / 1e6:.2f} MB f32)")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    abar = alphas_cumprod().float()
    snr = abar / (1 - abar)
    # Loss weight on the eps-MSE: clamp(SNR, snr_floor, min_snr) / SNR. In x0 terms (eps-MSE =
    # SNR * x0-MSE) the weight on the x0 error is SNR clamped to [snr_floor, min_snr]: Min-SNR-gamma
    # (Hang et al. 2023) above, and at low SNR (t >~ 350) at least the plain x0 error, so the
    # high-t steps that fix a sample's class and shape are not drowned out. Both 0 = plain MSE.
    hi = args.min_snr if args.min_snr > 0 else float("inf")
    weight = (snr.clamp(min=args.snr_floor, max=hi) / snr).clamp(max=args.weight_cap)
    probe = make_probe(imgs, labels, args.clf_path, args.seed)
    gen = torch.Generator().manual_seed(args.seed + 100)
    n = imgs.shape[0]
    start = time.time()
    window, losses_log, probes = [], [], []
    step = 0
    stopped_early = False
    for step in range(args.steps):
        if time.time() - start > args.minutes * 60:
            stopped_early = True
            print(f"time cap of {args.minutes} min reached at step {step}; stopping", flush=True)
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        x0 = random_shift(imgs[idx], gen, args.shift)
        y = labels[idx].clone()
        y[torch.rand(args.batch, generator=gen) < args.label_dropout] = NULL_CLASS
        t = torch.randint(0, NUM_STEPS, (args.batch,), generator=gen)
        noise = torch.randn(args.batch, (IMAGE // PATCH) ** 2, PATCH * PATCH, generator=gen)
        a = abar[t][:, None, None]
        xt = a.sqrt() * patchify(x0, PATCH) + (1 - a).sqrt() * noise
        per_sample = (model(xt, t.float(), y) - noise).pow(2).mean(dim=(1, 2))
        loss = (per_sample * weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        window.append((loss.item(), per_sample.mean().item()))
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            mean = sum(w for w, _ in window) / len(window)
            mse = sum(m for _, m in window) / len(window)
            losses_log.append((step + 1, round(mean, 5), round(mse, 5)))
            print(f"step {step + 1:5d}/{args.steps}  loss {mean:.4f}  mse {mse:.4f}  lr {opt.param_groups[0]['lr']:.2e}  "
                  f"elapsed {time.time() - start:6.1f}s", flush=True)
            window = []
        if probe is not None and args.probe_every and (step + 1) % args.probe_every == 0:
            accs = probe(ema)
            probes.append((step + 1, accs))
            print("    probe: class accuracy of x0-hat (EMA, conditional) "
                  + "  ".join(f"t={t}: {a:.2f}" for t, a in accs.items()), flush=True)
    else:
        step = args.steps
    elapsed = time.time() - start
    info = {
        "steps_done": step,
        "steps_planned": args.steps,
        "stopped_by_time_cap": stopped_early,
        "train_seconds": round(elapsed, 1),
        "final_loss": losses_log[-1][1] if losses_log else None,
        "final_mse": losses_log[-1][2] if losses_log else None,
        "loss_log": losses_log,
        "probe_log": probes,
        "config": json.loads(cfg.to_json()),
        "params": param_count(cfg),
        "hyper": {k: getattr(args, k) for k in ("batch", "lr", "warmup", "ema", "label_dropout", "shift",
                                                 "min_snr", "snr_floor", "weight_cap", "seed")},
    }
    print(f"training: {step} steps in {elapsed / 60:.1f} min, final loss {info['final_loss']:.4f} "
          f"(unweighted eps MSE {info['final_mse']:.4f})")
    return ema, info


def save_model(model: LinearDiT, path: str) -> None:
    """`save_weights` (F32, `linear_dit.config`), then the schedule keys added to the metadata."""
    save_weights(model, path, "f32")
    tensors, meta = read_tensors(path)
    save_file(tensors, path, metadata={**meta, **SCHEDULE_META})


# --------------------------------------------------------------------------- evaluation


def evaluate(model, clf_path: str, per_class: int, settings: list[tuple[str, int, float]], seed: int) -> dict:
    tensors, _ = read_tensors(clf_path)
    w, b = tensors["weight"], tensors["bias"]
    y = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    out = {}
    for name, steps, g in settings:
        gen = torch.Generator().manual_seed(seed)
        t0 = time.time()
        chunks = []
        for ys in y.split(250):
            fn = sample_ddim if name == "ddim" else sample_ddpm
            chunks.append(fn(model, ys, steps, g, gen))
        imgs = torch.cat(chunks)
        pred = classify(w, b, imgs)
        per = [float((pred[y == k] == k).float().mean()) for k in range(NUM_CLASSES)]
        acc = float((pred == y).float().mean())
        key = f"{name}{steps} g={g:g}"
        out[key] = {"accuracy": acc, "per_class": per, "seconds": round(time.time() - t0, 1)}
        print(f"eval {key:14s}: accuracy {acc:.4f}  per class {' '.join(f'{p:.2f}' for p in per)}  "
              f"({time.time() - t0:.0f}s)", flush=True)
    return out


def write_png(path: str, pixels: np.ndarray) -> None:
    """Minimal 8-bit grayscale PNG writer (no PIL needed)."""
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[r].astype(np.uint8).tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def to_pixels(imgs: torch.Tensor) -> np.ndarray:
    """[-1, 1] -> 0..255: round((x + 1) / 2 * 255)."""
    return ((imgs.clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8).numpy()


def preview(model, path: str, per_class: int, guidance: float, seed: int, scale: int = 4) -> None:
    """Grid: one row per class 0..9, `per_class` columns, 2 px gutters, upscaled x`scale`."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    imgs = to_pixels(sample_ddim(model, y, 20, guidance, gen))[:, 0]
    cell = IMAGE + 2
    grid = np.full((NUM_CLASSES * cell + 2, per_class * cell + 2), 64, dtype=np.uint8)
    for i, img in enumerate(imgs):
        r, c = divmod(i, per_class)
        grid[2 + r * cell: 2 + r * cell + IMAGE, 2 + c * cell: 2 + c * cell + IMAGE] = img
    write_png(path, np.kron(grid, np.ones((scale, scale), dtype=np.uint8)))
    print(f"preview -> {path}")


# --------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (sets the lr schedule)")
    p.add_argument("--minutes", type=float, default=19.5, help="hard cap on training wall time")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--min-snr", type=float, default=5.0, help="min-SNR-gamma loss weight; 0 = plain MSE")
    p.add_argument("--snr-floor", type=float, default=1.0, help="x0 weight floor at low SNR; 0 = none")
    p.add_argument("--weight-cap", type=float, default=20.0, help="cap on the eps-MSE weight")
    p.add_argument("--probe-every", type=int, default=100, help="x0-hat class probe period; 0 = off")
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--shift", type=int, default=0, help="random translation augmentation, pixels")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-per-class", type=int, default=20)
    p.add_argument("--eval", default="ddim20:1,ddim20:4,ddpm100:4",
                   help="comma list of sampler<steps>:guidance; empty for none")
    p.add_argument("--guidance", type=float, default=4.0, help="guidance of the preview grid")
    p.add_argument("--eval-only", action="store_true", help="load the saved weights; skip training")
    p.add_argument("--skip-classifier", action="store_true", help="reuse the saved classifier")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    clf_path = os.path.join(args.out_dir, "digits_classifier.safetensors")
    model_path = os.path.join(args.out_dir, "digits.safetensors")
    report_path = os.path.join(args.out_dir, "digits_eval.json")
    report = {}
    if os.path.exists(report_path) and args.eval_only:
        with open(report_path) as f:
            report = json.load(f)

    args.clf_path = clf_path
    imgs, labels = load_digits_16()
    print(f"data: {tuple(imgs.shape)} in [{imgs.min():.2f}, {imgs.max():.2f}]")
    if not (args.skip_classifier or args.eval_only):
        report["classifier"] = train_classifier(imgs, labels, clf_path, args.seed)
        write_real_digits(imgs, labels, os.path.join(args.out_dir, "digits_real.safetensors"))

    if args.eval_only:
        model = load_weights(model_path).float()
    else:
        model, report["training"] = train(args, imgs, labels)
        save_model(model, model_path)
        print(f"weights -> {model_path} ({os.path.getsize(model_path) / 1e6:.2f} MB)")
    model.eval()

    settings = []
    for item in filter(None, args.eval.split(",")):
        sampler, g = item.split(":")
        name = sampler.rstrip("0123456789")
        settings.append((name, int(sampler[len(name):]), float(g)))
    if settings:
        t0 = time.time()
        report["samples"] = evaluate(model, clf_path, args.eval_per_class, settings, args.seed + 7)
        report["samples_per_class"] = args.eval_per_class
        print(f"evaluation: {time.time() - t0:.0f}s")
    preview(model, os.path.join(args.out_dir, "digits_preview.png"), 8, args.guidance, args.seed + 3)
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"report -> {report_path}")


if __name__ == "__main__":
    main()
