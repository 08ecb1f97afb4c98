"""The attribute probe: a supervised CNN that reads the true scene attributes off an image.

It is independent of the model under study: a small torchvision ResNet
(``ResNet(BasicBlock, [1, 1, 1, 1])``, randomly initialized, nothing downloaded) trained
by regression on the dataset's scene parameters. Validation uses it to say what changes
along a counterfactual row. Targets (``TARGETS``) are the continuous attributes of
``generator.attributes.RANGES``, standardized; yaw is circular, so it is learned as its
sine and cosine (``obj_rotation_yaw_sin``, ``obj_rotation_yaw_cos``) and read back with
``atan2``.

The probe is cached beside the model in ``RUN_DIR/probe/``::

    weights.pt     the state dict
    probe.json     the card: dataset fingerprint, image size, targets and their means and
                   standard deviations, test R^2 per target, training seconds, settings

It is re-used while the dataset's fingerprint matches and retrained otherwise; the
folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet
from tqdm.auto import tqdm

from generator.attributes import RANGES
from generator.dataset import DatasetFolder
from xaistudy.errors import UserError
from xaistudy.files import json_text, staged_folder

PROBE_DIR = "probe"
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "probe.json"
YAW = "obj_rotation_yaw"
TARGETS = tuple(
    name for attr in RANGES for name in ((f"{YAW}_sin", f"{YAW}_cos") if attr == YAW else (attr,))
)
ARCHITECTURE = "torchvision ResNet(BasicBlock, [1, 1, 1, 1]), 3x3 stride-2 stem, regression head"


@dataclass(frozen=True)
class ProbeSettings:
    """How the probe is trained. The defaults train in about 70 s on 2 free CPU cores at
    64 px (docs/bundle.md has the measurements and the R^2 they give)."""

    train_images: int = 8000  # the first ones of the train split
    test_images: int = 1000  # the first ones of the test split, for R^2
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0


@dataclass
class Probe:
    """A trained probe: the network (eval mode, on its device) and its card."""

    network: nn.Module
    card: dict
    device: torch.device

    def read(self, images: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Attribute readings of uint8 N x H x W x 3 images: target -> (N,) in the
        attribute's own units, plus ``obj_rotation_yaw`` from the sine and cosine."""
        return read_attributes(self, images, batch_size)


def build_network(n_outputs: int = len(TARGETS)) -> nn.Module:
    """The probe's CNN. The stem is a 3x3 stride-2 convolution (ImageNet's 7x7 one is
    made for 224 px); with the max-pool a 64 px image reaches the first stage at 16 x 16."""
    network = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=n_outputs)
    network.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    return network


def target_table(params) -> np.ndarray:
    """(N, len(TARGETS)) float64 targets from a scene table (``params.parquet``)."""
    columns = []
    for name in TARGETS:
        if name == f"{YAW}_sin":
            columns.append(np.sin(params[YAW].to_numpy(dtype=np.float64)))
        elif name == f"{YAW}_cos":
            columns.append(np.cos(params[YAW].to_numpy(dtype=np.float64)))
        else:
            columns.append(params[name].to_numpy(dtype=np.float64))
    return np.stack(columns, axis=1)


