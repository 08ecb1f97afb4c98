"""The run folder: atomic checkpoints, the saved config, and loading a finished run.

Layout of ``RUN_DIR``::

    config.json       the model config, seed and dataset fingerprint of the run
    checkpoint.pt     weights, optimiser and RNG state after the last finished epoch
    metrics.csv       one row per finished epoch
    model_card.json   written last: a folder without it is not a complete run
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modeling.card import ModelCard
from modeling.configs import ModelConfig
from modeling.network import InvertibleClassifier
from xaistudy.errors import UserError

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
CARD_FILE = "model_card.json"


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = _temporary_name(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = _temporary_name(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc


def read_card(run_dir: Path) -> ModelCard:
    """The run's ``model_card.json``; a malformed one is a :class:`UserError` naming it."""
    path = Path(run_dir) / CARD_FILE
    try:
        return ModelCard.from_json(read_json(path))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def load_checkpoint(run_dir: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc}") from exc


@dataclass
class Run:
    """A finished training run, ready for explanations."""

    path: Path
    model: InvertibleClassifier
    card: ModelCard
    config: ModelConfig


def load_run(run_dir: Path | str, device: torch.device | str = "cpu") -> Run:
    """Load a complete run folder: the model in eval mode on ``device``, card and config."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    missing = [f for f in (CONFIG_FILE, CHECKPOINT_FILE, CARD_FILE) if not (run_dir / f).exists()]
    if missing:
        raise UserError(
            f"{run_dir} is not a complete run folder: it lacks {', '.join(missing)} "
            "(made by 'xaistudy train'; an interrupted run can be finished with --resume)"
        )
    saved = read_json(run_dir / CONFIG_FILE)
    config = ModelConfig.from_dict(saved["model"], source=str(run_dir / CONFIG_FILE))
    model = InvertibleClassifier(config)
    state = load_checkpoint(run_dir, "cpu")
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Run(run_dir, model, read_card(run_dir), config)
