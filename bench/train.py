"""Training speed of the models under study: images per second and peak memory.

Runs the steps of ``xaistudy train`` (``modeling.training.train``) on random 8-bit
images: a batch drawn from a uint8 training set in memory, turned into floats and
augmented as the config says (flips, 90-degree turns, shifts), then forward, the
architecture's loss (``modeling.architectures``), backward, gradient clipping and Adam,
with the model and optimizer set up as training sets them up
(``modeling.training.build_training``). By default ``cpu-small`` and ``cpu-study`` on
the CPU, and ``paper`` on CUDA when a GPU is present; ``--config`` names others
(``resnet-cpu``, ``resnet-gpu`` on ``--device cuda``). Besides wall-clock images/s it
prints images per CPU-second, which stays meaningful on a machine whose cores are
shared (on a quiet machine wall-clock images/s is about that figure times the number of
threads), the share of a step the data path takes, and the load average.
``--processes P`` runs P copies at once (each with ``--threads``) and adds up their
images: what data-parallel training on one machine could reach at best (no gradient
exchange).

    .venv/bin/python bench/train.py [--config resnet-cpu ...] [--device cpu|cuda]
                                    [--steps 10] [--threads N] [--processes P]
                                    [--batch-size B] [--float32]

Where training runs in bfloat16 (a CUDA GPU, or a CPU with AMX: the flow's
coupling networks, the ResNet's forward pass), so does the benchmark; ``--float32``
measures without.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import resource
import time

import torch

from modeling.architectures import architecture_of
from modeling.configs import CONFIGS
from modeling.training import (
    build_training,
    mixed_precision_dtype,
    random_rot90,
    random_shift,
    to_unit_float,
)

# The training set each CPU config is meant for (docs/model.md, "Configurations").
TRAINING_SCENES = {"cpu-small": 40_000, "cpu-study": 160_000, "resnet-cpu": 40_000}


def bench(
    config_name: str,
    device: torch.device,
    batch_size: int,
    steps: int,
    mixed: bool = True,
    threads: int | None = None,
) -> dict:
    if threads is not None:
        torch.set_num_threads(threads)
    config = dataclasses.replace(CONFIGS[config_name], mixed_precision=mixed)
    architecture = architecture_of(config)
    model, optimizer = build_training(config, 0, device)  # the training set-up, exactly
    model.train()
    precision = mixed_precision_dtype(config, device)  # as build_training set it
    generator = torch.Generator().manual_seed(0)
    noise_generator = torch.Generator(device=device).manual_seed(1)
    size = config.input_size
    pool = 4 * batch_size  # a uint8 training set in memory, as training loads it
    images = torch.randint(0, 256, (pool, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 2, (pool,), generator=generator)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        """The data path of modeling.training.train: index, to float, augment."""
        index = torch.randperm(pool, generator=generator)[:batch_size]
        x = to_unit_float(images[index], device)
        if config.augment_flip:
            flip = (torch.rand(len(index), generator=generator) < 0.5).to(device)
            x[flip] = x[flip].flip(-1)
        if config.augment_rot90:
            x = random_rot90(x, generator)
        if config.augment_shift:
            x = random_shift(x, config.augment_shift, generator)
        return x, labels[index].to(device)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = architecture.batch_loss(model, x, y, noise_generator).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        loss.item()  # training reads the loss each step, which waits for the device

    step(*batch())  # ActNorm initialization and allocator warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    data_seconds = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        data_start = time.perf_counter()
        x, y = batch()
        data_seconds += time.perf_counter() - data_start
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images_seen = steps * batch_size
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is KiB on Linux: the whole process, model and data included
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "config": config_name,
        "device": device.type,
        "batch_size": batch_size,
        "precision": "float32" if precision is None else "bfloat16 mixed precision",
        "parameters": sum(p.numel() for p in model.parameters()),
        "images": images_seen,
        "wall_s": wall,
        "cpu_s": cpu,
        "data_share": data_seconds / wall,
        "images_per_s": images_seen / wall,
        "images_per_cpu_s": images_seen / cpu if cpu > 0 else float("nan"),
        "peak_mib": peak_mib,
    }


def bench_processes(processes: int, threads: int, *args) -> dict:
    """``bench`` in ``processes`` processes at once, ``threads`` threads each: their
    images added up over the slowest one's time (each process's CPU time is its own)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as workers:
        results = workers.starmap(bench, [(*args, threads)] * processes)
    total = dict(results[0])
    images = sum(r["images"] for r in results)
    total["images_per_s"] = images / max(r["wall_s"] for r in results)
    total["images_per_cpu_s"] = images / sum(r["cpu_s"] for r in results)
    total["data_share"] = sum(r["data_share"] for r in results) / processes
    total["peak_mib"] = sum(r["peak_mib"] for r in results)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        action="append",
        choices=list(CONFIGS),
        help="a config to measure (repeatable); default: cpu-small and cpu-study on the "
        "CPU, and paper on CUDA when present",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where --config runs"
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run this many copies at once and add up their images (CPU only)",
    )
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument(
        "--float32", action="store_true", help="no bfloat16 even where training uses it"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here")

    if args.config:
        plan = [(name, torch.device(args.device)) for name in args.config]
    else:
        plan = [(name, torch.device("cpu")) for name in ("cpu-small", "cpu-study")]
        if torch.cuda.is_available():
            plan.append(("paper", torch.device("cuda")))
    for name, device in plan:
        batch_size = args.batch_size or CONFIGS[name].batch_size_on(device)
        if args.processes > 1 and device.type == "cpu":
            r = bench_processes(
                args.processes,
                args.threads,
                name,
                device,
                batch_size,
                args.steps,
                not args.float32,
            )
            threads = f", {args.processes} processes of {args.threads} threads"
        else:
            r = bench(name, device, batch_size, args.steps, mixed=not args.float32)
            threads = f", {args.threads} threads" if device.type == "cpu" else ""
        print(
            f"{r['config']} on {r['device']}{threads}, {r['precision']}: batch {r['batch_size']}, "
            f"{r['parameters'] / 1e6:.2f} M parameters, {r['images_per_s']:.1f} images/s "
            f"({r['images_per_cpu_s']:.1f} images per CPU-second), "
            f"data path {100 * r['data_share']:.1f} % of the time, "
            f"peak memory {r['peak_mib']:.0f} MiB; load average {os.getloadavg()[0]:.2f}"
        )
        scenes = TRAINING_SCENES.get(name)
        if device.type == "cpu" and scenes:
            images = scenes * CONFIGS[name].epochs
            print(
                f"  default {name} run ({CONFIGS[name].epochs} epochs of {scenes:,} scenes): "
                f"{images / r['images_per_s']:.0f} s at this rate"
            )


if __name__ == "__main__":
    main()
