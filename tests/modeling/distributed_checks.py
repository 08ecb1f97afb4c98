"""Run by ``tests/modeling/test_distributed.py`` under ``torchrun`` (two processes, gloo).

    torchrun --standalone --nproc-per-node 2 distributed_checks.py TINY_TOML RESNET_TOML DATA OUT

Each process gives the flow's data-dependent initialization its own images (process r's
are all r / 4 + 0.25), replicates it as training does, and saves what its replica holds
then; one process then changes a weight to see the replica check catch it. Last, the
processes train together through the ``xaistudy train`` command itself: the flow for two
epochs into ``OUT/straight``, the same stopped after its first epoch into
``OUT/stopped``, and a ResNet (BatchNorm) into ``OUT/resnet``. ``OUT/rank<r>.pt`` is what
process r saw.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from modeling.architectures import architecture_of
from modeling.configs import load_config
from modeling.distributed import check_replicas_agree, launched_processes, state_digest
from modeling.training import build_training, initialize_replicas
from xaistudy.cli import cli

CPU = torch.device("cpu")


def own_images(rank: int, size: int) -> torch.Tensor:
    """Process ``rank``'s images: a gradient plus a brightness of its own."""
    ramp = torch.linspace(0, 0.5, size)
    return (rank / 4 + 0.25 + 0.1 * ramp).expand(8, 3, size, size).clone()


def main(toml: str, resnet_toml: str, data: str, out: str) -> None:
    processes = launched_processes()
    dist.init_process_group("gloo")
    config = load_config(toml)
    model, _ = build_training(config, 0, CPU)
    model.train()
    x = own_images(processes.rank, config.input_size)
    initialize_replicas(architecture_of(config), model, x, processes)
    seen = {"state": {k: v.clone() for k, v in model.state_dict().items()}}
    seen["digest"] = state_digest(model)

    if processes.rank == 1:  # one replica drifts
        with torch.no_grad():
            model.classifier_b.add_(1e-6)
    try:
        check_replicas_agree(processes, model, epoch=3)
        seen["check"] = "passed"
    except RuntimeError as exc:
        seen["check"] = str(exc)

    # the flow uninterrupted, the flow stopped after its first epoch, a ResNet (BatchNorm)
    for run, config_file, *more in (
        ("straight", toml),
        ("stopped", toml, "--max-minutes", "1e-9"),
        ("resnet", resnet_toml),
    ):
        cli(
            ["train", "--data", data, "--out", f"{out}/{run}", "--config", config_file]
            + ["--epochs", "2", "--quiet", *more],
            standalone_mode=False,
        )
    torch.save(seen, Path(out) / f"rank{processes.rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