def _to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W), roughly zero-mean unit-variance."""
    return (images.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.25


def r_squared_per_target(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """1 - SSE/SST per column of (N, T) arrays."""
    residual = np.sum((truth - estimate) ** 2, axis=0)
    total = np.sum((truth - truth.mean(axis=0)) ** 2, axis=0)
    return 1.0 - residual / np.where(total > 0, total, 1.0)


def train_probe(
    dataset: DatasetFolder,
    device: torch.device,
    settings: ProbeSettings = ProbeSettings(),
    progress: bool = True,
) -> Probe:
    """Train a probe on the first ``train_images`` of the train split; R^2 on the test split."""
    if not dataset.has_split("train") or len(dataset.split("train")) == 0:
        raise UserError(
            f"dataset {dataset.root} has no training images to train the attribute probe on"
        )
    start = time.perf_counter()
    train = dataset.split("train")
    n = min(settings.train_images, len(train))
    images = torch.from_numpy(np.array(train.images[:n]))
    targets = target_table(train.params.iloc[:n])
    mean, std = targets.mean(axis=0), targets.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    y = torch.from_numpy((targets - mean) / std).float()

    torch.manual_seed(settings.seed)
    network = build_network().to(device)
    steps_per_epoch = max(1, n // settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.learning_rate, total_steps=total_steps, pct_start=0.2
    )
    order = torch.Generator().manual_seed(settings.seed)
    network.train()
    bar = tqdm(total=total_steps, desc="attribute probe", unit="step", disable=not progress)
    for _ in range(settings.epochs):
        permutation = torch.randperm(n, generator=order)
        for step in range(steps_per_epoch):
            batch = permutation[step * settings.batch_size : (step + 1) * settings.batch_size]
            x = _to_input(images[batch].to(device))
            loss = nn.functional.mse_loss(network(x), y[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    network.eval()
    card = {
        "fingerprint": dataset.fingerprint(),
        "image_size": dataset.size,
        "architecture": ARCHITECTURE,
        "targets": list(TARGETS),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "train_images": n,
        "settings": asdict(settings),
    }
    probe = Probe(network, card, device)
    card["test_r2"] = _test_r2(probe, dataset, settings.test_images)
    card["seconds"] = time.perf_counter() - start
    return probe


def _test_r2(probe: Probe, dataset: DatasetFolder, n: int) -> dict[str, float]:
    test = dataset.split("test")
    n = min(n, len(test))
    if n < 2:
        return {}
    readings = read_attributes(probe, np.asarray(test.images[:n]), raw=True)
    truth = target_table(test.params.iloc[:n])
    estimate = np.stack([readings[t] for t in TARGETS], axis=1)
    return {
        t: float(r) for t, r in zip(TARGETS, r_squared_per_target(truth, estimate), strict=True)
    }


@torch.no_grad()
def read_attributes(
    probe: Probe, images: np.ndarray, batch_size: int = 256, raw: bool = False
) -> dict[str, np.ndarray]:
    """Readings of uint8 N x H x W x 3 images: target -> (N,) float64 in attribute units.

    Unless ``raw``, ``obj_rotation_yaw`` (radians, from the sine and cosine) is added.
    """
    images = np.asarray(images)
    size = probe.card["image_size"]
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
        raise UserError(
            f"the attribute probe reads {size} x {size} x 3 uint8 images, got "
            f"{images.dtype} {images.shape[1:]}"
        )
    out = np.empty((len(images), len(TARGETS)))
    for begin in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[begin : begin + batch_size]))
        out[begin : begin + len(x)] = probe.network(_to_input(x.to(probe.device))).double().cpu()
    out = out * np.asarray(probe.card["std"]) + np.asarray(probe.card["mean"])
    readings = {t: out[:, i] for i, t in enumerate(TARGETS)}
    if not raw:
        readings[YAW] = np.arctan2(readings[f"{YAW}_sin"], readings[f"{YAW}_cos"])
    return readings


def save_probe(probe: Probe, folder: Path) -> Path:
    """Write the probe to ``folder`` atomically (a temporary folder, then a rename)."""
    with staged_folder(folder) as tmp:
        weights = {k: v.cpu() for k, v in probe.network.state_dict().items()}
        torch.save(weights, tmp / WEIGHTS_FILE)
        (tmp / CARD_FILE).write_text(json_text(probe.card))
    return Path(folder)


def load_probe(folder: Path, device: torch.device) -> Probe | None:
    """The probe saved in ``folder``, or None when there is none (or an unreadable one)."""
    folder = Path(folder)
    try:
        card = json.loads((folder / CARD_FILE).read_text())
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except (OSError, json.JSONDecodeError, RuntimeError):
        return None
    if card.get("targets") != list(TARGETS):
        return None  # made for other targets: retrain
    network = build_network()
    network.load_state_dict(state)
    return Probe(network.to(device).eval(), card, device)


def ensure_probe(
    folder: Path,
    dataset: DatasetFolder | None,
    device: torch.device,
    settings: ProbeSettings = ProbeSettings(),
    progress: bool = True,
) -> Probe:
    """The probe cached in ``folder`` if it was trained on ``dataset`` (same fingerprint),
    else a newly trained one, saved there. Without a dataset the cached one is used as it
    is; if there is none, that is an error naming what is needed."""
    probe = load_probe(folder, device)
    if dataset is None:
        if probe is None:
            raise UserError(
                f"no attribute probe in {folder}; pass --data DATASET_DIR (the dataset the "
                "model was trained on) to train one"
            )
        return probe
    if probe is not None and probe.card.get("fingerprint") == dataset.fingerprint():
        return probe
    probe = train_probe(dataset, device, settings, progress)
    save_probe(probe, folder)
    return probe
