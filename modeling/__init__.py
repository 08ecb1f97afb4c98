"""The model under study: an invertible (Glow-style) classifier, its training and runs.

``load_run(run_dir, device)`` gives the trained :class:`InvertibleClassifier` of a run
folder together with its model card and config.

The names below are imported on first use, so that ``modeling.card`` and
``modeling.configs`` (which the study bundle's readers need) import no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "CONFIGS": "modeling.configs",
    "Encoding": "modeling.network",
    "InvertibleClassifier": "modeling.network",
    "ModelCard": "modeling.card",
    "ModelConfig": "modeling.configs",
    "ModelOutput": "modeling.network",
    "Run": "modeling.checkpoint",
    "build_model": "modeling.network",
    "load_config": "modeling.configs",
    "load_run": "modeling.checkpoint",
}
__all__ = [
    "CONFIGS",
    "Encoding",
    "InvertibleClassifier",
    "ModelCard",
    "ModelConfig",
    "ModelOutput",
    "Run",
    "build_model",
    "load_config",
    "load_run",
]

if TYPE_CHECKING:
    from modeling.card import ModelCard
    from modeling.checkpoint import Run, load_run
    from modeling.configs import CONFIGS, ModelConfig, load_config
    from modeling.network import Encoding, InvertibleClassifier, ModelOutput, build_model


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'modeling' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
