"""The second model under study: torchvision's ResNet, ResNet-18 layout, one logit.

``ResNetClassifier.body`` is a genuine ``torchvision.models.resnet.ResNet`` (BasicBlock,
``[2, 2, 2, 2]``, ``num_classes=1``; weights never downloaded), so the field's tools work
on it as on any torchvision ResNet (Captum's Grad-CAM on ``body.layer4``, Zennit's
``ResNetCanonizer`` on ``body``). Two things differ from ``resnet18``:

- **width**: layer1 has ``config.resnet_width`` channels, layer2, 3, 4 two, four and
  eight times as many (64 is ResNet-18 itself). torchvision builds BasicBlock networks at
  64 channels only (``width_per_group`` widens Bottlenecks), so the stem and the four
  layers are rebuilt with torchvision's own ``_make_layer`` at the asked width.
- **stem**, so that layer3 (the default concept layer) is 8 x 8 like the flow's third
  stage at 64 px: below 128 px a 3x3 stride-2 ``conv1`` and no max-pool (the image
  shrinks by 2 before layer1: 32, 16, 8, 4 px at 64 px input); from 128 px torchvision's
  own 7x7 stride-2 ``conv1`` and max-pool (by 4: 32, 16, 8, 4 px at 128 px input).

Input ``x`` is ``(N, 3, S, S)`` in [0, 1], as for the flow. It goes into the body as it
is: ``conv1`` is followed by BatchNorm, which takes out any scale and offset of the
input, and LRP's box rule for the first layer then has the bounds 0 and 1.
``logit > 0`` means stretchy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from modeling.configs import RESNET_BLOCKS, ModelConfig, resnet_stem_stride


@dataclass
class ResNetOutput:
    """What :meth:`ResNetClassifier.forward` returns: ``logit`` (N,)."""

    logit: torch.Tensor


def resnet_body(width: int, input_size: int) -> ResNet:
    """A freshly initialized torchvision ResNet-18 layout with ``width`` channels in layer1,
    its stem suited to ``input_size`` (see the module docstring) and one output."""
    body = ResNet(BasicBlock, list(RESNET_BLOCKS), num_classes=1)
    if resnet_stem_stride(input_size) == 2:
        body.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=2, padding=1, bias=False)
        body.maxpool = nn.Identity()
    else:
        body.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    body.bn1 = nn.BatchNorm2d(width)
    # _make_layer builds each layer from body.inplanes and moves it on, as in ResNet's own
    # constructor; assigning to the existing attributes keeps the modules' order.
    body.inplanes = width
    body.layer1 = body._make_layer(BasicBlock, width, RESNET_BLOCKS[0])
    body.layer2 = body._make_layer(BasicBlock, 2 * width, RESNET_BLOCKS[1], stride=2)
    body.layer3 = body._make_layer(BasicBlock, 4 * width, RESNET_BLOCKS[2], stride=2)
    body.layer4 = body._make_layer(BasicBlock, 8 * width, RESNET_BLOCKS[3], stride=2)
    body.fc = nn.Linear(8 * width, 1)
    # torchvision's initialization, which its constructor gave the modules replaced above
    for module in body.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return body


class ResNetClassifier(nn.Module):
    """torchvision's ResNet with one logit, and the explanation interface of the flow.

    Layers are counted from 0: layer ``k`` of :meth:`activations` is ``body.layer{k+1}``,
    ``(N, C_k, s_k, s_k)`` with ``C_k = width * 2**k`` and ``s_k = S / (stem * 2**k)``:
    at 64 px and 128 px 32, 16, 8 and 4 px. The fully connected layer reads layer 3's
    output averaged over positions, ``head_shape = (8 * width,)``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.architecture != "resnet":
            raise ValueError(f"config {config.name!r} is not a resnet config")
        self.config = config
        self.input_size = config.input_size
        self.num_stages = len(RESNET_BLOCKS)
        self.classifier_stage = self.num_stages - 1  # fc reads the last layer, pooled
        self.head_shape = (8 * config.resnet_width,)
        self.body = resnet_body(config.resnet_width, config.input_size)
        self.amp_dtype: torch.dtype | None = None

    def set_mixed_precision(self, dtype: torch.dtype | None) -> None:
        """Run the forward pass under autocast with ``dtype`` while training (``None``:
        full precision). Evaluation and explanations always run in float32."""
        self.amp_dtype = dtype

    def _check_input(self, x: torch.Tensor) -> None:
        if x.shape[1:] != (3, self.input_size, self.input_size):
            raise ValueError(
                f"expected images (N, 3, {self.input_size}, {self.input_size}), "
                f"got {tuple(x.shape)}"
            )

    def _layers(self) -> list[nn.Sequential]:
        return [self.body.layer1, self.body.layer2, self.body.layer3, self.body.layer4]

    def forward(self, x: torch.Tensor) -> ResNetOutput:
        """Images (N, 3, S, S) in [0, 1] -> :class:`ResNetOutput` (``logit`` (N,))."""
        self._check_input(x)
        use_amp = self.amp_dtype is not None and self.training
        with torch.autocast(x.device.type, dtype=self.amp_dtype, enabled=use_amp):
            logit = self.body(x)
        return ResNetOutput(logit.squeeze(1).float())

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) logits of images (N, 3, S, S)."""
        return self(x).logit

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.num_stages:
            raise ValueError(f"layer must be in 0..{self.num_stages - 1}, got {layer}")

    def activations(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """(N, C, h, w) output of residual layer ``layer`` (0-based: ``body.layer{layer+1}``)."""
        self._check_layer(layer)
        self._check_input(x)
        body = self.body
        h = body.maxpool(body.relu(body.bn1(body.conv1(x))))
        for module in self._layers()[: layer + 1]:
            h = module(h)
        return h

    def logit_from_activations(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """(N,) logit as a differentiable function of layer ``layer``'s output ``h``: the
        layers after it, average pooling and the fully connected layer."""
        self._check_layer(layer)
        for module in self._layers()[layer + 1 :]:
            h = module(h)
        pooled = torch.flatten(self.body.avgpool(h), 1)
        return self.body.fc(pooled).squeeze(1)

    def default_concept_layer(self) -> int:
        """layer3 (index 2): 8 x 8 at 64 px and at 128 px."""
        return 2


def build_resnet(config: ModelConfig, seed: int = 0) -> ResNetClassifier:
    """A freshly initialized ResNet classifier; ``seed`` fixes the initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNetClassifier(config)
