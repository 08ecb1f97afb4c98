"""Seconds per image of every attribution method, on the ResNet and the flow at 64 px.

Usage::

    python bench/attribution.py                      # CPU, and CUDA when present
    python bench/attribution.py --threads 1 --images 8 --models flow

The flow is ``cpu-small`` (the invertible model of the counterfactual condition) with
fresh weights, its ActNorms initialized on one batch; the ResNet is ``resnet-cpu``
(``modeling.resnet``, ResNet-18 blocks at width 32) with fresh weights. Speed does not
depend on what the weights learned. Each method runs with its default settings on
``--images`` random 64 px images in batches of ``--batch-size``, after a warm-up call on
two images; methods a model does not support are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/explain.py would shadow the explain package: keep bench/ off the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from explain.attribution import METHODS, attribute, supports  # noqa: E402
from modeling.architectures import build_model  # noqa: E402
from modeling.configs import CONFIGS  # noqa: E402

SIZE = 64


def flow(images: torch.Tensor) -> torch.nn.Module:
    model = build_model(CONFIGS["cpu-small"], seed=0)
    with torch.no_grad():
        model.train()(images)  # ActNorm's data-dependent initialization
        model.classifier_w.normal_(0.0, 0.1)
    return model.eval()


def resnet() -> torch.nn.Module:
    return build_model(CONFIGS["resnet-cpu"], seed=0).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["resnet", "flow"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on the CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, SIZE, SIZE, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    print(f"{args.images} images of {SIZE} px, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'device':<6}  {'model':<6}  {'method':<20}  seconds per image")
    for name in devices:
        device = torch.device(name)
        for model_name in args.models:
            model = (flow(x) if model_name == "flow" else resnet()).to(device)
            for method in args.methods:
                if not supports(method, model):
                    continue
                attribute(method, model, images[:2], device)  # warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                attribute(method, model, images, device, batch_size=args.batch_size)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = (time.perf_counter() - start) / len(images)
                print(f"{name:<6}  {model_name:<6}  {method:<20}  {seconds:8.4f}", flush=True)


if __name__ == "__main__":
    main()
