"""Flow-matching sampling fixtures for the `sana` flavor, from diffusers itself.

1. schedules.json: the timesteps and sigmas diffusers' schedulers visit, as SANA's pipelines
   configure them — DPMSolverMultistepScheduler (use_flow_sigmas, flow_prediction,
   flow_shift 3.0 and 6.0, lower_order_final, final sigma 0) and
   FlowMatchEulerDiscreteScheduler (shift 3.0) for 1–50 steps, SCMScheduler (trigflow) for
   1–4 steps with the transformer timestep sin θ / (cos θ + sin θ) SanaSprintPipeline feeds.
2. loop_<name>.safetensors (+ loops.json): whole sampling runs of diffusers' own pipelines
   (SanaPipeline, SanaSprintPipeline with output_type="latent": scheduler + transformer, no
   text encoder, no VAE) on the tiny models of tests/fixtures/sana/, from recorded initial
   noise (and, for SCM, the step noise the scheduler drew, recorded as drawn). The negative
   captions are stored unpadded; diffusers runs them padded to the prompt's length with
   masked tokens of random values, which must not matter.

Run in float32, as the pipelines run, with one change: diffusers' timestep sinusoid
(`get_timestep_embedding`) is evaluated with correctly rounded exp / sin / cos, which is what
the Rust side computes. torch's f32 `exp` (MKL on this wheel) is not correctly rounded for 2
of the 128 frequencies (k = 12 and 106, one ulp each); at t ≈ 1000 that ulp moves t·f_12
by 3e-5 and the tiny perturbed models' output by up to 2.5e-5 relative, which a 6-step
guided loop amplifies past 1e-4 — a property of the platform's exp, not of the sampler. The
unpatched pipeline's latents are stored too (`latents_torch_exp`) and the test reports the
distance to them. Deterministic:

    /work/pyenv/bin/python python/make_flow_fixtures.py   # needs torch, diffusers, safetensors
"""

import json
import math
import os

import diffusers
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    SanaPipeline,
    SanaSprintPipeline,
    SanaTransformer2DModel,
    SCMScheduler,
)
from diffusers.models import embeddings
from diffusers.schedulers import scheduling_scm
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SANA = os.path.join(HERE, "..", "tests", "fixtures", "sana")
OUT = os.path.join(HERE, "..", "tests", "fixtures", "flow")


def dpm(shift):
    # The scheduler config of the diffusers SANA checkpoints (scheduler/scheduler_config.json).
    return DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="linspace",
    )


def correctly_rounded_timestep_embedding(timesteps, embedding_dim, flip_sin_to_cos=False,
                                        downscale_freq_shift=1, scale=1, max_period=10000):
    """diffusers' get_timestep_embedding with exp, sin and cos rounded once from float64."""
    half = embedding_dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device)
    exponent = exponent / (half - downscale_freq_shift)
    freqs = torch.exp(exponent.double()).float()
    args = scale * (timesteps[:, None].float() * freqs[None, :])
    emb = torch.cat([torch.sin(args.double()).float(), torch.cos(args.double()).float()], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1, 0, 0))
    return emb


def floats(t):
    return [float(v) for v in t.tolist()]


def schedules():
    out = {"diffusers": diffusers.__version__, "flow-dpmpp2m": {}, "flow-euler": {}, "scm": {}}
    for shift in (3.0, 6.0):
        runs = {}
        for steps in range(1, 51):
            s = dpm(shift)
            s.set_timesteps(steps)
            runs[str(steps)] = {"timesteps": floats(s.timesteps), "sigmas": floats(s.sigmas)}
        out["flow-dpmpp2m"][str(shift)] = runs
    runs = {}
    for steps in range(1, 51):
        s = FlowMatchEulerDiscreteScheduler(shift=3.0)
        s.set_timesteps(steps)
        runs[str(steps)] = {"timesteps": floats(s.timesteps), "sigmas": floats(s.sigmas)}
    out["flow-euler"]["3.0"] = runs
    runs = {}
    for steps in range(1, 5):
        s = SCMScheduler()
        s.set_timesteps(steps, intermediate_timesteps=1.3 if steps == 2 else None)
        angles = s.timesteps[:-1]
        model_t = torch.sin(angles) / (torch.cos(angles) + torch.sin(angles))
        runs[str(steps)] = {"timesteps": floats(model_t), "sigmas": floats(s.timesteps)}
    out["scm"]["0"] = runs
    with open(os.path.join(OUT, "schedules.json"), "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")


# name, model variant, pipeline, sampler, steps, guidance, images, (height, width), texts, negative texts
LOOPS = [
    ("dpmpp2m_cfg", "base", "sana", "flow-dpmpp2m", 8, 4.5, 2, (8, 8), 5, 3),
    ("dpmpp2m_long_nonsquare", "qk_norm", "sana", "flow-dpmpp2m", 20, 1.0, 1, (6, 10), 4, 0),
    ("euler_cfg", "mask", "sana", "flow-euler", 6, 3.0, 2, (8, 8), 6, 6),
    ("scm_2", "sprint", "sprint", "scm", 2, 4.5, 2, (8, 8), 5, 0),
    ("scm_4", "sprint", "sprint", "scm", 4, 3.0, 1, (8, 6), 5, 0),
]


