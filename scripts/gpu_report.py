#!/usr/bin/env python3
"""Assembles the GPU check's result file from its pieces (bench JSON lines, doctor, status).

Usage: gpu_report.py BENCH.jsonl DOCTOR.json STATUS.txt COMMIT [SERVE.json DIGITS.jsonl SKIPPED.txt] > gpu-check.json

For every shape it puts linear-dit beside PyTorch eager, torch.compile and the softmax (SDPA)
model measured in the same run, with the speed-up ratios the CUDA issue sets targets for, and
copies the per-phase profiles (achieved GB/s and TFLOP/s against the measured ceilings).
With SERVE.json (the last line of `linear-dit loadgen --json` against the demo model on the
GPU) and DIGITS.jsonl (`python/judge_samples.py` lines of GPU samples), it adds the serving
batching gain and the demo model's class-conditional accuracy on the GPU. SKIPPED.txt lists
the steps gpu-check.sh left out to stay inside its time budget (one per line), reported as
`skipped_for_time` so that a partial sweep never passes for a complete one.
"""
import datetime
import json
import sys


def read_optional(path: str | None, lines: bool = False):
    """A JSON file (or JSON lines), or None when absent or unreadable."""
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()] if lines else json.loads(f.read().splitlines()[-1])
    except (TypeError, OSError, ValueError, IndexError):
        return None


def main() -> None:
    bench_path, doctor_path, status_path, commit = sys.argv[1:5]
    serve = read_optional(sys.argv[5] if len(sys.argv) > 5 else None)
    digits = read_optional(sys.argv[6] if len(sys.argv) > 6 else None, lines=True)
    try:
        with open(sys.argv[7]) as f:
            skipped = [line.strip() for line in f if line.strip()]
    except (IndexError, OSError):
        skipped = []
    rows = [json.loads(line) for line in open(bench_path) if line.strip()]
    doctor = json.load(open(doctor_path))
    status = dict(line.split() for line in open(status_path) if line.strip())
    shapes = {}
    for row in rows:
        key = (row["batch"], row["tokens"])
        entry = shapes.setdefault(key, {"batch": key[0], "tokens": key[1]})
        if row.get("impl") == "linear-dit":
            entry["linear_dit"] = row
        elif row.get("attention") == "softmax":
            entry["pytorch_softmax_sdpa"] = row
        elif row.get("impl") == "pytorch-compile":
            entry["pytorch_compile"] = row
        else:
            entry["pytorch_eager"] = row
    table = []
    for key in sorted(shapes):
        e = shapes[key]
        ours = e.get("linear_dit", {}).get("tokens_per_s")
        line = {"batch": key[0], "tokens": key[1], "linear_dit_tokens_per_s": ours,
                "linear_dit_ms": e.get("linear_dit", {}).get("ms_per_forward")}
        for peer in ("pytorch_eager", "pytorch_compile", "pytorch_softmax_sdpa"):
            theirs = e.get(peer, {}).get("tokens_per_s")
            line[f"{peer}_tokens_per_s"] = theirs
            line[f"speedup_vs_{peer}"] = (ours / theirs) if ours and theirs else None
        profile = e.get("linear_dit", {}).get("profile")
        if profile:
            line["profile"] = profile
        table.append(line)
    devices = doctor.get("devices") or [{}]
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "gpu": devices[0].get("name"),
        "driver_cuda": doctor.get("driver", {}).get("cuda_version"),
        "doctor": doctor,
        "checks": status,
        "skipped_for_time": skipped,
        "shapes": table,
        "serving_demo_model": serve,
        "demo_model_accuracy": {
            "per_class": {d["class"]: d["accuracy"] for d in digits},
            "mean": sum(d["accuracy"] for d in digits) / len(digits),
        } if digits else None,
        "targets": {
            "mfu_ge_60pct_at_65536_tokens": "see profile.mfu_pct_of_measured_peak",
            "speedup_vs_eager_ge_2x_everywhere": all(
                (r["speedup_vs_pytorch_eager"] or 0) >= 2 for r in table) if table else None,
            "speedup_vs_compile_ge_1_3x_where_measured": all(
                (r["speedup_vs_pytorch_compile"] or 0) >= 1.3 for r in table if r["pytorch_compile_tokens_per_s"])
            if any(r["pytorch_compile_tokens_per_s"] for r in table) else None,
            "serving_batching_gain_ge_3x": (serve or {}).get("batching_gain", 0) >= 3 if serve else None,
        },
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
