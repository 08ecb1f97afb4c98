"""The model card: what ``xaistudy train`` measured about a run (``model_card.json``).

``xaistudy train`` writes it last into the run folder; ``xaistudy explain`` copies it
into the study bundle's manifest, where the server, the analysis and the demo read it.
This module imports no torch: readers of a bundle get the card without the network.

Cards written before the ResNet joined have no ``architecture`` key: they are the
invertible network's, and read as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeling.configs import MODEL_CLASSES, ArchitectureName, ModelConfig
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
    """``model_card.json``: accuracy (and the flow's bits/dim) on every split but train,
    the ceiling of a classifier on the true scene attributes, and the settings of the run.

    The layer fields mean, for the flow and the ResNet: ``num_stages`` its stages / its
    residual layers (4: layer1 .. layer4); ``classifier_layer`` the stage whose latent the
    linear classifier reads / the layer whose pooled output the fully connected layer
    reads (3); ``head_shape`` that latent's (C, h, w) / the pooled (C,);
    ``default_concept_layer`` the stage / layer with 8 x 8 activations at 64 px.
    """

    json_noun = "model card"

    model: str  # the network's class, "InvertibleClassifier" or "ResNetClassifier"
    architecture: ArchitectureName = "invertible"
    config_name: str
    config: ModelConfig = key(parse=_parse_config, dump=ModelConfig.to_dict)
    input_size: int
    num_stages: int
    classifier_layer: int
    head_shape: tuple[int, ...]
    default_concept_layer: int
    accuracy: dict[str, float]  # split -> accuracy; "test" always
    # split -> bits per dimension; empty for the ResNet, which has no likelihood
    bits_per_dim: dict[str, float]
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

    @classmethod
    def parse_json(cls, data: Any, path: str) -> ModelCard:
        if isinstance(data, dict) and "architecture" not in data:
            data = {**data, "architecture": "invertible"}  # a card from before the ResNet
        return super().parse_json(data, path)

    def check(self, path: str) -> None:
        def where(name: str) -> str:
            return f"{path}.{name}" if path else name

        if "test" not in self.accuracy:
            raise Invalid(where("accuracy"), "has no 'test' split")
        if self.config.architecture != self.architecture:
            raise Invalid(
                where("config.architecture"),
                f"is {self.config.architecture!r} but the card's architecture is "
                f"{self.architecture!r}",
            )
        if self.model != MODEL_CLASSES[self.architecture]:
            raise Invalid(
                where("model"),
                f"must be {MODEL_CLASSES[self.architecture]!r} for the {self.architecture} "
                f"architecture, not {self.model!r}",
            )
        if self.architecture == "resnet" and self.bits_per_dim:
            raise Invalid(where("bits_per_dim"), "must be empty: the resnet has no likelihood")