def patched(run):
    """run() with diffusers' timestep sinusoid correctly rounded."""
    real = embeddings.get_timestep_embedding
    embeddings.get_timestep_embedding = correctly_rounded_timestep_embedding
    try:
        return run()
    finally:
        embeddings.get_timestep_embedding = real


def both(run, kwargs, noise0):
    """(patched run, plain run), each from the same initial latents."""
    first = patched(run)
    kwargs["latents"] = noise0.clone()
    return first, run()


def loop(name, variant, pipeline, sampler, steps, guidance, images, size, texts, neg_texts, gen):
    model = SanaTransformer2DModel.from_pretrained(os.path.join(SANA, variant, "transformer"))
    model = model.to(torch.float32).eval()
    cfg = model.config
    h, w = size
    noise0 = torch.randn((images, cfg.in_channels, h, w), generator=gen, dtype=torch.float32)
    prompt = torch.randn((1, texts, cfg.caption_channels), generator=gen, dtype=torch.float32)
    mask = torch.ones((1, texts), dtype=torch.int64)
    if texts > 3:
        mask[0, -2:] = 0  # the pipelines pad captions with masked tokens
    tensors = {"noise_0": noise0, "prompt_embeds": prompt[0], "prompt_mask": mask[0].float()}
    kwargs = dict(
        prompt_embeds=prompt,
        prompt_attention_mask=mask,
        num_inference_steps=steps,
        guidance_scale=guidance,
        num_images_per_prompt=images,
        height=h * 32,
        width=w * 32,
        latents=noise0.clone(),
        output_type="latent",
        return_dict=False,
    )
    if pipeline == "sana":
        scheduler = dpm(3.0) if sampler == "flow-dpmpp2m" else FlowMatchEulerDiscreteScheduler(shift=3.0)
        pipe = SanaPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=model, scheduler=scheduler)
        if guidance > 1.0:
            negative = torch.randn((1, neg_texts, cfg.caption_channels), generator=gen, dtype=torch.float32)
            neg_mask = torch.ones((1, neg_texts), dtype=torch.int64)
            neg_mask[0, -1] = 0
            pad = texts - neg_texts
            padded = torch.cat([negative, 5.0 * torch.randn((1, pad, cfg.caption_channels), generator=gen)], 1)
            padded_mask = torch.cat([neg_mask, torch.zeros((1, pad), dtype=torch.int64)], 1)
            kwargs.update(negative_prompt=None, negative_prompt_embeds=padded,
                          negative_prompt_attention_mask=padded_mask)
            tensors.update(negative_embeds=negative[0], negative_mask=neg_mask[0].float())
        kwargs.update(use_resolution_binning=False)
        latents, torch_exp = both(lambda: pipe(**kwargs)[0], kwargs, noise0)
    else:
        pipe = SanaSprintPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=model,
                                  scheduler=SCMScheduler())
        drawn = []
        real = scheduling_scm.randn_tensor

        def recording(*args, **kw):
            z = real(*args, **kw)
            drawn.append(z.clone())
            return z

        kwargs.update(use_resolution_binning=False, intermediate_timesteps=1.3 if steps == 2 else None)
        state = gen.get_state()
        scheduling_scm.randn_tensor = recording
        try:
            latents = patched(lambda: pipe(**kwargs, generator=gen)[0])
        finally:
            scheduling_scm.randn_tensor = real
        after = gen.get_state()
        gen.set_state(state)  # the same step noise again
        kwargs["latents"] = noise0.clone()
        torch_exp = pipe(**kwargs, generator=gen)[0]
        assert torch.equal(gen.get_state(), after)
        for k, z in enumerate(drawn):
            tensors[f"noise_{k + 1}"] = z.to(torch.float32)
    tensors["latents"] = latents.to(torch.float32)
    tensors["latents_torch_exp"] = torch_exp.to(torch.float32)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, f"loop_{name}.safetensors"))
    return {
        "model": variant,
        "sampler": sampler,
        "steps": steps,
        "guidance": guidance,
        "images": images,
        "height": h,
        "width": w,
        "noise_draws": 1 + sum(1 for k in tensors if k.startswith("noise_") and k != "noise_0"),
        "latents_abs_max": float(latents.abs().max()),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    schedules()
    gen = torch.Generator().manual_seed(20261202)
    meta = {name: loop(name, *rest, gen) for name, *rest in LOOPS}
    with open(os.path.join(OUT, "loops.json"), "w") as f:
        json.dump({"diffusers": diffusers.__version__, "torch": torch.__version__.split("+")[0], "loops": meta},
                  f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
