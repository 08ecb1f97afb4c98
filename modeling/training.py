"""Training a model under study, with exact resume and a model card at the end.

One loop for every architecture: data order, augmentation, label noise, checkpoints,
metrics, resume and progress are shared; the loss of a batch and the figures besides the
accuracy come from the architecture (``modeling/architectures.py``: the flow's
``nll_weight * bits/dim + bce_weight * BCE(logit, label)``, the ResNet's BCE). The
learning rate warms up linearly, then follows a cosine to zero over the planned epochs.
After each epoch the weights (BatchNorm statistics included), optimizer and RNG states
are checkpointed atomically, so a killed run continues with ``resume=True`` exactly as if
it had not stopped.

Started by ``torchrun``, the same loop trains on several processes
(``modeling/distributed.py``): the batch size stays the batch of one step over all of
them, each process takes every ``world_size``-th image of it, and DDP averages the
gradients. The data order and the augmentations are drawn for the whole batch by every
process alike; each process draws its own dequantization noise.
"""

from __future__ import annotations

import io
import math
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from generator.dataset import PAIRS_SPLIT, DatasetFolder, ImageDataset
from modeling import checkpoint as ckpt
from modeling.architectures import Architecture, StudiedModel, architecture_of
from modeling.card import CardDataset, ModelCard
from modeling.ceiling import ceiling_accuracy
from modeling.configs import CONFIGS, MODEL_CLASSES, ModelConfig
from modeling.distributed import (
    Processes,
    all_true,
    broadcast_buffers,
    broadcast_state,
    check_replicas_agree,
    from_main,
    gather,
    launched_processes,
    process_group,
    sum_over_processes,
    wrap,
)
from xaistudy.errors import UserError
from xaistudy.files import atomic_write_json, atomic_write_text

DEFAULT_CONFIG = "cpu-small"
# Process r of several draws its dequantization noise from seed + 1 + NOISE_SEED_STRIDE * r
# (process 0, like a single process, from seed + 1).
NOISE_SEED_STRIDE = 104_729


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainOptions:
    """What ``xaistudy train`` asks for. ``None`` means: the saved value on resume, else
    the config's default."""

    data: Path
    out: Path
    device: torch.device
    config: ModelConfig | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    resume: bool = False
    max_minutes: float | None = None
    progress: bool = True


@dataclass
class RunPlan:
    """The settings a run was started with (``config.json``)."""

    config: ModelConfig
    seed: int
    epochs: int
    batch_size: int  # of one step, over all processes
    fingerprint: str
    world_size: int = 1  # the number of processes that train it

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.config.to_dict(),
            "seed": self.seed,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "dataset_fingerprint": self.fingerprint,
            "world_size": self.world_size,
        }


# -- data ------------------------------------------------------------------------------


