"""The models under study, their training and runs: an invertible (Glow-style)
classifier and a torchvision ResNet.

``load_run(run_dir, device)`` gives the trained model of a run folder
(:class:`InvertibleClassifier` or :class:`ResNetClassifier`, both a
:class:`StudiedModel`) together with its model card and config.

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
    "ResNetClassifier": "modeling.resnet",
    "ResNetOutput": "modeling.resnet",
    "Run": "modeling.checkpoint",
    "StudiedModel": "modeling.architectures",
    "build_model": "modeling.architectures",
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
    "ResNetClassifier",
    "ResNetOutput",
    "Run",
    "StudiedModel",
    "build_model",
    "load_config",
    "load_run",
]

if TYPE_CHECKING:
    from modeling.architectures import StudiedModel, build_model
    from modeling.card import ModelCard
    from modeling.checkpoint import Run, load_run
    from modeling.configs import CONFIGS, ModelConfig, load_config
    from modeling.network import Encoding, InvertibleClassifier, ModelOutput
    from modeling.resnet import ResNetClassifier, ResNetOutput


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'modeling' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
