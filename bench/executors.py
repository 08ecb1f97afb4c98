"""Generating one dataset locally and with ``--executor ray`` (a local Ray instance).

Prints, per executor, wall-clock seconds, images/s and images per CPU-second (this
process and every process below it: the renderer's forked workers, Ray's workers and
daemons, which is where Ray's overhead shows), and the load average.

    PYTHONPATH=. python bench/executors.py --n-train 2000 --size 64
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from generator.biases import load_spec
from generator.generate import generate_dataset
from generator.sharded import generate_sharded
from xaistudy.executors import RayExecutor

TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants, living and reaped, from /proc."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        times[int(entry.name)] = sum(int(f) for f in fields[11:15]) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def measure(name, work, n):
    cpu, start = tree_cpu_seconds(os.getpid()), time.perf_counter()
    work()
    wall, used = time.perf_counter() - start, tree_cpu_seconds(os.getpid()) - cpu
    print(
        f"{name:<28} {wall:6.1f} s  {n / wall:6.1f} images/s  {n / used:6.1f} per CPU-second"
        f"  load {Path('/proc/loadavg').read_text().split()[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--shards", type=int, default=None)
    args = parser.parse_args()
    spec, n = load_spec("iclr2022"), args.n_train
    options = {"n_train": n, "n_val": 0, "n_test": 0, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        measure(
            "local (one process per core)",
            lambda: generate_dataset(spec, Path(tmp) / "local", progress=False, **options),
            n,
        )
        started = time.perf_counter()
        ray = RayExecutor()
        print(f"Ray instance started in {time.perf_counter() - started:.1f} s")
        try:
            measure(
                "ray (local instance)",
                lambda: generate_sharded(
                    spec, Path(tmp) / "ray", ray, shards=args.shards, **options
                ),
                n,
            )
        finally:
            ray.close()


if __name__ == "__main__":
    main()
