"""The model card: what ``xaistudy train`` measured about a run (``model_card.json``).

``xaistudy train`` writes it last into the run folder; ``xaistudy explain`` copies it
into the study bundle's manifest, where the server, the analysis and the demo read it.
This module imports no torch: readers of a bundle get the card without the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeling.configs import ModelConfig
from xaistudy.errors import UserError
from xaistudy.records import Invalid, Record, key


def _parse_config(value: Any, path: str) -> ModelConfig:
    if not isinstance(value, dict):
        raise Invalid(path, "must be an object (a model config)")
    try:
        return ModelConfig.from_dict(value, source=path)
    except (UserError, TypeError, ValueError) as exc:
        raise Invalid("", str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class CardDataset(Record):
    """The dataset the run was trained on."""

    path: str
    fingerprint: str
    preset: str | None
    size: int


@dataclass(frozen=True, kw_only=True)
class ModelCard(Record):
    """``model_card.json``: accuracy and bits/dim on every split but train, the ceiling
    of a classifier on the true scene attributes, and the settings of the run."""

    json_noun = "model card"

    model: str  # the network's class, "InvertibleClassifier"
    config_name: str
    config: ModelConfig = key(parse=_parse_config, dump=ModelConfig.to_dict)
    input_size: int
    num_stages: int
    classifier_layer: int  # the stage whose latent the linear classifier reads
    head_shape: tuple[int, ...]
    default_concept_layer: int
    accuracy: dict[str, float]  # split -> accuracy; "test" always
    bits_per_dim: dict[str, float]  # split -> bits per dimension
    train_accuracy: float | None  # of the last epoch; null when no epoch ran
    ceiling_accuracy: float  # the best attribute classifier's test accuracy
    ceiling: dict[str, float]  # each attribute classifier's, and "ceiling"
    gap_to_ceiling: float
    label_noise: float
    dataset: CardDataset
    epochs: int  # finished
    planned_epochs: int
    batch_size: int
    seed: int
    training_seconds: float
    device: str
    created: str  # ISO time; tells two runs of the same settings apart

    def check(self, path: str) -> None:
        if "test" not in self.accuracy:
            raise Invalid(f"{path}.accuracy" if path else "accuracy", "has no 'test' split")
