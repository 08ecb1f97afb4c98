"""Tiny dataset folders, configs and models for the modeling tests (16 px, few images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from generator.attributes import ATTRIBUTES, CONTINUOUS, RANGES
from generator.dataset import DatasetWriter
from modeling.architectures import build_model
from modeling.configs import ModelConfig

TINY_TOML = """
name = "tiny"
input_size = 16
blocks_per_stage = [1, 1, 2]
coupling_widths = [8, 8, 16]
nll_weight = 0.05
bce_weight = 1.0
epochs = 2
batch_size = 16
learning_rate = 0.003
warmup_steps = 4
"""

TINY_RESNET_TOML = """
name = "tiny-resnet"
architecture = "resnet"
input_size = 16
resnet_width = 8
epochs = 8  # BatchNorm's running statistics need a few dozen steps to settle (after 6,
# one bfloat16 run had reached 0.56 test accuracy, its float32 twin 0.91)
batch_size = 16
learning_rate = 0.003
warmup_steps = 4
"""


def run_cli(*args):
    """``xaistudy train ARGS`` through click's runner."""
    from click.testing import CliRunner

    from xaistudy.cli import cli

    return CliRunner().invoke(cli, ["train", *map(str, args)])


def tiny_resnet_config(**changes) -> ModelConfig:
    values = {
        "name": "tiny-resnet",
        "architecture": "resnet",
        "input_size": 16,
        "resnet_width": 8,
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "warmup_steps": 4,
    }
    values.update(changes)
    return ModelConfig(**values)


def tiny_config(**changes) -> ModelConfig:
    values = {
        "name": "tiny",
        "input_size": 16,
        "blocks_per_stage": (1, 1, 2),
        "coupling_widths": (8, 8, 16),
        "nll_weight": 0.05,
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "warmup_steps": 4,
    }
    values.update(changes)
    return ModelConfig(**values)


def scene_params(labels: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Scene attributes with arm_position separating the classes (as in Two4Two)."""
    n = len(labels)
    frame = {"id": [f"s{i:05d}" for i in range(n)], "label": labels}
    for name in CONTINUOUS:
        low, high = RANGES[name]
        frame[name] = rng.uniform(low, high, n)
    frame["arm_position"] = np.where(labels == 1, rng.uniform(0.6, 1, n), rng.uniform(0, 0.4, n))
    frame["obj_name"] = np.where(labels == 1, "stretchy", "peaky")
    frame["fliplr"] = rng.random(n) < 0.5
    return pd.DataFrame(frame)[["id", "label", *ATTRIBUTES]]


def pattern_images(params: pd.DataFrame, size: int, rng: np.random.Generator) -> np.ndarray:
    """N x size x size x 3 uint8: a bar whose length is the arm position, on a noisy background."""
    n = len(params)
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    images[..., 2] = (params["bg_color"].to_numpy()[:, None, None] * 120).astype(np.uint8)
    for i, arm in enumerate(params["arm_position"].to_numpy()):
        length = 2 + int(arm * (size - 4))
        images[i, size // 2 - 2 : size // 2 + 2, 2 : 2 + length, 0] = 230
    return images


def write_dataset(root: Path, size: int = 16, counts=None, seed: int = 0) -> Path:
    """A complete dataset folder with train, val, test and one intervention split."""
    counts = counts or {"train": 96, "val": 16, "test": 32, "test_intervene_bg_color": 16}
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root)
    for split, n in counts.items():
        labels = np.arange(n) % 2
        params = scene_params(labels, rng)
        if split.startswith("test_intervene"):
            params["original_id"] = params["id"]
            params["intervened"] = "bg_color"
        images = pattern_images(params, size, rng)
        writer.write_split(split, params, images, np.zeros(images.shape[:3], np.uint8))
    return writer.finish({"size": size, "preset": "pattern-test", "seed": seed})


def write_paired_dataset(
    root: Path, size: int = 16, n: int = 128, seed: int = 0, redraw: bool = True
) -> Path:
    """A dataset whose background (the blue channel) gives the class away in training, and
    a ``train_pairs`` split: the same images with the background redrawn, row for row
    (``redraw=False``: the same images unchanged).

    The arm bar separates the classes too, so a model that learns to ignore the background
    loses nothing.
    """
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root)
    for split, count in {"train": n, "val": 16, "test": 32}.items():
        params = scene_params(np.arange(count) % 2, rng)
        params["bg_color"] = np.where(params["label"] == 1, 0.9, 0.1)
        images = pattern_images(params, size, rng)
        writer.write_split(split, params, images, np.zeros(images.shape[:3], np.uint8))
        if split == "train":
            pairs = params.assign(original_id=params["id"], intervened="bg_color")
            pairs["id"] = pairs["id"] + ":pair"
            if redraw:
                pairs["bg_color"] = rng.uniform(0, 1, count)
            partners = with_background(images, pairs["bg_color"].to_numpy())
            masks = np.zeros(images.shape[:3], np.uint8)
            writer.write_split("train_pairs", pairs, partners, masks)
    return writer.finish({"size": size, "preset": "pattern-test", "seed": seed})


def with_background(images: np.ndarray, bg_color: np.ndarray) -> np.ndarray:
    """``images`` of :func:`pattern_images` with their background set to ``bg_color``."""
    out = images.copy()
    out[..., 2] = (bg_color[:, None, None] * 120).astype(np.uint8)
    return out


def randomized_model(config: ModelConfig, seed: int = 0, dtype=torch.float32):
    """A model (either architecture) whose every parameter is perturbed, so no layer is
    the identity; BatchNorm statistics are moved off zero mean and unit variance too."""
    model = build_model(config, seed).to(dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=dtype)
            parameter.add_(0.05 * noise)
        for module in model.modules():
            if hasattr(module, "initialized"):
                module.initialized.fill_(True)
            if isinstance(module, torch.nn.BatchNorm2d):
                shape = module.running_mean.shape
                module.running_mean.add_(0.1 * torch.randn(shape, generator=generator))
                module.running_var.mul_(1 + 0.5 * torch.rand(shape, generator=generator))
    return model.eval()
