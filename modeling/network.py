"""The invertible classifier: a multi-scale Glow-style flow with a linear head.

Input ``x`` is ``(N, 3, S, S)`` in [0, 1] (as :class:`generator.dataset.ImageDataset`
yields it). The flow sees ``y = (255 x + u) / 256 - 0.5``: ``u`` is uniform
dequantization noise while training and ``0.5`` (the bin center) otherwise, so the
map is affine and exactly invertible.

Stage ``i`` squeezes (halving the resolution, quadrupling channels), applies its flow
steps, and, except for the last stage, splits off the second half of its channels as
latent ``latents[i]``; ``latents[-1]`` is the last stage's whole output. The classifier
reads ``latents[k]`` with ``k = config.classifier_stage``: ``logit = <w, head> + b``;
``logit > 0`` means stretchy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from modeling.configs import ModelConfig
from modeling.layers import FlowStep, squeeze, unsqueeze

LOG_2PI = math.log(2 * math.pi)


@dataclass
class ModelOutput:
    """What :meth:`InvertibleClassifier.forward` returns.

    ``logit`` (N,); ``head`` (N, C, h, w), the latent the classifier reads;
    ``latents`` every split-off latent plus the final one; ``log_det`` (N,), the flow's
    log-determinant with respect to the dequantized, centered input.
    """

    logit: torch.Tensor
    head: torch.Tensor
    latents: list[torch.Tensor]
    log_det: torch.Tensor


@dataclass
class Encoding:
    """Everything needed to invert an image, with the classifier to read its logit.

    ``latents`` as in :class:`ModelOutput`; ``head_index`` says which one the
    classifier reads; ``weight`` (C, h, w) and ``bias`` (scalar) are the classifier's.
    """

    latents: list[torch.Tensor]
    head_index: int
    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def head(self) -> torch.Tensor:
        return self.latents[self.head_index]

    @property
    def logit(self) -> torch.Tensor:
        """(N,) the classifier's logit of this encoding's head."""
        return (self.head * self.weight).flatten(1).sum(1) + self.bias

    def with_head(self, head: torch.Tensor) -> Encoding:
        """A copy with the head latent replaced; all other latents kept."""
        if head.shape != self.head.shape:
            raise ValueError(
                f"head must have shape {tuple(self.head.shape)}, got {tuple(head.shape)}"
            )
        latents = list(self.latents)
        latents[self.head_index] = head
        return replace(self, latents=latents)


def stage_shapes(
    config: ModelConfig,
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(C, h, w) of each stage's output and of each latent, for ``config``'s input size."""
    stages, latents = [], []
    channels, size = 3, config.input_size
    for index in range(config.num_stages):
        channels, size = channels * 4, size // 2
        stages.append((channels, size, size))
        if index < config.num_stages - 1:
            latents.append((channels - channels // 2, size, size))
            channels = channels // 2
        else:
            latents.append((channels, size, size))
    return stages, latents


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """(N,) log-density of ``z`` (N, ...) under an isotropic standard normal."""
    return -0.5 * (z.pow(2) + LOG_2PI).flatten(1).sum(1)


class InvertibleClassifier(nn.Module):
    """Glow-style flow with a linear classifier on one latent. See the module docstring."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.architecture != "invertible":
            raise ValueError(f"config {config.name!r} is not an invertible config")
        self.config = config
        self.input_size = config.input_size
        self.num_stages = config.num_stages
        self.classifier_stage = config.resolved_classifier_stage
        self.stage_shapes, self.latent_shapes = stage_shapes(config)
        self.stages = nn.ModuleList(
            nn.ModuleList(FlowStep(shape[0], width, config.scale_bound) for _ in range(blocks))
            for shape, blocks, width in zip(
                self.stage_shapes, config.blocks_per_stage, config.coupling_widths, strict=True
            )
        )
        self.head_shape = self.latent_shapes[self.classifier_stage]
        # Pooled: one weight per channel, shared over positions (fewer parameters, less
        # overfitting); the logit is still linear in the head either way.
        self.classifier_pooling = config.classifier_pooling
        weight_shape = self.head_shape[:1] if config.classifier_pooling else self.head_shape
        self.classifier_w = nn.Parameter(torch.zeros(weight_shape))
        self.classifier_b = nn.Parameter(torch.zeros(()))
        self.num_dims = 3 * config.input_size**2

    # -- precision ---------------------------------------------------------------------

    def set_mixed_precision(self, dtype: torch.dtype | None) -> None:
        """Run coupling networks under autocast with ``dtype`` (``None``: full precision)."""
        for module in self.modules():
            if hasattr(module, "amp_dtype"):
                module.amp_dtype = dtype

    # -- input mapping -----------------------------------------------------------------

    def _to_flow_input(self, x: torch.Tensor, dequant_noise: torch.Tensor | None) -> torch.Tensor:
        if x.shape[1:] != (3, self.input_size, self.input_size):
            raise ValueError(
                f"expected images (N, 3, {self.input_size}, {self.input_size}), "
                f"got {tuple(x.shape)}"
            )
        if dequant_noise is None:
            dequant_noise = torch.rand_like(x) if self.training else torch.full_like(x, 0.5)
        return (x * 255.0 + dequant_noise) / 256.0 - 0.5

    @staticmethod
    def _from_flow_input(y: torch.Tensor) -> torch.Tensor:
        return ((y + 0.5) * 256.0 - 0.5) / 255.0

    # -- flow --------------------------------------------------------------------------

    def _stage_forward(self, index: int, h: torch.Tensor, log_det: torch.Tensor):
        h = squeeze(h)
        for step in self.stages[index]:
            h, log_det = step(h, log_det)
        return h, log_det

    def _split(self, index: int, h: torch.Tensor):
        """(kept, latent) halves of stage ``index``'s output; the last stage keeps nothing."""
        if index == self.num_stages - 1:
            return None, h
        keep = h.shape[1] // 2
        return h[:, :keep], h[:, keep:]

    def flow_forward(self, y: torch.Tensor):
        """Latents and log-determinant of the flow input ``y`` (N, 3, S, S)."""
        log_det = y.new_zeros(y.shape[0])
        latents = []
        h = y
        for index in range(self.num_stages):
            h, log_det = self._stage_forward(index, h, log_det)
            h, z = self._split(index, h)
            latents.append(z)
        return latents, log_det

    def flow_inverse(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """The flow input ``y`` (N, 3, S, S) of ``latents`` (exact inverse of flow_forward)."""
        if len(latents) != self.num_stages:
            raise ValueError(f"expected {self.num_stages} latents, got {len(latents)}")
        h = latents[-1]
        log_det = h.new_zeros(h.shape[0])
        for index in reversed(range(self.num_stages)):
            if index < self.num_stages - 1:
                h = torch.cat([h, latents[index]], dim=1)
            for step in reversed(self.stages[index]):
                h, log_det = step.inverse(h, log_det)
            h = unsqueeze(h)
        return h

    # -- classifier --------------------------------------------------------------------

    def _logit_of_head(self, head: torch.Tensor) -> torch.Tensor:
        return (head * self._full_weight()).flatten(1).sum(1) + self.classifier_b

    def _full_weight(self) -> torch.Tensor:
        """(C, h, w) weight of the head, expanding a pooled (C,) weight over positions."""
        if not self.classifier_pooling:
            return self.classifier_w
        _, h, w = self.head_shape
        return self.classifier_w[:, None, None].expand(self.head_shape) / (h * w)

    def classifier_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w, b)``: ``w`` of the head's shape (C, h, w), ``b`` a scalar; detached copies."""
        return self._full_weight().detach().clone(), self.classifier_b.detach().clone()

    # -- public API --------------------------------------------------------------------

    def forward(self, x: torch.Tensor, dequant_noise: torch.Tensor | None = None) -> ModelOutput:
        """Images (N, 3, S, S) in [0, 1] -> :class:`ModelOutput`."""
        latents, log_det = self.flow_forward(self._to_flow_input(x, dequant_noise))
        head = latents[self.classifier_stage]
        return ModelOutput(self._logit_of_head(head), head, latents, log_det)

    def class_means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(peaky, stretchy) means ``-w / 2`` and ``+w / 2`` (C, h, w) of the head latent
        under the class-conditional prior.

        Two unit Gaussians whose Bayes log-odds ``log p(h | stretchy) - log p(h | peaky)``
        is ``<w, h>``: the classifier's logit up to its bias (which BCE keeps near 0 on
        balanced classes). Everything orthogonal to ``w`` has the same distribution under
        both classes, so moving a latent along ``w`` (a counterfactual) lands where the
        model expects images of the other class to be.
        """
        half = self._full_weight() / 2
        return -half, half

    def _head_log_prob(self, head: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(N,) log-density of the head latent: class-conditional when the config says so
        (given ``labels``, else the equal mixture of both classes), else standard normal."""
        if not self.config.class_conditional_prior:
            return standard_normal_log_prob(head)
        peaky, stretchy = (
            standard_normal_log_prob(head - mean[None]) for mean in self.class_means()
        )
        if labels is None:
            return torch.logaddexp(peaky, stretchy) - math.log(2.0)
        return torch.where(labels.bool(), stretchy, peaky)

    def log_prob(self, output: ModelOutput, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) log-density of the dequantized, centered input under the flow; with
        ``labels`` (N,) and a class-conditional prior, the density given the class."""
        prior = sum(
            standard_normal_log_prob(z)
            for index, z in enumerate(output.latents)
            if index != self.classifier_stage
        )
        prior = prior + self._head_log_prob(output.head, labels)
        return prior + output.log_det

    def bits_per_dim(self, output: ModelOutput, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) negative log-likelihood of the 8-bit image in bits per dimension (given
        ``labels`` when the prior is class-conditional and they are passed)."""
        nll = -self.log_prob(output, labels) / self.num_dims + math.log(256.0)
        return nll / math.log(2.0)

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) logits only; stops after the classifier's stage."""
        h = self._to_flow_input(x, None)
        log_det = h.new_zeros(h.shape[0])
        for index in range(self.classifier_stage + 1):
            h, log_det = self._stage_forward(index, h, log_det)
            h, z = self._split(index, h)
        return self._logit_of_head(z)

    def inverse(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """Images (N, 3, S, S) whose latents are ``latents`` (exact inverse of forward)."""
        return self._from_flow_input(self.flow_inverse(latents))

    def encode(self, x: torch.Tensor) -> Encoding:
        """Everything needed to invert ``x`` (N, 3, S, S)."""
        latents, _ = self.flow_forward(self._to_flow_input(x, None))
        w, b = self.classifier_weight()
        return Encoding(latents, self.classifier_stage, w, b)

    def decode(self, encoding: Encoding) -> torch.Tensor:
        """Images (N, 3, S, S) of an encoding, e.g. one with an edited head."""
        return self.inverse(encoding.latents)

    def edit_logit(self, encoding: Encoding, target: torch.Tensor | float) -> Encoding:
        """Move the head along ``w`` only, so that the logit equals ``target`` (N,) exactly.

        The part of the head orthogonal to ``w`` and all other latents stay as they are.
        """
        head = encoding.head
        target = torch.as_tensor(target, dtype=head.dtype, device=head.device)
        target = target.expand(head.shape[0])
        w = encoding.weight
        step = (target - encoding.logit) / w.pow(2).sum().clamp_min(1e-12)
        return encoding.with_head(head + step[:, None, None, None] * w)

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.num_stages:
            raise ValueError(f"layer must be in 0..{self.num_stages - 1}, got {layer}")

    def activations(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """(N, C, h, w) output of stage ``layer`` (0-based), before its split."""
        self._check_layer(layer)
        h = self._to_flow_input(x, None)
        log_det = h.new_zeros(h.shape[0])
        for index in range(layer + 1):
            if index > 0:
                h, _ = self._split(index - 1, h)
            h, log_det = self._stage_forward(index, h, log_det)
        return h

    def logit_from_activations(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """(N,) logit as a differentiable function of stage ``layer``'s output ``h``."""
        self._check_layer(layer)
        if layer > self.classifier_stage:
            raise ValueError(
                f"the classifier reads stage {self.classifier_stage}; "
                f"its logit is not a function of stage {layer}'s activations"
            )
        log_det = h.new_zeros(h.shape[0])
        h, z = self._split(layer, h)
        for index in range(layer + 1, self.classifier_stage + 1):
            h, log_det = self._stage_forward(index, h, log_det)
            h, z = self._split(index, h)
        return self._logit_of_head(z)

    def default_concept_layer(self) -> int:
        """The stage whose activations are 8 x 8 at 64 px input (1/8 of the input size)."""
        return min(2, self.num_stages - 1)


def build_model(config: ModelConfig, seed: int = 0) -> InvertibleClassifier:
    """A freshly initialized invertible classifier; ``seed`` fixes the initial weights
    (``modeling.build_model`` builds the model of either architecture)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return InvertibleClassifier(config)
