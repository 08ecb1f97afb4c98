"""Renderer throughput: images/s at 128x128 with anti-aliasing, peak memory, time per stage.

Usage: ``.venv/bin/python bench/render.py [--images 1024] [--batch-size 64,256]
[--threads 1,2] [--workers 2] [--devices cpu,cuda]``. On the CPU it measures
``render_scenes`` end to end with worker processes (one torch thread each, start-up
included; ``render_scenes`` renders at most ``CPU_BATCH`` scenes at once there), then one
``Renderer`` in this process with each torch thread count and batch size, then the time per
stage with one thread. On CUDA it measures ``render_scenes`` with each batch size (the
images brought home into numpy arrays, as ``xaistudy generate`` does), then one
``Renderer`` with the largest batch (each batch copied to the host as it comes) and the
time per stage. Every figure comes with the load average at the time, since other work on
the machine slows it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import pandas as pd
import torch
from measures import cpu_seconds, load, peak_rss_mib

from generator.attributes import LABELS, RANGES
from generator.parallel import CPU_BATCH, usable_cores
from generator.render import Renderer, frame_to_batch, render_scenes
from xaistudy.files import Stopwatch


def random_scenes(count: int, seed: int) -> pd.DataFrame:
    """Scenes drawn uniformly over every attribute's range."""
    rng = np.random.default_rng(seed)
    columns = {name: rng.uniform(low, high, count) for name, (low, high) in RANGES.items()}
    columns["obj_name"] = rng.choice(LABELS, count)
    columns["fliplr"] = rng.random(count) < 0.5
    return pd.DataFrame(columns)


def bench_workers(scenes: pd.DataFrame, batch_size: int, size: int, workers: int) -> None:
    """``render_scenes`` on the CPU with ``workers`` processes, fork and transfer included."""
    torch.set_num_threads(workers)  # each worker then gets one thread
    render_scenes(scenes.iloc[: 2 * workers], size=size, workers=workers)  # warm-up
    before = load()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    render_scenes(scenes, size=size, batch_size=batch_size, workers=workers)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    n = len(scenes)
    print(
        f"cpu, {workers} worker processes x 1 thread, batch size {batch_size}: {n} images in "
        f"{elapsed:.2f} s, {n / elapsed:.1f} images/s, {n / cpu:.1f} images per CPU-second "
        f"(load average {before} -> {load()})"
    )
    worker_rss = peak_rss_mib(resource.RUSAGE_CHILDREN)
    print(f"  peak resident memory of the largest worker so far: {worker_rss:.0f} MiB")


def bench_cuda(scenes: pd.DataFrame, batch_size: int, size: int) -> None:
    """``render_scenes`` on the GPU, the images and masks brought home into numpy arrays
    (what ``xaistudy generate`` does)."""
    cuda = torch.device("cuda")
    render_scenes(scenes.iloc[:batch_size], size=size, device=cuda, batch_size=batch_size)
    torch.cuda.synchronize(cuda)
    torch.cuda.reset_peak_memory_stats(cuda)
    start = time.perf_counter()
    render_scenes(scenes, size=size, device=cuda, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(cuda) / 2**20
    print(
        f"cuda, render_scenes into host arrays, batch size {batch_size}: {len(scenes)} images "
        f"in {elapsed:.2f} s, {len(scenes) / elapsed:.1f} images/s; peak CUDA memory "
        f"allocated {peak:.0f} MiB"
    )


def bench_process(device: torch.device, scenes, batch_size: int, size: int, threads: int):
    """One process rendering batches with ``threads`` torch threads; returns the renderer."""
    torch.set_num_threads(threads)
    renderer = Renderer(size=size, device=device, antialias=True)
    batch = frame_to_batch(scenes)
    parts = [
        {k: v[i : i + batch_size] for k, v in batch.items()}
        for i in range(0, len(scenes), batch_size)
    ]
    renderer.render(parts[0])  # warm-up: allocator, kernels
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = load()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    for part in parts:
        images, masks = renderer.render(part)
        images.cpu(), masks.cpu()
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    n = len(scenes)
    print(
        f"{device}, 1 process x {threads} thread(s), batch size {batch_size}: {n} images in "
        f"{elapsed:.2f} s, {n / elapsed:.1f} images/s, {n / cpu:.1f} images per CPU-second "
        f"(load average {before} -> {load()})"
    )
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        print(f"  peak CUDA memory allocated: {peak:.0f} MiB")
    rss = peak_rss_mib(resource.RUSAGE_SELF)
    print(f"  peak resident memory of this process so far: {rss:.0f} MiB")
    return renderer, parts


def stage_times(renderer: Renderer, parts) -> None:
    """A timed pass (synchronizing on CUDA, which costs a little): seconds per stage."""
    watch = renderer.stopwatch = Stopwatch()
    for part in parts:
        renderer.render(part)
    renderer.stopwatch = None
    stages, total = watch.seconds, watch.total
    print(f"  time per stage ({torch.get_num_threads()} thread(s), timed pass):")
    for name, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<13} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")


def bench_cpu(scenes: pd.DataFrame, args) -> None:
    """Worker processes first, so that their memory figure is not inflated by the pages the
    single-process runs leave in this process; ``render_scenes`` renders at most
    ``CPU_BATCH`` scenes at once on the CPU."""
    for batch_size in sorted({min(b, CPU_BATCH) for b in args.batch_size}):
        for workers in args.workers:
            if workers > 1:
                bench_workers(scenes, batch_size, args.size, workers)
    cpu = torch.device("cpu")
    timed = None
    for batch_size in args.batch_size:
        for threads in args.threads:
            renderer, parts = bench_process(cpu, scenes, batch_size, args.size, threads)
            timed = timed or (renderer, parts, threads)
    if timed is not None:
        torch.set_num_threads(timed[2])
        stage_times(timed[0], timed[1])


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int_list, default=[64, 256], help="e.g. 64,256")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int_list, default=[1, 2], help="e.g. 1,2")
    parser.add_argument(
        "--workers", type=int_list, default=[usable_cores()], help="e.g. 2 (default: cores)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--devices", default="cpu,cuda", help="cpu, cuda or both (cuda only where present)"
    )
    args = parser.parse_args(argv)
    devices = set(args.devices.split(","))
    scenes = random_scenes(args.images, args.seed)
    print(f"{args.size}x{args.size}, anti-aliasing on, {usable_cores()} usable CPU cores")
    if "cpu" in devices:
        bench_cpu(scenes, args)
    if "cuda" in devices and torch.cuda.is_available():
        for batch_size in args.batch_size:
            bench_cuda(scenes, batch_size, args.size)
        renderer, parts = bench_process(
            torch.device("cuda"), scenes, args.batch_size[-1], args.size, args.threads[0]
        )
        stage_times(renderer, parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
