"""CPU forward throughput of the `sana` flavor against diffusers eager, same weights, same
inputs, same thread count, in one run. A Sana-600M-shaped transformer (width 1152, 36 heads,
cross 16 x 72, Mix-FFN 2.5x, Gemma-2 captions of 300 tokens) cut to a few layers, at 512 px
(16 x 16 latent, 256 tokens) and 1024 px (32 x 32, 1024 tokens), f32.

    cargo build --release --example sana_bench
    /work/pyenv/bin/python python/sana_cpu_bench.py [--layers 2] [--rounds 5] [--out FILE]

The last line printed is one JSON object (also written to --out).
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import diffusers
import torch
from diffusers import SanaTransformer2DModel
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = dict(in_channels=32, out_channels=32, num_attention_heads=36, attention_head_dim=32,
                  num_layers=args.layers, num_cross_attention_heads=16, cross_attention_head_dim=72,
                  cross_attention_dim=1152, caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1)
    torch.manual_seed(0)
    model = SanaTransformer2DModel(**config).eval()
    binary = os.path.join(ROOT, "target", "release", "examples", "sana_bench")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "transformer")
        model.save_pretrained(folder)
        for pixels, side in [(512, 16), (1024, 32)]:
            gen = torch.Generator().manual_seed(side)
            x = torch.randn(1, 32, side, side, generator=gen)
            t = torch.tensor([500.0])
            captions = torch.randn(1, 300, 2304, generator=gen)
            mask = torch.ones(1, 300)
            mask[:, 120:] = 0.0  # a 120-token prompt padded to 300, as the pipelines pass it
            inputs = os.path.join(tmp, f"input{side}.safetensors")
            save_file({"x": x, "t": t, "encoder_hidden_states": captions, "encoder_attention_mask": mask}, inputs)
            with torch.no_grad():
                model(hidden_states=x, encoder_hidden_states=captions, timestep=t, encoder_attention_mask=mask)
                times = []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    model(hidden_states=x, encoder_hidden_states=captions, timestep=t, encoder_attention_mask=mask)
                    times.append(time.perf_counter() - start)
            ours = json.loads(subprocess.run([binary, folder, inputs, str(args.rounds)], check=True,
                                             capture_output=True, text=True,
                                             env=dict(os.environ, RAYON_NUM_THREADS=str(args.threads),
                                                      RUST_LOG="warn")).stdout.strip().splitlines()[-1])
            diffusers_s = statistics.median(times)
            row = {"pixels": pixels, "tokens": side * side, "text_tokens": 300,
                   "diffusers_eager_s": diffusers_s, "linear_dit_cpu_s": ours["median_s"],
                   "speedup": diffusers_s / ours["median_s"]}
            print(f"{pixels} px ({side * side} tokens): diffusers {diffusers_s * 1e3:.1f} ms, "
                  f"linear-dit {ours['median_s'] * 1e3:.1f} ms, {row['speedup']:.2f}x")
            results.append(row)
    report = {"what": "sana CPU forward, f32, batch 1, Sana-600M-shaped cut to few layers, against diffusers eager "
                      "in the same run (python/sana_cpu_bench.py)",
              "layers": args.layers, "threads": args.threads, "rounds": args.rounds,
              "diffusers": diffusers.__version__, "torch": torch.__version__.split("+")[0], "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
