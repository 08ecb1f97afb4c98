"""The run folder: atomic checkpoints, the saved config, loading a finished run, and
whether a run is up to date for a dataset and a config.

Layout of ``RUN_DIR``::

    config.json       the model config, seed and dataset fingerprint of the run
    checkpoint.pt     weights, optimizer and RNG state after the last finished epoch
    metrics.csv       one row per finished epoch
    model_card.json   written last: a folder without it is not a complete run
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modeling.architectures import StudiedModel, build_model
from modeling.card import ModelCard
from modeling.configs import ModelConfig
from xaistudy.errors import UserError
from xaistudy.files import atomic_path

if TYPE_CHECKING:
    from generator.dataset import DatasetFolder

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
CARD_FILE = "model_card.json"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc


def read_model_card(run_dir: Path) -> ModelCard:
    """The run's ``model_card.json``; a malformed one is a :class:`UserError` naming it."""
    path = Path(run_dir) / CARD_FILE
    data = read_json(path)
    try:
        return ModelCard.from_json(data)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def load_checkpoint(run_dir: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc}") from exc


def _read_if_present(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path) if path.exists() else None
    except UserError:  # damaged: as good as absent
        return None


def run_is_current(run_dir: Path, dataset: DatasetFolder, config_name: str) -> bool:
    """Whether ``run_dir`` holds a finished run of config ``config_name`` trained on
    ``dataset`` as it is now."""
    try:
        card = read_model_card(run_dir)
    except UserError:  # no card (unfinished or no run) or a damaged one
        return False
    return card.config_name == config_name and card.dataset.fingerprint == dataset.fingerprint()


def run_can_resume(run_dir: Path, dataset: DatasetFolder, config_name: str) -> bool:
    """Whether ``run_dir`` holds an unfinished run of ``config_name`` on ``dataset`` as it
    is now, which ``--resume`` continues from its last checkpoint."""
    run_dir = Path(run_dir)
    saved = _read_if_present(run_dir / CONFIG_FILE)
    return (
        not (run_dir / CARD_FILE).exists()
        and saved is not None
        and saved.get("model", {}).get("name") == config_name
        and saved.get("dataset_fingerprint") == dataset.fingerprint()
    )


@dataclass
class Run:
    """A finished training run, ready for explanations: ``model`` is an
    ``InvertibleClassifier`` or a ``ResNetClassifier``, as ``config.architecture`` says."""

    path: Path
    model: StudiedModel
    card: ModelCard
    config: ModelConfig


def load_run(run_dir: Path | str, device: torch.device | str = "cpu") -> Run:
    """Load a complete run folder: the model of the saved config's architecture, in eval
    mode on ``device``, with its card and config."""
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
    model = build_model(config)
    state = load_checkpoint(run_dir, "cpu")
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Run(run_dir, model, read_model_card(run_dir), config)
