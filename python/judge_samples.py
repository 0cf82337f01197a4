"""Judge samples with the demo's digit classifier: the fraction classified as the class asked for.

    linear-dit sample --weights assets/digits.safetensors --class 3 --num 50 \
        --out threes.png --out-tensor threes.safetensors
    python3 python/judge_samples.py threes.safetensors --class 3

Reads `images` F32 [n, 1, 16, 16] in [-1, 1] (what `linear-dit sample --out-tensor` and
`POST /v1/generate` with `"format": "safetensors"` write) and the logistic regression in
`assets/digits_classifier.safetensors` (logits = weight . x + bias). Needs numpy + safetensors.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from safetensors.numpy import load_file

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("samples", help="safetensors file with `images` [n, 1, 16, 16]")
    p.add_argument("--class", dest="label", type=int, required=True, help="the class asked for")
    p.add_argument("--classifier", default=os.path.join(ASSETS, "digits_classifier.safetensors"))
    args = p.parse_args()
    clf = load_file(args.classifier)
    images = load_file(args.samples)["images"]
    x = images.reshape(images.shape[0], -1).astype(np.float64)
    predicted = (x @ clf["weight"].T.astype(np.float64) + clf["bias"]).argmax(axis=1)
    accuracy = float((predicted == args.label).mean())
    print(json.dumps({"class": args.label, "n": int(len(predicted)), "accuracy": accuracy,
                      "predicted": np.bincount(predicted, minlength=10).tolist()}))


if __name__ == "__main__":
    main()
