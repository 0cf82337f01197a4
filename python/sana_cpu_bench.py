"""CPU throughput of the `sana` flavor against diffusers eager, same weights, same inputs,
same thread count, in one run. A Sana-600M-shaped transformer (width 1152, 36 heads,
cross 16 x 72, Mix-FFN 2.5x, Gemma-2 captions of 300 tokens) cut to a few layers, f32, at
512 px (16 x 16 latent, 256 tokens) and 1024 px (32 x 32, 1024 tokens):

- forward: one transformer call on a batch of 2 (one classifier-free-guidance pair: the
  prompt's captions, 120 of 300 tokens kept, and the negative's, 20 of 300 kept);
- loop: the whole sampling run of one image, flow DPM-Solver++(2M) with guidance 4.5 (the
  negative captions in the same batch), from the same initial noise: diffusers' own
  SanaPipeline (scheduler + transformer, output_type="latent", no text encoder, no VAE)
  against our `run_to_end`; the relative error of our final latents to diffusers' is
  reported, so the two are seen to compute the same thing.

Rounds alternate, ours then diffusers', each after --pause idle seconds (torch's OpenMP
workers keep spinning after a parallel region and would slow the next round of either side),
after one untimed warm-up each; the medians are compared. Each thread count sets torch.set_num_threads(n) and RAYON_NUM_THREADS=n.

    cargo build --release --example sana_bench
    /work/pyenv/bin/python python/sana_cpu_bench.py [--threads 2 1] [--layers 2] [--rounds 5]
        [--steps 5] [--forward-sides 16 32] [--loop-sides 16 32] [--binary PATH] [--out FILE]

The binary defaults to $LINEAR_DIT_SANA_BENCH, else target/release/examples/sana_bench. The
last line printed is one JSON object (also written to --out).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time

import diffusers
import torch
from diffusers import DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TEXTS = 300  # Gemma-2 captions as the SANA pipelines pad them (max_sequence_length 300)
PROMPT_KEPT, NEGATIVE_KEPT = 120, 20
GUIDANCE = 4.5


def dpm():
    # The scheduler config of the diffusers SANA checkpoints.
    return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                                       prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                       lower_order_final=True, final_sigmas_type="zero")


def captions(gen, kept):
    embeds = torch.randn(1, TEXTS, 2304, generator=gen)
    mask = torch.zeros(1, TEXTS, dtype=torch.int64)
    mask[:, :kept] = 1
    return embeds, mask


class Ours:
    """Our example binary, one round per line written to it."""

    def __init__(self, binary, threads, args):
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), RUST_LOG="warn")
        self.proc = subprocess.Popen([binary, "--interleave", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def round(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sana_bench exited ({self.proc.wait()})")
        return json.loads(line)["s"]

    def close(self):
        self.proc.stdin.close()
        last = self.proc.stdout.read().strip().splitlines()
        if self.proc.wait() != 0:
            raise RuntimeError(f"sana_bench failed ({self.proc.returncode})")
        return json.loads(last[-1])


def alternate(ours, theirs, rounds, pause):
    """(our seconds, their seconds), one of each per round; `theirs` already warmed up. Each
    round starts after `pause` seconds idle: the OpenMP workers torch leaves spinning after a
    parallel region (and rayon's, briefly) would otherwise steal the cores from the other side's
    round (measured: our 2-thread forward at 256 tokens 0.59 s alone, 1.0 s right after torch's)."""
    mine, other = [], []
    for _ in range(rounds):
        time.sleep(pause)
        mine.append(ours.round())
        time.sleep(pause)
        start = time.perf_counter()
        theirs()
        other.append(time.perf_counter() - start)
    return mine, other


def row(kind, side, mine, other, extra):
    ours_s, theirs_s = statistics.median(mine), statistics.median(other)
    out = {"kind": kind, "pixels": side * 32, "tokens": side * side, "text_tokens": TEXTS, **extra,
           "linear_dit_s": ours_s, "diffusers_eager_s": theirs_s,
           "linear_dit_rounds_s": mine, "diffusers_rounds_s": other,
           "ratio_throughput_ours_over_diffusers": theirs_s / ours_s}
    images = extra.get("batch", extra.get("images"))
    work = side * side * images * extra.get("steps", 1) * (2 if kind == "loop" else 1)
    out["linear_dit_tokens_per_s"] = work / ours_s
    out["diffusers_tokens_per_s"] = work / theirs_s
    return out


def bench_forward(model, folder, tmp, side, threads, args):
    gen = torch.Generator().manual_seed(side)
    x = torch.randn(2, 32, side, side, generator=gen)
    t = torch.tensor([500.0, 500.0])
    (p, pm), (n, nm) = captions(gen, PROMPT_KEPT), captions(gen, NEGATIVE_KEPT)
    text, mask = torch.cat([p, n]), torch.cat([pm, nm]).float()
    path = os.path.join(tmp, f"forward{side}.safetensors")
    save_file({"x": x, "t": t, "encoder_hidden_states": text, "encoder_attention_mask": mask}, path)

    def theirs():
        with torch.no_grad():
            model(hidden_states=x, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask)

    theirs()
    ours = Ours(args.binary, threads, [folder, path, str(args.rounds)])
    mine, other = alternate(ours, theirs, args.rounds, args.pause)
    ours.close()
    return row("forward", side, mine, other, {"batch": 2})


def bench_loop(model, folder, tmp, side, threads, args):
    gen = torch.Generator().manual_seed(1000 + side)
    noise = torch.randn(1, 32, side, side, generator=gen)
    (p, pm), (n, nm) = captions(gen, PROMPT_KEPT), captions(gen, NEGATIVE_KEPT)
    path = os.path.join(tmp, f"loop{side}.safetensors")
    save_file({"noise": noise, "prompt_embeds": p[0], "prompt_mask": pm[0].float(),
               "negative_embeds": n[0], "negative_mask": nm[0].float()}, path)
    pipe = SanaPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=model, scheduler=dpm())
    pipe.set_progress_bar_config(disable=True)

    def theirs():
        return pipe(prompt_embeds=p, prompt_attention_mask=pm, negative_prompt=None, negative_prompt_embeds=n,
                    negative_prompt_attention_mask=nm, num_inference_steps=args.steps, guidance_scale=GUIDANCE,
                    latents=noise.clone(), output_type="latent", use_resolution_binning=False,
                    height=side * 32, width=side * 32, return_dict=False)[0]

    want = theirs()
    latents = os.path.join(tmp, f"latents{side}.safetensors")
    ours = Ours(args.binary, threads, ["--loop", str(args.steps), "--guidance", str(GUIDANCE), "--latents", latents,
                                       folder, path, str(args.rounds)])
    mine, other = alternate(ours, theirs, args.rounds, args.pause)
    ours.close()
    got = load_file(latents)["latents"]
    rel = float((got - want).norm() / want.norm())
    print(f"  loop {side * side} tokens: relative error of our final latents to diffusers' {rel:.2e}")
    return row("loop", side, mine, other, {"images": 1, "steps": args.steps, "sampler": "flow-dpmpp2m",
                                           "guidance": GUIDANCE, "rel_error_latents": rel,
                                           "max_abs_latent": float(want.abs().max())})


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "nproc": os.cpu_count(), "simd": [f for f in ("avx2", "fma", "avx512f") if f in flags],
            "commit": commit, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count()])
    parser.add_argument("--forward-sides", type=int, nargs="*", default=[16, 32])
    parser.add_argument("--loop-sides", type=int, nargs="*", default=[16, 32])
    parser.add_argument("--binary", default=os.environ.get(
        "LINEAR_DIT_SANA_BENCH", os.path.join(ROOT, "target", "release", "examples", "sana_bench")))
    parser.add_argument("--pause", type=float, default=1.0, help="idle seconds before each timed round")
    parser.add_argument("--out")
    args = parser.parse_args()
    config = dict(in_channels=32, out_channels=32, num_attention_heads=36, attention_head_dim=32,
                  num_layers=args.layers, num_cross_attention_heads=16, cross_attention_head_dim=72,
                  cross_attention_dim=1152, caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1)
    torch.manual_seed(0)
    model = SanaTransformer2DModel(**config).eval()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "transformer")
        model.save_pretrained(folder)
        for threads in args.threads:
            torch.set_num_threads(threads)
            runs = [(bench_forward, s) for s in args.forward_sides] + [(bench_loop, s) for s in args.loop_sides]
            for bench, side in runs:
                r = dict(bench(model, folder, tmp, side, threads, args), threads=threads)
                print(f"{threads} thread(s), {r['kind']} {r['pixels']} px ({r['tokens']} tokens): "
                      f"diffusers {r['diffusers_eager_s']:.3f} s, linear-dit {r['linear_dit_s']:.3f} s, "
                      f"{r['ratio_throughput_ours_over_diffusers']:.2f}x", flush=True)
                results.append(r)
    report = {"what": "sana CPU forward (batch 2 = one CFG pair) and whole sampling loop (flow-dpmpp2m, guidance "
                      "4.5, negatives in the batch, one image), f32, Sana-600M-shaped cut to few layers, against "
                      "diffusers eager (SanaTransformer2DModel / SanaPipeline) on the same weights and inputs, "
                      "rounds alternating in one run (python/sana_cpu_bench.py)",
              "config": config, "rounds": args.rounds, "pause_s": args.pause, "machine": machine(), "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
