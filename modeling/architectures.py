"""The networks a run can train, and what training does differently for each.

``modeling/training.py`` runs one loop for every architecture: data order, augmentation,
label noise, checkpoints, metrics, resume and progress are shared. What depends on the
network is here, one small class per architecture: how to build it, which parameter
groups the optimizer gets, the loss of a batch, and the figures it reports besides the
loss and the accuracy (the flow's bits/dim; the ResNet has none).

:class:`StudiedModel` is what the explanation code may call on either model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from modeling.configs import ModelConfig
from modeling.network import InvertibleClassifier
from modeling.network import build_model as build_flow
from modeling.resnet import ResNetClassifier, build_resnet


class StudiedModel(Protocol):
    """The interface both models under study offer (``InvertibleClassifier``,
    ``ResNetClassifier``); images are (N, 3, S, S) floats in [0, 1].

    ``model(x).logit`` (N,), ``logit > 0`` meaning stretchy; ``activations(x, layer)``
    (N, C, h, w) of stage / residual layer ``layer`` in ``0..num_stages - 1``;
    ``logit_from_activations(h, layer)`` (N,), differentiable in ``h``, so that
    ``logit_from_activations(activations(x, k), k) == model(x).logit``.
    """

    config: ModelConfig
    input_size: int
    num_stages: int
    classifier_stage: int  # the stage / layer whose output the classifier reads
    head_shape: tuple[int, ...]  # the shape of what the classifier reads, per image

    def __call__(self, x: torch.Tensor) -> Any: ...
    def logit(self, x: torch.Tensor) -> torch.Tensor: ...
    def activations(self, x: torch.Tensor, layer: int) -> torch.Tensor: ...
    def logit_from_activations(self, h: torch.Tensor, layer: int) -> torch.Tensor: ...
    def default_concept_layer(self) -> int: ...
    def set_mixed_precision(self, dtype: torch.dtype | None) -> None: ...


@dataclass
class BatchLoss:
    """The loss of one training batch: ``loss`` (scalar, minimized), ``logit`` (N,), and
    ``figures``, batch means reported besides loss and accuracy (name -> scalar)."""

    loss: torch.Tensor
    logit: torch.Tensor
    figures: dict[str, torch.Tensor]


class Architecture(ABC):
    """What training needs to know about one kind of network."""

    # Per-image figures besides the accuracy, each with its short label for the progress
    # bar; metrics.csv gets train_<name> and val_<name> columns.
    figures: ClassVar[dict[str, str]] = {}
    # what a diverged run may lower in a config file
    divergence_hint: ClassVar[str] = "learning_rate"

    @abstractmethod
    def build(self, config: ModelConfig, seed: int) -> nn.Module:
        """A freshly initialized model; ``seed`` fixes the initial weights."""

    def parameter_groups(self, model: nn.Module, config: ModelConfig) -> list[dict[str, Any]]:
        """The optimizer's parameter groups, each with the ``lr_scale`` its learning rate
        is multiplied by."""
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]

    @abstractmethod
    def batch_loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        noise_generator: torch.Generator,
    ) -> BatchLoss:
        """The loss of images ``x`` (N, 3, S, S) with (noisy) ``labels`` (N,) int64."""

    def initialize(self, model: nn.Module, x: torch.Tensor) -> None:
        """The data-dependent initialization of ``model`` from images ``x``, where the
        architecture has one; none by default.

        One process trains: the first training step does it, on the first batch. Several
        processes: process 0 calls this on its share of the first batch before that step,
        and its weights are copied to the others.
        """
        return None

    def measure(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Logits (N,) of ``x`` in eval mode, and each of :attr:`figures` per image (N,)."""
        return model(x).logit, {}


class InvertibleArchitecture(Architecture):
    """The flow: ``nll_weight * bits/dim + bce_weight * BCE``, dequantization noise
    from the run's noise generator, and a classifier that may learn faster."""

    figures: ClassVar[dict[str, str]] = {"bits_per_dim": "bpd"}
    divergence_hint: ClassVar[str] = "learning_rate or scale_bound"

    def build(self, config: ModelConfig, seed: int) -> InvertibleClassifier:
        return build_flow(config, seed)

    def parameter_groups(self, model, config):
        classifier = [model.classifier_w, model.classifier_b]
        flow = [p for name, p in model.named_parameters() if not name.startswith("classifier_")]
        return [
            {"params": flow, "lr_scale": 1.0},
            {"params": classifier, "lr_scale": config.classifier_lr_scale},
        ]

    def batch_loss(self, model, x, labels, noise_generator):
        config = model.config
        noise = torch.rand(x.shape, generator=noise_generator, device=x.device)
        out = model(x, dequant_noise=noise)
        bits = model.bits_per_dim(out, labels).mean()
        bce = F.binary_cross_entropy_with_logits(out.logit, labels.float())
        loss = config.nll_weight * bits + config.bce_weight * bce
        return BatchLoss(loss, out.logit, {"bits_per_dim": bits})

    @torch.no_grad()
    def initialize(self, model, x):
        """ActNorm's: every layer starts with zero mean and unit variance per channel on
        ``x`` (each initializes itself in its first forward pass in training mode). The
        input is dequantized to the bin centres: no noise is drawn."""
        was_training = model.training
        model.train()
        model(x, dequant_noise=torch.full_like(x, 0.5))
        model.train(was_training)

    def measure(self, model, x):
        out = model(x)
        return out.logit, {"bits_per_dim": model.bits_per_dim(out)}


class ResNetArchitecture(Architecture):
    """The ResNet: BCE only (it has no likelihood, so no bits/dim), one learning rate
    (its fully connected layer is part of the network, not a head on a fixed latent, so
    the flow's classifier_lr_scale has nothing to do). It draws no noise: its input is
    the 8-bit image as it is."""

    def build(self, config: ModelConfig, seed: int) -> ResNetClassifier:
        return build_resnet(config, seed)

    def batch_loss(self, model, x, labels, noise_generator):
        logit = model(x).logit
        return BatchLoss(F.binary_cross_entropy_with_logits(logit, labels.float()), logit, {})


ARCHITECTURES: dict[str, Architecture] = {
    "invertible": InvertibleArchitecture(),
    "resnet": ResNetArchitecture(),
}


def architecture_of(config: ModelConfig) -> Architecture:
    return ARCHITECTURES[config.architecture]


def build_model(config: ModelConfig, seed: int = 0) -> StudiedModel:
    """A freshly initialized model of ``config``'s architecture; ``seed`` fixes its weights."""
    return architecture_of(config).build(config, seed)
