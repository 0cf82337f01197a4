"""Parity fixtures for the `sana` flavor, from diffusers' own SanaTransformer2DModel.

Each variant is a tiny random config with EVERY parameter perturbed (norm weights, the
scale-shift tables, biases and the zero-initialised output layers included), saved with
diffusers' `save_pretrained`, plus the inputs and diffusers' output computed in float64
(`model.double()`; the bf16 variant's weights are rounded to bf16 first). Deterministic:
rerunning rewrites the same bytes.

    /work/pyenv/bin/python python/make_sana_fixtures.py   # needs torch, diffusers, safetensors
"""

import json
import os
import shutil

import diffusers
import torch
from diffusers import SanaTransformer2DModel
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "sana")

TINY = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=8,
    num_layers=2,
    num_cross_attention_heads=2,
    cross_attention_head_dim=8,
    cross_attention_dim=16,
    caption_channels=12,
    mlp_ratio=2.5,
    sample_size=8,
    patch_size=1,
)

# name, config changes, (batch, height, width, texts), mask?, dtype, layout
VARIANTS = [
    ("base", {}, (2, 8, 8, 5), False, torch.float32, "single"),
    ("mask", {"norm_elementwise_affine": True, "attention_bias": True}, (2, 8, 8, 6), True, torch.float32, "single"),
    ("qk_norm", {"qk_norm": "rms_norm_across_heads"}, (2, 8, 8, 5), True, torch.float32, "single"),
    ("sprint", {"qk_norm": "rms_norm_across_heads", "guidance_embeds": True, "guidance_embeds_scale": 0.1,
                "timestep_scale": 1000.0, "out_channels": 4}, (2, 8, 8, 5), True, torch.float32, "single"),
    ("pos_embed", {"interpolation_scale": 1.0, "sample_size": 16}, (2, 8, 8, 5), False, torch.float32, "single"),
    ("patch2_nonsquare", {"patch_size": 2, "interpolation_scale": 2.0, "out_channels": 3}, (3, 8, 12, 7), True,
     torch.float32, "single"),
    ("bf16", {}, (2, 8, 8, 5), False, torch.bfloat16, "single"),
    ("sharded_pipeline", {"qk_norm": "rms_norm_across_heads"}, (2, 6, 10, 4), True, torch.float32, "pipeline"),
]


def perturb(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("norm.weight") or ".norm_" in name or name.endswith("norm2.weight"):
                p.copy_((1.0 + 0.1 * noise).to(p.dtype))
            else:
                p.copy_((0.3 * noise).to(p.dtype))


def main():
    if os.path.isdir(OUT):
        for entry in os.listdir(OUT):
            path = os.path.join(OUT, entry)
            if os.path.isdir(path):
                shutil.rmtree(path)
    os.makedirs(OUT, exist_ok=True)
    summary = {}
    for index, (name, changes, (batch, height, width, texts), masked, dtype, layout) in enumerate(VARIANTS):
        gen = torch.Generator().manual_seed(1000 + index)
        config = dict(TINY, **changes)
        torch.manual_seed(index)
        model = SanaTransformer2DModel(**config).eval()
        perturb(model, gen)
        model = model.to(dtype)
        folder = os.path.join(OUT, name)
        model_dir = os.path.join(folder, "transformer")
        if layout == "pipeline":
            # A pipeline folder: the model under transformer/, sharded with an index.
            model.save_pretrained(model_dir, max_shard_size="20KB", safe_serialization=True)
            with open(os.path.join(folder, "model_index.json"), "w") as f:
                json.dump({"_class_name": "SanaPipeline", "_diffusers_version": diffusers.__version__,
                           "transformer": ["diffusers", "SanaTransformer2DModel"]}, f, indent=2, sort_keys=True)
        else:
            model.save_pretrained(model_dir, safe_serialization=True)

        channels = config["in_channels"]
        x = torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64).float()
        t = torch.tensor([10.0, 500.0, 990.0][:batch], dtype=torch.float32)
        captions = torch.randn(batch, texts, config["caption_channels"], generator=gen, dtype=torch.float64).float()
        inputs = {"x": x, "t": t, "encoder_hidden_states": captions}
        if masked:
            mask = torch.ones(batch, texts, dtype=torch.float32)
            for b in range(batch):
                mask[b, texts - 1 - b:] = 0.0  # sample b drops its last b+1 tokens
            inputs["encoder_attention_mask"] = mask
        if config.get("guidance_embeds"):
            inputs["guidance"] = torch.tensor([4.5, 3.0, 1.0][:batch], dtype=torch.float32)

        reference = model.double()
        with torch.no_grad():
            v = reference(
                hidden_states=x.double(),
                encoder_hidden_states=captions.double(),
                timestep=t.double(),
                guidance=inputs["guidance"].double() if "guidance" in inputs else None,
                encoder_attention_mask=inputs["encoder_attention_mask"].double() if masked else None,
            ).sample
        save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(folder, "input.safetensors"))
        save_file({"v": v.float().contiguous()}, os.path.join(folder, "expected.safetensors"))
        summary[name] = {
            "config": config,
            "layout": layout,
            "dtype": str(dtype).replace("torch.", ""),
            "batch_height_width_texts": [batch, height, width, texts],
            "mask": masked,
            "param_count": sum(p.numel() for p in model.parameters()),
        }
        print(f"{name}: v {list(v.shape)} max |v| {v.abs().max().item():.3f}")

    summary_path = os.path.join(OUT, "variants.json")
    with open(summary_path, "w") as f:
        json.dump({"diffusers": diffusers.__version__, "torch": torch.__version__.split("+")[0],
                   "variants": summary, "param_counts": real_param_counts()}, f, indent=2, sort_keys=True)


def real_param_counts():
    """Exact parameter counts of the published SANA transformer configs, on the meta device."""
    configs = {
        # Efficient-Large-Model/Sana_600M_1024px_diffusers transformer/config.json
        "Sana_600M_1024px": dict(in_channels=32, out_channels=32, num_attention_heads=36, attention_head_dim=32,
                                 num_layers=28, num_cross_attention_heads=16, cross_attention_head_dim=72,
                                 cross_attention_dim=1152, caption_channels=2304, mlp_ratio=2.5, sample_size=32,
                                 patch_size=1, norm_elementwise_affine=False, norm_eps=1e-6),
        # Efficient-Large-Model/Sana_1600M_1024px_diffusers transformer/config.json
        "Sana_1600M_1024px": dict(in_channels=32, out_channels=32, num_attention_heads=70, attention_head_dim=32,
                                  num_layers=20, num_cross_attention_heads=20, cross_attention_head_dim=112,
                                  cross_attention_dim=2240, caption_channels=2304, mlp_ratio=2.5, sample_size=32,
                                  patch_size=1, norm_elementwise_affine=False, norm_eps=1e-6),
    }
    counts = {}
    for name, config in configs.items():
        with torch.device("meta"):
            model = SanaTransformer2DModel(**config)
        counts[name] = {"config": config, "param_count": sum(p.numel() for p in model.parameters())}
    return counts


if __name__ == "__main__":
    main()
