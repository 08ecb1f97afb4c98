"""The model under study: an invertible (Glow-style) classifier, its training and runs.

``load_run(run_dir, device)`` gives the trained :class:`InvertibleClassifier` of a run
folder together with its model card and config.
"""

from modeling.checkpoint import Run, load_run
from modeling.configs import CONFIGS, ModelConfig, load_config
from modeling.network import Encoding, InvertibleClassifier, ModelOutput, build_model

__all__ = [
    "CONFIGS",
    "Encoding",
    "InvertibleClassifier",
    "ModelConfig",
    "ModelOutput",
    "Run",
    "build_model",
    "load_config",
    "load_run",
]
