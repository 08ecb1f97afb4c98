"""Speed of scene sampling and of whole-dataset generation end to end; prints figures.

.venv/bin/python bench/bench_generator.py [--n-images 20000] [--size 128] [--device auto]
[--no-antialias] [--sampling]

Generation runs the real ``generate_dataset`` (train split only, anti-aliasing on unless
``--no-antialias``) into a temporary folder that is removed afterwards, and prints
images/s of wall-clock time, images per CPU-second (this process and its worker
processes together: figures that carry over to a machine other work shares), the load
average, peak memory and the share of time per stage. Start-up (importing the generator
and torch) is timed in a fresh interpreter. ``--sampling`` also times the scene sampling
of every bias preset on its own.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measures import cpu_seconds, load, peak_rss_mib

ROOT = Path(__file__).resolve().parents[1]


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


def startup_seconds() -> tuple[float, float]:
    """Wall and CPU seconds of a fresh interpreter importing what ``generate`` needs."""
    code = "import generator.generate, generator.render, generator.biases"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path[1:]])}
    start, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start, cpu_seconds() - cpu


def bench_generation(n_images: int, size: int, device_name: str, antialias: bool) -> None:
    from generator.biases import load_spec
    from generator.generate import generate_dataset
    from xaistudy.devices import resolve_device
    from xaistudy.files import Stopwatch

    startup_wall, startup_cpu = startup_seconds()
    device = resolve_device(device_name)
    watch = Stopwatch()
    before = load()
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), cpu_seconds()
        generate_dataset(
            load_spec("iclr2022"),
            Path(tmp) / "ds",
            n_train=n_images,
            n_val=0,
            n_test=0,
            size=size,
            device=device,
            antialias=antialias,
            progress=False,
            stopwatch=watch,
        )
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    print(
        f"generate {n_images} images {size}px on {device}, anti-aliasing "
        f"{'on' if antialias else 'off'}: {seconds:.2f} s wall, {cpu:.2f} CPU-s "
        f"(load average {before} -> {load()})"
    )
    print(f"  {n_images / seconds:.1f} images/s, {n_images / cpu:.1f} images per CPU-second")
    with_startup = n_images / (seconds + startup_wall)
    print(
        f"  start-up (imports, fresh interpreter): {startup_wall:.2f} s wall, "
        f"{startup_cpu:.2f} CPU-s; with it {with_startup:.1f} images/s"
    )
    own = peak_rss_mib(resource.RUSAGE_SELF)
    worker = peak_rss_mib(resource.RUSAGE_CHILDREN)
    print(f"  peak resident memory: this process {own:.0f} MiB, largest child {worker:.0f} MiB")
    print("  wall time per stage:")
    for name, stage in sorted(watch.seconds.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<14} {stage:7.2f} s  {100 * stage / seconds:5.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--no-antialias", dest="antialias", action="store_false")
    parser.add_argument("--sampling", action="store_true", help="also time scene sampling")
    args = parser.parse_args()
    if args.sampling:
        bench_sampling()
    bench_generation(args.n_images, args.size, args.device, args.antialias)


if __name__ == "__main__":
    main()
