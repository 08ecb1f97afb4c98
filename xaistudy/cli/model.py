"""Commands of the modeling stage: ``train``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from xaistudy.devices import DEVICE_CHOICES
from xaistudy.errors import UserError


def _cpu_threads() -> int:
    """The cores this process may use, or ``OMP_NUM_THREADS`` when the user set it (on a
    machine whose cores are shared, one thread per process avoids threads waiting on
    each other)."""
    requested = os.environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    return len(os.sched_getaffinity(0))


@click.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset folder (made by 'xaistudy generate').",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option(
    "--config",
    "config_spec",
    metavar="cpu-small|cpu-study|paper|resnet-cpu|resnet-gpu|FILE.toml",
    help="Model config. Default: cpu-small, or the run's own config with --resume.",
)
@click.option("--epochs", type=int, help="Epochs to train (default: the config's).")
@click.option(
    "--batch-size",
    type=int,
    help="Batch size of a step, over all processes under torchrun (default: the config's, "
    "larger on CUDA).",
)
@click.option("--device", default="auto", show_default=True, type=click.Choice(DEVICE_CHOICES))
@click.option("--seed", type=int, help="Seed of weights, data order and noise. Default: 0.")
@click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped.")
@click.option(
    "--max-minutes",
    type=float,
    help="Stop after the epoch during which this many minutes have passed.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(data, out, config_spec, epochs, batch_size, device, seed, resume, max_minutes, quiet):
    """Train a model under study (the invertible classifier or, with a resnet config, a
    ResNet) on a dataset folder; write a run folder."""
    import torch

    from modeling.configs import load_config
    from modeling.distributed import launched_processes
    from modeling.training import TrainOptions
    from modeling.training import train as train_run
    from xaistudy.devices import resolve_device

    for name, value in (("--epochs", epochs), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be at least 1, got {value}")
    if max_minutes is not None and max_minutes <= 0:
        raise UserError(f"--max-minutes must be positive, got {max_minutes}")
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        torch.set_num_threads(_cpu_threads())
    card = train_run(
        TrainOptions(
            data=data,
            out=out,
            device=resolved,
            config=load_config(config_spec) if config_spec else None,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            resume=resume,
            max_minutes=max_minutes,
            progress=not quiet,
        )
    )
    if not launched_processes().is_main:  # under torchrun process 0 reports
        return
    accuracy = ", ".join(f"{split} {value:.3f}" for split, value in card.accuracy.items())
    # the flow's likelihood; a ResNet has none
    bits = f"; test bits/dim {card.bits_per_dim['test']:.3f}" if card.bits_per_dim else ""
    click.echo(
        f"wrote {out}: {card.model}, {card.epochs} epochs in {card.training_seconds:.0f} s; "
        f"accuracy {accuracy}; ceiling {card.ceiling_accuracy:.3f}{bits}"
    )


COMMANDS = [train]
