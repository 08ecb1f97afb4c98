"""Training speed of the models under study: images per second and peak memory.

Runs full training steps (forward, the architecture's loss, backward, Adam) on random
images, exactly as training sets them up (``modeling.training.build_training``) and
computes the loss (``modeling.architectures``): by default ``cpu-small`` and
``cpu-study`` on the CPU, and ``paper`` on CUDA when a GPU is present; ``--config``
names others (``resnet-cpu``, ``resnet-gpu`` on ``--device cuda``). Besides wall-clock
images/s it prints images per CPU-second, which stays meaningful on a machine whose
cores are shared; on a quiet machine wall-clock images/s is about that figure times the
number of threads.

    .venv/bin/python bench/train.py [--config resnet-cpu ...] [--device cpu|cuda]
                                    [--steps 10] [--threads N] [--batch-size B] [--float32]

Where training runs in bfloat16 (a CUDA GPU, or a CPU with AVX512-BF16 or AMX: the flow's
coupling networks, the ResNet's forward pass), so does the benchmark; ``--float32``
measures without.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time

import torch

from modeling.architectures import architecture_of
from modeling.configs import CONFIGS
from modeling.training import build_training, mixed_precision_dtype

# The training set each CPU config is meant for (docs/model.md, "Configurations").
TRAINING_SCENES = {"cpu-small": 40_000, "cpu-study": 160_000, "resnet-cpu": 40_000}


def bench(
    config_name: str, device: torch.device, batch_size: int, steps: int, mixed: bool = True
) -> dict:
    config = dataclasses.replace(CONFIGS[config_name], mixed_precision=mixed)
    architecture = architecture_of(config)
    model, optimizer = build_training(config, 0, device)  # the training set-up, exactly
    model.train()
    precision = mixed_precision_dtype(config, device)  # as build_training set it
    generator = torch.Generator(device=device).manual_seed(0)
    size = config.input_size
    x = torch.rand(batch_size, 3, size, size, generator=generator, device=device)
    labels = (torch.rand(batch_size, generator=generator, device=device) > 0.5).long()

    def step() -> None:
        loss = architecture.batch_loss(model, x, labels, generator).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # ActNorm initialization and allocator warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images = steps * batch_size
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
        "images_per_s": images / wall,
        "images_per_cpu_s": images / cpu if cpu > 0 else float("nan"),
        "peak_mib": peak_mib,
    }


def default_batch_size(name: str, device: torch.device) -> int:
    config = CONFIGS[name]
    return config.cuda_batch_size if device.type == "cuda" else config.batch_size


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
        batch_size = args.batch_size or default_batch_size(name, device)
        r = bench(name, device, batch_size, args.steps, mixed=not args.float32)
        threads = f", {args.threads} threads" if device.type == "cpu" else ""
        print(
            f"{r['config']} on {r['device']}{threads}, {r['precision']}: batch {r['batch_size']}, "
            f"{r['parameters'] / 1e6:.2f} M parameters, {r['images_per_s']:.1f} images/s "
            f"({r['images_per_cpu_s']:.1f} images per CPU-second), "
            f"peak memory {r['peak_mib']:.0f} MiB"
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