def load_split_tensors(folder: DatasetFolder, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split in memory: images (N, 3, H, W) uint8 and labels (N,) int64."""
    data = ImageDataset(folder, split)
    images = torch.from_numpy(np.array(data.images)).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(data.labels.copy())


def load_training_pairs(
    folder: DatasetFolder, config: ModelConfig, n_train: int
) -> torch.Tensor | None:
    """The partner images of the training scenes, row for row, where the config trains on
    pairs (``invariance_weight > 0``); ``None`` otherwise."""
    if not config.invariance_weight:
        return None
    if not folder.has_split(PAIRS_SPLIT):
        raise UserError(
            f"config {config.name!r} trains on pairs of scenes (invariance_weight "
            f"{config.invariance_weight}) but dataset {folder.root} has no {PAIRS_SPLIT!r} "
            "split: generate it with --train-pairs FACTORS (docs/dataset.md)"
        )
    split = folder.split(PAIRS_SPLIT)
    train_ids = folder.split("train").params["id"].astype(str).tolist()
    if split.params["original_id"].astype(str).tolist() != train_ids:
        raise UserError(
            f"dataset {folder.root}: split {PAIRS_SPLIT!r} does not pair the training scenes "
            "row for row; generate the dataset again"
        )
    images, _ = load_split_tensors(folder, PAIRS_SPLIT)
    assert len(images) == n_train
    return images


PAIR_FIGURES = {"pair_gap": "gap", "pair_share": "share"}


def pair_figures(logit: torch.Tensor, scenes: int) -> dict[str, torch.Tensor]:
    """``logit`` of a step's ``scenes`` followed by the partners of the first of them:
    ``pair_gap``, the mean squared difference between a scene's logit and its partner's,
    and ``pair_share``, that gap over twice the variance of the scenes' logits.

    For partners drawn independently of the class, the share is the part of the logit's
    variance that the redrawn factors explain (as the ground truth's variance share), and
    it does not shrink when every logit does: a penalty on the raw gap would be met most
    cheaply by a model that decides nothing.
    """
    logit = logit.float()
    second = logit[scenes:]
    gap = (logit[: len(second)] - second).pow(2).mean()
    return {"pair_gap": gap, "pair_share": gap / (2 * logit[:scenes].var() + 1e-6)}


def to_unit_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1] on ``device``, as ImageDataset yields."""
    return images.to(device, non_blocking=True).float().div_(255.0)


def noisy_labels(labels: torch.Tensor, probability: float, seed: int) -> torch.Tensor:
    """``labels`` with each flipped with ``probability``; fixed for a given seed."""
    if probability <= 0:
        return labels.clone()
    generator = torch.Generator().manual_seed(seed + 7919)
    flip = torch.rand(labels.shape, generator=generator) < probability
    return torch.where(flip, 1 - labels, labels)


def random_rot90(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, S, S) with each image rotated by a random multiple of 90 degrees."""
    return rotate90(x, torch.randint(0, 4, (x.shape[0],), generator=generator))


def rotate90(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, S, S) with image i rotated by ``turns[i]`` times 90 degrees."""
    out = x.clone()
    for k in range(1, 4):
        chosen = (turns == k).to(x.device)
        out[chosen] = x[chosen].rot90(k, dims=(-2, -1))
    return out


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) with each image moved by up to ``max_shift`` px in x and y.

    Edge pixels are replicated into the uncovered border (the background continues).
    """
    offsets = torch.randint(0, 2 * max_shift + 1, (x.shape[0], 2), generator=generator)
    return shift(x, max_shift, offsets)


def shift(x: torch.Tensor, max_shift: int, offsets: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) with image i cut from the border-padded image at ``offsets[i]``
    (dy, dx), each in ``0..2 * max_shift``."""
    _, _, height, width = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = offsets.tolist()
    return torch.stack(
        [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)]
    )


def augment(
    x: torch.Tensor, config: ModelConfig, generator: torch.Generator, drawn: int, rows: slice
) -> torch.Tensor:
    """``x`` with the config's random mirroring, turns and shifts.

    The random numbers are drawn for all ``drawn`` images of the step (over every
    process) and this process applies those of its ``rows`` of the step's batch: every
    process draws alike, so their generators stay equal, and the images of a step are
    augmented as one process would augment them.
    """
    if config.augment_flip:
        flip = (torch.rand(drawn, generator=generator) < 0.5)[rows].to(x.device)
        x[flip] = x[flip].flip(-1)
    if config.augment_rot90:
        x = rotate90(x, torch.randint(0, 4, (drawn,), generator=generator)[rows])
    if config.augment_shift:
        bound = 2 * config.augment_shift + 1
        offsets = torch.randint(0, bound, (drawn, 2), generator=generator)[rows]
        x = shift(x, config.augment_shift, offsets)
    return x


def process_share(order: torch.Tensor, processes: Processes) -> torch.Tensor:
    """This process's part of an epoch's ``order``: every ``world_size``-th index from its
    rank on, the order padded with its first indices to a multiple of ``world_size`` (as
    torch's ``DistributedSampler`` does), so that every process takes as many steps.

    With batches of ``batch_size / world_size`` from this share, the images of step k
    over all processes are those of batch k of the (padded) order: process r has the
    images at positions r, r + world_size, ... of it. One process gets the whole order.
    """
    pad = -len(order) % processes.world_size
    if pad:
        order = torch.cat([order, order[:pad]])
    return order[processes.rank :: processes.world_size]


