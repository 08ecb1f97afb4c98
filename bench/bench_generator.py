"""Speed of scene sampling and of whole-dataset generation; prints figures.

.venv/bin/python bench/bench_generator.py [--device auto|cpu|cuda] [--n-images 512]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_sampling(n: int = 100_000, repeats: int = 3) -> None:
    from generator.biases import list_presets, load_spec

    for name in list_presets():
        spec = load_spec(name)
        spec.sample(1000, np.random.default_rng(0))  # warm up imports and caches
        times = []
        for seed in range(repeats):
            start = time.perf_counter()
            spec.sample(n, np.random.default_rng(seed))
            times.append(time.perf_counter() - start)
        print(f"sample {name:<11} {n} scenes: best {min(times) * 1000:7.1f} ms")


def bench_generation(n_images: int, size: int, device_name: str) -> None:
    from generator.biases import load_spec
    from generator.generate import generate_dataset
    from xaistudy.devices import resolve_device

    device = resolve_device(device_name)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_dataset(
            load_spec("iclr2022"),
            Path(tmp) / "ds",
            n_train=n_images,
            n_val=0,
            n_test=0,
            size=size,
            device=device,
            progress=False,
        )
        seconds = time.perf_counter() - start
    print(
        f"generate {n_images} images {size}px on {device}: {seconds:.2f} s, "
        f"{n_images / seconds:.1f} images/s (sampling, rendering, writing)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-images", type=int, default=512)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    bench_sampling()
    bench_generation(args.n_images, args.size, args.device)


if __name__ == "__main__":
    main()