# -- evaluation --------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: StudiedModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
) -> dict[str, float]:
    """Accuracy of ``model`` on uint8 ``images`` (N, 3, H, W), in eval mode (BatchNorm
    with its running statistics), and the mean of each of its architecture's figures
    (the flow's bits/dim)."""
    architecture = architecture_of(model.config)
    was_training = model.training
    model.eval()
    correct, sums = 0, dict.fromkeys(architecture.figures, 0.0)
    for start in range(0, len(images), batch_size):
        x = to_unit_float(images[start : start + batch_size], device)
        y = labels[start : start + batch_size].to(device)
        logit, figures = architecture.measure(model, x)
        correct += int(((logit > 0).long() == y).sum())
        for name, values in figures.items():
            sums[name] += float(values.sum())
    model.train(was_training)
    n = max(len(images), 1)
    return {"accuracy": correct / n, **{name: total / n for name, total in sums.items()}}


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` trains faster in bfloat16 than in float32.

    Every CUDA GPU this code runs on does; a CPU does when it has AMX, whose tile units
    run oneDNN's bfloat16 convolutions 1.2 to 1.4 times faster. With AVX512-BF16 alone
    float32 was faster (images per CPU-second, one thread: cpu-small 219 against 179,
    resnet-cpu 131 against 93), and without either bfloat16 is emulated.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without these probes: stay in float32
        return False


def mixed_precision_dtype(config: ModelConfig, device: torch.device) -> torch.dtype | None:
    """bfloat16 while training (the flow's coupling networks, the ResNet's forward pass)
    when the config allows it and ``device`` has it."""
    return torch.bfloat16 if config.mixed_precision and native_bfloat16(device) else None


def build_training(
    config: ModelConfig, seed: int, device: torch.device
) -> tuple[StudiedModel, torch.optim.Adam]:
    """A fresh model on ``device`` set up for training, and its optimizer.

    For both architectures convolutions run channels-last (the flow: 5 % faster in
    float32 on the CPU, 25 % with bfloat16), in bfloat16 where the device has it (the
    flow's coupling networks, the ResNet's whole forward pass: 530 instead of 320
    images/s for resnet-cpu on two cores), and Adam is the fused one (one
    kernel for all parameters: 20 % faster steps on two CPU cores). The parameter groups
    come from the architecture: the flow's classifier learns ``classifier_lr_scale``
    times faster than the flow, the ResNet has one learning rate.
    """
    architecture = architecture_of(config)
    model = architecture.build(config, seed).to(device, memory_format=torch.channels_last)
    model.set_mixed_precision(mixed_precision_dtype(config, device))
    optimizer = torch.optim.Adam(
        architecture.parameter_groups(model, config),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=True,
    )
    return model, optimizer


def learning_rate(config: ModelConfig, step: int, total_steps: int) -> float:
    """Linear warm-up, then a cosine from ``learning_rate`` to 0 at ``total_steps``."""
    warmup = min(config.warmup_steps, max(total_steps // 4, 1))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


# -- run folder --------------------------------------------------------------------------


def _plan_run(
    options: TrainOptions, folder: DatasetFolder, world_size: int = 1
) -> tuple[RunPlan, dict | None]:
    """Check the run folder against the options and the number of processes; return the
    plan and a checkpoint to resume."""
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"run folder {out} exists and is not a folder")
    fingerprint = folder.fingerprint()
    has_checkpoint = (out / ckpt.CHECKPOINT_FILE).exists()
    saved = ckpt.read_json(out / ckpt.CONFIG_FILE) if (out / ckpt.CONFIG_FILE).exists() else None

    if not options.resume:
        if out.exists() and any(out.iterdir()):
            raise UserError(
                f"run folder {out} is not empty; pass --resume to continue the run in it, "
                "or choose a new folder"
            )
        config = options.config or CONFIGS[DEFAULT_CONFIG]
        plan = RunPlan(
            config=config,
            seed=0 if options.seed is None else options.seed,
            epochs=options.epochs or config.epochs,
            batch_size=options.batch_size or config.batch_size_on(options.device),
            fingerprint=fingerprint,
            world_size=world_size,
        )
        _check_batch_split(plan.batch_size, world_size)
        return plan, None

    if saved is None:
        raise UserError(
            f"nothing to resume in {out}: it has no {ckpt.CONFIG_FILE}; start a new run "
            "without --resume"
        )
    saved_config = ModelConfig.from_dict(saved["model"], source=str(out / ckpt.CONFIG_FILE))
    if options.config is not None and options.config != saved_config:
        raise UserError(
            f"run folder {out} belongs to config {saved_config.name!r}, not "
            f"{options.config.name!r}; resume it with --config {saved_config.name} or "
            "start a new run folder"
        )
    if saved["dataset_fingerprint"] != fingerprint:
        raise UserError(
            f"run folder {out} was trained on another dataset (fingerprint "
            f"{saved['dataset_fingerprint']}, this one is {fingerprint}); resume it with "
            "the same --data or start a new run folder"
        )
    for key, given in (("seed", options.seed), ("batch_size", options.batch_size)):
        if given is not None and given != saved[key]:
            raise UserError(
                f"run folder {out} was started with {key.replace('_', '-')} {saved[key]}; "
                f"resuming needs the same value, not {given}"
            )
    _check_same_world_size(out, saved.get("world_size", 1), world_size)
    plan = RunPlan(
        config=saved_config,
        seed=saved["seed"],
        epochs=options.epochs or saved["epochs"],
        batch_size=saved["batch_size"],
        fingerprint=fingerprint,
        world_size=world_size,
    )
    state = ckpt.load_checkpoint(out, "cpu") if has_checkpoint else None
    return plan, state


def _check_batch_split(batch_size: int, world_size: int) -> None:
    """The batch of a step is split evenly over the processes, or not at all."""
    if batch_size % world_size:
        fitting = -(-batch_size // world_size) * world_size
        raise UserError(
            f"batch size {batch_size} cannot be split over {world_size} processes: the batch "
            f"size is that of one step over all processes, each takes batch size / "
            f"{world_size} images of it; pass a multiple of {world_size}, e.g. "
            f"--batch-size {fitting}"
        )


def _check_same_world_size(out: Path, trained_on: int, world_size: int) -> None:
    """A run resumes exactly only on as many processes as it was trained on (each
    process's noise stream and BatchNorm statistics are its own)."""
    if trained_on == world_size:
        return
    if trained_on == 1:
        how = "resume it in one process: xaistudy train --resume (without torchrun)"
    else:
        how = (
            f"resume it on as many: torchrun --nproc-per-node {trained_on} ... "
            f"xaistudy train --resume ... (or --nnodes M --nproc-per-node K with "
            f"M x K = {trained_on})"
        )
    trained = "in one process" if trained_on == 1 else f"on {trained_on} processes"
    now = "one process" if world_size == 1 else f"{world_size} processes"
    raise UserError(f"run folder {out} was trained {trained}, not {now}; {how}")


def _check_same_dataset(processes: Processes, folder: DatasetFolder) -> None:
    """Every process (on every machine) reads the same dataset."""
    if not processes.distributed:
        return
    fingerprints = gather(processes, folder.fingerprint())
    if len(set(fingerprints)) > 1:
        raise UserError(
            f"the dataset {folder.root} differs between the processes (fingerprints by "
            f"rank: {', '.join(fingerprints)}); copy the same dataset folder to every machine"
        )


def _write_metrics(out: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    pd.DataFrame(rows).to_csv(buffer, index=False)
    atomic_write_text(out / ckpt.METRICS_FILE, buffer.getvalue())


# -- training ----------------------------------------------------------------------------


def train(options: TrainOptions) -> ModelCard:
    """Train (or resume) a run; return the model card written to ``RUN_DIR``.

    Started by ``torchrun``, every process calls this; they train together, process 0
    writes the run folder, and every one returns the card.
    """
    processes = launched_processes()
    with process_group(processes, options.device) as device:
        return _train(options, processes, device)


def initialize_replicas(
    architecture: Architecture, model: nn.Module, x: torch.Tensor, processes: Processes
) -> None:
    """The data-dependent initialization (the flow's ActNorm), done once by process 0 on
    its share ``x`` of the first batch and copied to every process.

    Replicas that initialized themselves each on their own images would start from
    different weights, which averaged gradients never bring together again.
    """
    if processes.is_main:
        architecture.initialize(model, x)
    broadcast_state(processes, model)


def _train(options: TrainOptions, processes: Processes, device: torch.device) -> ModelCard:
    folder = DatasetFolder(options.data)
    for split in ("train", "test"):
        if not folder.has_split(split):
            raise UserError(
                f"dataset {folder.root} has no {split!r} split; it has {', '.join(folder.splits)}"
            )
    _check_same_dataset(processes, folder)
    plan, state = from_main(processes, lambda: _plan_run(options, folder, processes.world_size))
    config = plan.config
    if folder.size != config.input_size:
        raise UserError(
            f"dataset {folder.root} has {folder.size} px images but config {config.name!r} "
            f"takes {config.input_size} px; generate with --size {config.input_size} or pick "
            "a config for that size"
        )

    out = Path(options.out)
    if processes.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / ckpt.CARD_FILE).unlink(missing_ok=True)  # the run is not complete until the end
        atomic_write_json(out / ckpt.CONFIG_FILE, plan.to_dict())

    architecture = architecture_of(config)
    model, optimizer = build_training(config, plan.seed, device)
    order_generator = torch.Generator().manual_seed(plan.seed)
    noise_seed = plan.seed + 1 + NOISE_SEED_STRIDE * processes.rank
    noise_generator = torch.Generator(device=device).manual_seed(noise_seed)
    epoch, step, rows, elapsed = 0, 0, [], 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        order_generator.set_state(state["order_generator"])
        noise_generator.set_state(
            state["noise_generators"][processes.rank]
            if processes.distributed
            else state["noise_generator"]
        )
        epoch, step, rows = state["epoch"], state["step"], state["metrics"]
        elapsed = state["training_seconds"]

    images, labels = load_split_tensors(folder, "train")
    pairs = load_training_pairs(folder, config, len(images))
    train_labels = noisy_labels(labels, config.label_noise, plan.seed)
    # the figures per image besides loss and accuracy: the architecture's, and with pairs
    # those of pair_figures
    figures = {**architecture.figures, **(PAIR_FIGURES if pairs is not None else {})}
    has_val = processes.is_main and folder.has_split("val")  # process 0 evaluates
    val = load_split_tensors(folder, "val") if has_val else None
    share = plan.batch_size // processes.world_size  # images per process and step
    rows_of_process = slice(processes.rank, None, processes.world_size)
    steps_per_epoch = math.ceil(math.ceil(len(images) / processes.world_size) / share)
    total_steps = plan.epochs * steps_per_epoch
    started = time.monotonic()
    model.train()
    replica = wrap(model, processes, device)

    while epoch < plan.epochs:
        epoch_start = time.monotonic()
        order = torch.randperm(len(images), generator=order_generator)
        mine = process_share(order, processes)
        sums = {"loss": 0.0, "correct": 0, "n": 0, **dict.fromkeys(figures, 0.0)}
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{plan.epochs}",
            file=sys.stderr,
            disable=not (options.progress and processes.is_main),
            dynamic_ncols=True,
        )
        for start in range(0, len(mine), share):
            index = mine[start : start + share]
            x = to_unit_float(images[index], device)
            x = augment(
                x, config, order_generator, len(index) * processes.world_size, rows_of_process
            )
            y = train_labels[index].to(device)
            if pairs is not None:  # partners of the first scenes, with draws of their own
                paired = index[: max(1, round(config.pair_fraction * len(index)))]
                partners = augment(  # drawn for the whole step, as for the scenes
                    to_unit_float(pairs[index], device),
                    config,
                    order_generator,
                    len(index) * processes.world_size,
                    rows_of_process,
                )[: len(paired)]
                x, y = torch.cat([x, partners]), torch.cat([y, y[: len(paired)]])
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, total_steps) * group["lr_scale"]
            if step == 0 and processes.distributed:
                initialize_replicas(architecture, model, x, processes)
            batch = architecture.batch_loss(replica, x, y, noise_generator)
            loss = batch.loss
            if pairs is not None:
                batch.figures.update(pair_figures(batch.logit, len(index)))
                loss = loss + config.invariance_weight * batch.figures["pair_share"]
            if not all_true(processes, bool(torch.isfinite(loss)), device):
                bar.close()
                kept = (
                    f"the checkpoint after epoch {epoch} is kept in {out}"
                    if epoch
                    else "no checkpoint had been written yet"
                )
                value = (
                    loss.item()
                    if not torch.isfinite(loss)
                    else "NaN or infinite in another process"
                )
                raise TrainingDiverged(
                    f"training diverged: the loss became {value} in epoch {epoch + 1} "
                    f"(step {step + 1}); {kept}. Lower {architecture.divergence_hint} in a "
                    "config file and train again"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            n = len(y)
            sums["loss"] += loss.item() * n
            for name, value in batch.figures.items():
                sums[name] += value.item() * n
            sums["correct"] += int(((batch.logit > 0).long() == y).sum())
            sums["n"] += n
            bar.update(1)
            bar.set_postfix(
                loss=f"{sums['loss'] / sums['n']:.3f}",
                **{short: f"{sums[name] / sums['n']:.3f}" for name, short in figures.items()},
                acc=f"{sums['correct'] / sums['n']:.3f}",
            )
        bar.close()
        epoch += 1
        sums = sum_over_processes(processes, sums)
        broadcast_buffers(processes, model)
        check_replicas_agree(processes, model, epoch)
        noise_states = gather(processes, noise_generator.get_state())
        if processes.is_main:
            row = {
                "epoch": epoch,
                "train_loss": sums["loss"] / sums["n"],
                **{f"train_{name}": sums[name] / sums["n"] for name in figures},
                "train_accuracy": sums["correct"] / sums["n"],
            }
            if val is not None:
                metrics = evaluate(model, *val, device, batch_size=2 * plan.batch_size)
                row.update({f"val_{name}": value for name, value in metrics.items()})
            elapsed += time.monotonic() - epoch_start
            row["learning_rate"] = optimizer.param_groups[0]["lr"]
            row["seconds"] = elapsed
            rows.append(row)
            checkpoint = {
                "epoch": epoch,
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "order_generator": order_generator.get_state(),
                "noise_generator": noise_states[0],
                "metrics": rows,
                "training_seconds": elapsed,
                "world_size": processes.world_size,
            }
            if processes.distributed:  # every process's noise stream, in rank order
                checkpoint["noise_generators"] = noise_states
            ckpt.atomic_torch_save(checkpoint, out / ckpt.CHECKPOINT_FILE)
            _write_metrics(out, rows)
        out_of_time = (
            options.max_minutes is not None
            and time.monotonic() - started >= 60 * options.max_minutes
        )
        if from_main(processes, lambda out_of_time=out_of_time: out_of_time):
            break

    def finish() -> ModelCard:
        card = model_card(model, folder, plan, epoch, elapsed, rows, device)
        atomic_write_json(out / ckpt.CARD_FILE, card.to_json())
        return card

    return from_main(processes, finish)


def model_card(
    model: StudiedModel,
    folder: DatasetFolder,
    plan: RunPlan,
    epochs_done: int,
    training_seconds: float,
    rows: list[dict[str, Any]],
    device: torch.device,
) -> ModelCard:
    """Accuracy (and the flow's bits/dim) on every split but the training scenes and their
    pairs, the ceiling, and the settings."""
    accuracy, bits_per_dim = {}, {}
    for split in folder.splits:
        if split in ("train", PAIRS_SPLIT):
            continue
        metrics = evaluate(model, *load_split_tensors(folder, split), device, 2 * plan.batch_size)
        accuracy[split] = metrics["accuracy"]
        if "bits_per_dim" in metrics:  # the ResNet has no likelihood: no entry
            bits_per_dim[split] = metrics["bits_per_dim"]
    ceiling = ceiling_accuracy(folder, seed=plan.seed)
    config = plan.config
    return ModelCard(
        model=MODEL_CLASSES[config.architecture],
        architecture=config.architecture,
        config_name=config.name,
        config=config,
        input_size=config.input_size,
        num_stages=model.num_stages,
        classifier_layer=model.classifier_stage,
        head_shape=tuple(model.head_shape),
        default_concept_layer=model.default_concept_layer(),
        accuracy=accuracy,
        bits_per_dim=bits_per_dim,
        train_accuracy=rows[-1]["train_accuracy"] if rows else None,
        ceiling_accuracy=ceiling["ceiling"],
        ceiling=ceiling,
        gap_to_ceiling=ceiling["ceiling"] - accuracy["test"],
        label_noise=config.label_noise,
        dataset=CardDataset(
            path=str(folder.root),
            fingerprint=plan.fingerprint,
            preset=folder.meta.get("preset"),
            size=folder.size,
        ),
        epochs=epochs_done,
        planned_epochs=plan.epochs,
        batch_size=plan.batch_size,
        seed=plan.seed,
        training_seconds=round(training_seconds, 2),
        device=device.type,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
