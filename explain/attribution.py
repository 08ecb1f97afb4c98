"""The field's attribution methods for the models under study, as one registry.

::

    maps = attribute("integrated_gradients", model, images, device)   # (N, H, W) float32
    supports("lrp", model)                                            # False for the flow
    method_info("grad_cam", GradCamSettings(), model).to_json()       # for a bundle manifest

A map explains the model's **decision** on its image: the class it decided (stretchy
when ``logit > 0``, else peaky) with the decided class's evidence ``s * logit``,
``s = +1`` for stretchy and ``-1`` for peaky. **Positive values are evidence for the
decided class**; signed methods show evidence against it as negative values:

========================  ==========  ================================================
method                    values      map at input resolution
========================  ==========  ================================================
``integrated_gradients``  signed      sums over pixels to ``s (logit(x) - logit(baseline))``
``smoothgrad``            >= 0        size of the decided class's mean gradient
``grad_cam``              >= 0        bilinear upsampling of the layer's map
``occlusion``             signed      drop of ``s * logit`` when a window is occluded
``lrp``                   signed      sums to about ``|logit| - s * bias`` (the fc's bias)
``contrastive_lrp``       >= 0        evidence for the decided class over the other one
``iba``                   >= 0, bits  bilinear upsampling of the layer's bits
========================  ==========  ================================================

Captum computes ``integrated_gradients``, ``smoothgrad``, ``grad_cam`` and ``occlusion``,
Zennit ``lrp`` and ``contrastive_lrp``, and :mod:`explain.iba` ``iba``. Grad-CAM and IBA
are written on the models' ``activations`` / ``logit_from_activations``, so they work on
every model under study; LRP needs a torchvision ResNet (``model.body``). The methods and
their settings are documented in docs/methods.md.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet
from tqdm.auto import tqdm

import xaistudy
from explain.batching import batches
from explain.iba import IbaSettings, fit_statistics, information_bits
from modeling.network import InvertibleClassifier
from xaistudy.errors import UserError
from xaistudy.records import Record, key

INVERTIBLE, RESNET = "invertible", "resnet"
INSTALL = {"captum": "captum==0.9.0", "zennit": "zennit==0.5.1"}
# Zennit composites that need no bounds of the input (ZBox's would depend on the model's
# input normalization, which the models keep to themselves).
LRP_COMPOSITES = (
    "epsilon_plus_flat",
    "epsilon_plus",
    "epsilon_alpha2_beta1_flat",
    "epsilon_alpha2_beta1",
)


# -- settings --------------------------------------------------------------------------


def _at_least(method: str, name: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise UserError(f"{method} {name} must be at least {minimum}, not {value}")


def _within_unit(method: str, name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{method} {name} must be a pixel value in [0, 1], not {value}")


@dataclass(frozen=True)
class IntegratedGradientsSettings:
    """``steps`` of Captum's Gauss-Legendre path integral from a uniform ``baseline``
    image (0: black, as Sundararajan et al.) to the image."""

    steps: int = 50
    baseline: float = 0.0

    def __post_init__(self):
        _at_least("integrated_gradients", "steps", self.steps, 1)
        _within_unit("integrated_gradients", "baseline", self.baseline)


@dataclass(frozen=True)
class SmoothGradSettings:
    """The gradient averaged over ``samples`` copies of the image with Gaussian noise of
    standard deviation ``noise`` (pixel values in [0, 1]; Smilkov et al. suggest 10 to
    20 % of the range); ``seed`` fixes the noise, the same draws for every image."""

    samples: int = 32
    noise: float = 0.15
    seed: int = 0

    def __post_init__(self):
        _at_least("smoothgrad", "samples", self.samples, 1)
        _at_least("smoothgrad", "noise", self.noise, 0.0)


@dataclass(frozen=True)
class GradCamSettings:
    """``layer``: whose activations are weighted (None: the model's default concept
    layer, the one the concept condition factorizes)."""

    layer: int | None = None


@dataclass(frozen=True)
class OcclusionSettings:
    """A ``window`` x ``window`` pixel square, moved by ``stride`` pixels, set to the
    gray value ``fill`` (Zeiler and Fergus occlude with gray). The windows must tile the
    image: ``(size - window)`` a multiple of ``stride``."""

    window: int = 8
    stride: int = 4
    fill: float = 0.5

    def __post_init__(self):
        _at_least("occlusion", "window", self.window, 1)
        _at_least("occlusion", "stride", self.stride, 1)
        _within_unit("occlusion", "fill", self.fill)


@dataclass(frozen=True)
class LrpSettings:
    """The Zennit ``composite`` (one of :data:`LRP_COMPOSITES`; the default, EpsilonPlusFlat,
    is Zennit's recommendation: the flat rule for the first layer, z+ for the other
    convolutions, epsilon for the dense layer) and its ``epsilon``. Used by ``lrp`` and by
    ``contrastive_lrp``, which puts the z+ rule on the dense layer (see
    :func:`_contrastive_lrp`)."""

    composite: str = "epsilon_plus_flat"
    epsilon: float = 1e-6

    def __post_init__(self):
        if self.composite not in LRP_COMPOSITES:
            raise UserError(
                f"unknown LRP composite {self.composite!r}; allowed are {', '.join(LRP_COMPOSITES)}"
            )
        if self.epsilon <= 0:
            raise UserError(f"LRP epsilon must be positive, not {self.epsilon}")


Settings = (
    IntegratedGradientsSettings
    | SmoothGradSettings
    | GradCamSettings
    | OcclusionSettings
    | LrpSettings
    | IbaSettings
)


# -- what every method gets -------------------------------------------------------------

# (images (B, 3, S, S) in [0, 1], sign (B,) of the decided class) -> maps (B, S, S)
Explainer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Context:
    """What a method may need beyond one batch."""

    method: str
    device: torch.device
    batch_size: int
    image_size: tuple[int, int]
    reference: Callable[[], Iterator[torch.Tensor]]  # batches of reference images (IBA)


def _not_installed(method: str, package: str) -> UserError:
    return UserError(
        f"{method} needs the {package} package, which is not installed: "
        f"pip install {INSTALL[package]}"
    )


def _library(module: str, method: str):
    """``importlib.import_module(module)``, or one UserError saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _not_installed(method, module.split(".")[0]) from exc


def _decided_logit(model) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``f(x, sign) = sign * logit(x)``: the evidence for the decided class, as Captum's
    forward function (``sign`` travels as an additional forward argument, which Captum
    repeats along with the inputs it expands)."""

    def forward(x: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        return sign * model(x).logit

    return forward


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) layer maps -> (N, H, W), bilinear (a pixel shows the cells it lies in)."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _layer(model, layer: int | None, context: _Context) -> int:
    """``layer``, or the model's default concept layer; one UserError if the model has no
    such layer (probed on one gray image)."""
    layer = model.default_concept_layer() if layer is None else layer
    probe = torch.full((1, 3, *context.image_size), 0.5, device=context.device)
    try:
        with torch.no_grad():
            model.logit_from_activations(model.activations(probe, layer), layer)
    except (ValueError, IndexError) as exc:
        raise UserError(f"{context.method} layer {layer} does not fit this model: {exc}") from exc
    return layer


@contextmanager
def _seeded(seed: int, device: torch.device):
    """Torch's global random state seeded with ``seed`` inside, restored afterwards."""
    if device.type == "cuda":
        cuda = [torch.cuda.current_device() if device.index is None else device.index]
    else:
        cuda = []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


# -- Captum -------------------------------------------------------------------------------


def _integrated_gradients(
    model, settings: IntegratedGradientsSettings, context: _Context
) -> Explainer:
    captum = _library("captum.attr", context.method)
    method = captum.IntegratedGradients(_decided_logit(model))

    def explain(x, sign):
        attributions = method.attribute(
            x,
            baselines=settings.baseline,
            additional_forward_args=(sign,),
            n_steps=settings.steps,
            internal_batch_size=context.batch_size,
        )
        # Summed over colour channels: the map keeps completeness.
        return attributions.sum(1)

    return explain


def _smoothgrad(model, settings: SmoothGradSettings, context: _Context) -> Explainer:
    captum = _library("captum.attr", context.method)
    tunnel = captum.NoiseTunnel(captum.Saliency(_decided_logit(model)))

    def explain(x, sign):
        maps = []
        # One image at a time, each with the same seeded noise, so that a map does not
        # depend on the other images of its batch; the noisy copies are the batch.
        for image, image_sign in zip(x, sign, strict=True):
            with _seeded(settings.seed, x.device):
                gradient = tunnel.attribute(
                    image[None],
                    nt_type="smoothgrad",
                    nt_samples=settings.samples,
                    nt_samples_batch_size=min(settings.samples, context.batch_size),
                    stdevs=settings.noise,
                    abs=False,
                    additional_forward_args=(image_sign[None],),
                )
            # The size of the mean gradient, as Smilkov et al. show it, summed over channels.
            maps.append(gradient.abs().sum(1))
        return torch.cat(maps)

    return explain


class _ThroughLayer(nn.Module):
    """``sign * logit`` as a function of the image through an identity module at ``layer``,
    built from ``activations`` and ``logit_from_activations``, so that Captum's layer
    methods can hook the layer on any model under study."""

    def __init__(self, model, layer: int):
        super().__init__()
        self.model, self.layer = model, layer
        self.at_layer = nn.Identity()

    def forward(self, x: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        h = self.at_layer(self.model.activations(x, self.layer))
        return sign * self.model.logit_from_activations(h, self.layer)


def _grad_cam(model, settings: GradCamSettings, context: _Context) -> Explainer:
    captum = _library("captum.attr", context.method)
    through = _ThroughLayer(model, _layer(model, settings.layer, context))
    method = captum.LayerGradCam(through, through.at_layer)

    def explain(x, sign):
        maps = method.attribute(x, additional_forward_args=(sign,), relu_attributions=True)
        return _upsample(maps[:, 0], context.image_size)

    return explain


def _occlusion(model, settings: OcclusionSettings, context: _Context) -> Explainer:
    captum = _library("captum.attr", context.method)
    for size in context.image_size:
        if settings.window > size or (size - settings.window) % settings.stride:
            raise UserError(
                f"occlusion windows of {settings.window} px moved by {settings.stride} px "
                f"do not tile {size} px images: (size - window) must be a multiple of stride"
            )
    method = captum.Occlusion(_decided_logit(model))

    def explain(x, sign):
        attributions = method.attribute(
            x,
            sliding_window_shapes=(3, settings.window, settings.window),
            strides=(3, settings.stride, settings.stride),
            baselines=settings.fill,
            additional_forward_args=(sign,),
            perturbations_per_eval=max(1, context.batch_size // len(x)),
        )
        # A window spans the three channels, so they hold the same value: take one.
        return attributions[:, 0]

    return explain


# -- Zennit ---------------------------------------------------------------------------------


def _two_class_body(body: ResNet) -> ResNet:
    """A copy of the ResNet whose single logit ``z = <w, h> + b`` is split into two class
    neurons: stretchy ``<w, h> + b`` and peaky ``<-w, h> - b``.

    LRP explains one output neuron; this is the two-class head the one logit stands for
    (each neuron is the evidence for its class, ``s * z``), so that the decided class and
    the other class each have a neuron to start from.
    """
    two = copy.deepcopy(body)
    fc = body.fc
    head = nn.Linear(fc.in_features, 2, device=fc.weight.device, dtype=fc.weight.dtype)
    with torch.no_grad():
        head.weight.copy_(torch.cat([fc.weight, -fc.weight]))
        head.bias.copy_(torch.cat([fc.bias, -fc.bias]))
    two.fc = head
    return two


def _body_input(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(what model.body receives, logit)`` for images ``x``: the body's input has the
    model's own input normalization applied. LRP runs on the body, so relevance lands on
    the normalized pixels, which keep the images' positions."""
    received = []
    hook = model.body.register_forward_pre_hook(lambda module, args: received.append(args[0]))
    try:
        with torch.no_grad():
            logit = model(x).logit
    finally:
        hook.remove()
    return received[0], logit


def _lrp_relevance(
    model, settings: LrpSettings, context: _Context, dense_rule: Literal["composite", "zplus"]
):
    """``relevance(inputs, neuron, score)`` -> (B, S, S): LRP of neuron ``neuron`` (B,)
    (0 stretchy, 1 peaky) of the two-class head for the body's ``inputs``, started with
    ``score`` (B,), summed over channels. ``dense_rule``: the composite's own rule on the
    dense layer, or z+."""
    _library("zennit", context.method)
    from zennit.attribution import Gradient
    from zennit.composites import COMPOSITES
    from zennit.rules import ZPlus
    from zennit.torchvision import ResNetCanonizer

    body = _two_class_body(model.body)
    # Zennit prepends this map to the composite's: the z+ rule on the (only) dense layer.
    dense = [(nn.Linear, ZPlus())] if dense_rule == "zplus" else []
    composite = COMPOSITES[settings.composite](
        epsilon=settings.epsilon, layer_map=dense, canonizers=[ResNetCanonizer()]
    )

    def relevance(inputs, neuron, score):
        seed = F.one_hot(neuron, 2).to(inputs.dtype) * score[:, None]
        with Gradient(model=body, composite=composite) as attributor:
            _, pixels = attributor(inputs, attr_output=seed)
        return pixels.sum(1)

    return relevance


def _decided_neuron(sign: torch.Tensor) -> torch.Tensor:
    """Index of the decided class's neuron in the two-class head: 0 stretchy, 1 peaky."""
    return (sign < 0).long()


def _lrp(model, settings: LrpSettings, context: _Context) -> Explainer:
    relevance = _lrp_relevance(model, settings, context, dense_rule="composite")

    def explain(x, sign):
        inputs, logit = _body_input(model, x)
        # started with the decided neuron's value, |logit|
        return relevance(inputs, _decided_neuron(sign), sign * logit)

    return explain


def _contrastive_lrp(model, settings: LrpSettings, context: _Context) -> Explainer:
    """Contrastive LRP (Gu, Yang, Tresp, ACCV 2018) for the single-logit model.

    The paper explains class ``j`` against a dual virtual class: all other classes
    (CLRP1) or the class with the negated weights ``-W_j`` (CLRP2). It propagates the same
    score ``S_j`` from both, normalizes each map to unit sum and keeps
    ``max(0, R_j - R_dual)``. For one logit both duals are the same neuron: the other
    class of the two-class head (:func:`_two_class_body`), whose weights are the decided
    neuron's negated.

    The dense layer must use the z+ rule, as the authors' code does: under LRP-epsilon
    the decided neuron gives each feature ``h_i (s w_i) / (s z) * S = h_i w_i S / z``, and
    the dual neuron, with negated weights and value, ``h_i (-s w_i) / (-s z) * S``: the
    same numbers, so ``R_j - R_dual`` would be zero everywhere (and started from its own
    value ``-|z|`` instead, the dual map would be ``-R_j``: plain LRP doubled). Under
    z+ the decided neuron's score flows through the features that raise its evidence
    (``s w_i h_i > 0``) and the dual's through those that raise the other class's
    (``s w_i h_i < 0``), so the two maps differ and their difference shows what speaks for
    the decided class more than for the other.

    The map is ``|z| * max(0, R_j / sum R_j - R_dual / sum R_dual)`` per pixel (channels
    summed first): non-negative, in units of the decided evidence ``|z|``; a map whose sum
    is zero (no feature speaks for that class) counts as zero.
    """
    relevance = _lrp_relevance(model, settings, context, dense_rule="zplus")

    def explain(x, sign):
        inputs, logit = _body_input(model, x)
        score, decided = sign * logit, _decided_neuron(sign)
        for_decided = _unit_sum(relevance(inputs, decided, score))
        for_other = _unit_sum(relevance(inputs, 1 - decided, score))
        return score[:, None, None] * (for_decided - for_other).clamp_min(0.0)

    return explain


def _unit_sum(maps: torch.Tensor) -> torch.Tensor:
    """Each map (N, H, W) divided by its sum; a map summing to zero stays zero."""
    total = maps.sum((1, 2), keepdim=True)
    safe = torch.where(total.abs() > 1e-12, total, torch.ones_like(total))
    return torch.where(total.abs() > 1e-12, maps / safe, torch.zeros_like(maps))


# -- IBA --------------------------------------------------------------------------------------


def _iba(model, settings: IbaSettings, context: _Context) -> Explainer:
    layer = _layer(model, settings.layer, context)
    stats = fit_statistics(model, layer, context.reference())

    def explain(x, sign):
        bits = information_bits(model, layer, x, sign, stats, settings)
        return _upsample(bits.sum(1).float(), context.image_size)

    return explain


# -- the registry ---------------------------------------------------------------------------

_LRP_REFUSAL = (
    "LRP's rules cover ReLU networks of convolutions, batch norms, sums and poolings (the "
    "ResNet), not the invertible network's affine couplings, whose scales multiply the "
    "activations and are bounded by tanh"
)


@dataclass(frozen=True)
class _Method:
    settings: type
    library: str  # the distribution a manifest names with its version
    architectures: tuple[str, ...]
    signed: bool  # whether maps hold negative values
    layered: bool  # whether it works at a layer (Grad-CAM, IBA)
    explainer: Callable[[Any, Any, _Context], Explainer]
    refusal: str = ""  # why it is not defined on the other architectures


_METHODS: dict[str, _Method] = {
    "integrated_gradients": _Method(
        settings=IntegratedGradientsSettings, library="captum", architectures=(INVERTIBLE, RESNET),
        signed=True, layered=False, explainer=_integrated_gradients,
    ),
    "smoothgrad": _Method(
        settings=SmoothGradSettings, library="captum", architectures=(INVERTIBLE, RESNET),
        signed=False, layered=False, explainer=_smoothgrad,
    ),
    "grad_cam": _Method(
        settings=GradCamSettings, library="captum", architectures=(INVERTIBLE, RESNET),
        signed=False, layered=True, explainer=_grad_cam,
    ),
    "occlusion": _Method(
        settings=OcclusionSettings, library="captum", architectures=(INVERTIBLE, RESNET),
        signed=True, layered=False, explainer=_occlusion,
    ),
    "lrp": _Method(
        settings=LrpSettings, library="zennit", architectures=(RESNET,),
        signed=True, layered=False, explainer=_lrp, refusal=_LRP_REFUSAL,
    ),
    "contrastive_lrp": _Method(
        settings=LrpSettings, library="zennit", architectures=(RESNET,),
        signed=False, layered=False, explainer=_contrastive_lrp, refusal=_LRP_REFUSAL,
    ),
    "iba": _Method(
        settings=IbaSettings, library="xaistudy", architectures=(INVERTIBLE, RESNET),
        signed=False, layered=True, explainer=_iba,
    ),
}  # fmt: skip

METHODS: tuple[str, ...] = tuple(_METHODS)
SUPPORTED: dict[str, tuple[str, ...]] = {name: m.architectures for name, m in _METHODS.items()}


def _method(name: str) -> _Method:
    if name not in _METHODS:
        raise UserError(f"unknown attribution method {name!r}; allowed are {', '.join(METHODS)}")
    return _METHODS[name]


def architecture(model) -> str:
    """``"resnet"`` when ``model.body`` is a torchvision ResNet, ``"invertible"`` for the
    invertible network; one UserError for anything else."""
    if isinstance(getattr(model, "body", None), ResNet):
        return RESNET
    if isinstance(model, InvertibleClassifier):
        return INVERTIBLE
    raise UserError(
        f"{type(model).__name__} is not a model under study: attribution methods explain "
        "the invertible network (modeling.network.InvertibleClassifier) or a model whose "
        ".body is a torchvision ResNet (modeling.resnet.ResNetClassifier)"
    )


def supports(method: str, model) -> bool:
    """Whether ``method`` is defined for ``model``'s architecture (see :data:`SUPPORTED`)."""
    return architecture(model) in _method(method).architectures


def check_supported(name: str, model_or_architecture) -> None:
    """One UserError when ``name`` is unknown or not defined for a model (or an
    architecture, ``"invertible"``/``"resnet"``, e.g. a config's before training),
    naming the methods allowed for it: what :func:`attribute` refuses, before any work."""
    kind = model_or_architecture
    if not isinstance(kind, str):
        kind = architecture(model_or_architecture)
    _check_architecture(name, _method(name), kind)


def _check_supported(name: str, method: _Method, model) -> None:
    _check_architecture(name, method, architecture(model))


def _check_architecture(name: str, method: _Method, kind: str) -> None:
    if kind not in method.architectures:
        allowed = [m for m in METHODS if kind in SUPPORTED[m]]
        raise UserError(
            f"{name} is not defined for the {kind} model: {method.refusal}; "
            f"methods allowed for it: {', '.join(allowed)}"
        )


def _settings(name: str, method: _Method, settings) -> Any:
    if settings is None:
        return method.settings()
    if not isinstance(settings, method.settings):
        raise UserError(f"{name} takes {method.settings.__name__}, not {type(settings).__name__}")
    return settings


# -- images -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Images:
    """N images as given: N x H x W x 3 uint8, or N x 3 x H x W floats in [0, 1]."""

    data: np.ndarray | torch.Tensor

    @classmethod
    def of(cls, images, what: str) -> _Images:
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
                raise UserError(
                    f"{what} must be N x H x W x 3 uint8 or an N x 3 x H x W float tensor, "
                    f"not an array of {images.dtype} with shape {images.shape}"
                )
        elif isinstance(images, torch.Tensor):
            if not images.is_floating_point() or images.ndim != 4 or images.shape[1] != 3:
                raise UserError(
                    f"{what} must be N x 3 x H x W floats in [0, 1] or an N x H x W x 3 "
                    f"uint8 array, not a tensor of {images.dtype} with shape "
                    f"{tuple(images.shape)}"
                )
            if len(images) and (images.min() < 0 or images.max() > 1):
                raise UserError(f"{what} must hold values in [0, 1]")
        else:
            raise UserError(
                f"{what} must be a numpy array or a torch tensor, not {type(images).__name__}"
            )
        return cls(images)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def size(self) -> tuple[int, int]:
        shape = self.data.shape
        return (shape[1], shape[2]) if isinstance(self.data, np.ndarray) else tuple(shape[2:])

    def batch(self, part: slice, device: torch.device) -> torch.Tensor:
        """Images ``part`` as N x 3 x H x W float32 in [0, 1] on ``device``."""
        if isinstance(self.data, np.ndarray):
            batch = torch.from_numpy(np.array(self.data[part]))  # memmaps are read-only
            return batch.to(device).permute(0, 3, 1, 2).float().div_(255.0)
        return self.data[part].to(device=device, dtype=torch.float32)

    def batches(self, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        for part in batches(len(self), batch_size):
            yield self.batch(part, device)


# -- the entry points -----------------------------------------------------------------------


def _check_device(model, device: torch.device) -> None:
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device.type != device.type:
        raise UserError(
            f"the model is on {parameter.device} but device is {device}: "
            "load it on that device (or pass the model's own)"
        )


@contextmanager
def _evaluating(model):
    """The model in eval mode inside (batch norms use their statistics, the flow adds no
    dequantization noise), its former mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def decided_sign(model, x: torch.Tensor) -> torch.Tensor:
    """(N,) +1 where the model decides stretchy (logit > 0), -1 where it decides peaky."""
    with torch.no_grad():
        logit = model(x).logit
    return torch.where(logit > 0, 1.0, -1.0).to(logit.dtype)


def attribute(
    method: str,
    model,
    images: np.ndarray | torch.Tensor,
    device: torch.device,
    settings: Settings | None = None,
    batch_size: int = 32,
    *,
    reference: np.ndarray | torch.Tensor | None = None,
    progress: bool = False,
    other_class: bool = False,
) -> np.ndarray:
    """Maps (N, H, W) float32 of ``method`` for ``model``'s decision on each image, or with
    ``other_class`` for the class it did not decide (the wrong panel of a distinction
    trial: the same method asked about the other animal, ``s`` negated).

    ``images``: N x H x W x 3 uint8, or an N x 3 x H x W float tensor in [0, 1].
    ``settings``: the method's settings dataclass (None: its defaults). ``batch_size``
    images are explained at a time on ``device`` (where the model must be).
    ``reference``: images whose activations give IBA the mean and spread of its noise
    (default: ``images`` themselves; at least 2); other methods ignore it. A map depends
    on its image alone, never on the other images or the batch size (IBA: and on
    ``reference``). The sign convention is in the module docstring.
    """
    spec = _method(method)
    _check_supported(method, spec, model)
    settings = _settings(method, spec, settings)
    source = _Images.of(images, "images")
    reference_images = source if reference is None else _Images.of(reference, "reference")
    _at_least(method, "batch_size", batch_size, 1)
    _check_device(model, device)
    maps = np.zeros((len(source), *source.size), dtype=np.float32)
    if not len(source):
        return maps
    context = _Context(
        method=method,
        device=device,
        batch_size=batch_size,
        image_size=source.size,
        reference=lambda: reference_images.batches(batch_size, device),
    )
    with _evaluating(model):
        explain = spec.explainer(model, settings, context)
        parts = list(batches(len(source), batch_size))
        for part in tqdm(parts, desc=method, unit="batch", disable=not progress):
            x = source.batch(part, device)
            sign = decided_sign(model, x) * (-1.0 if other_class else 1.0)
            maps[part] = explain(x, sign).detach().float().cpu().numpy()
    return maps


@dataclass(frozen=True, kw_only=True)
class MethodInfo(Record):
    """What a bundle manifest records of a method: the library and version that computed
    it, every setting, the layer it works at (absent for input-level methods) and whether
    its maps are signed."""

    json_noun = "attribution method"

    method: str
    library: str
    version: str
    settings: dict[str, Any]
    layer: int | None = key(optional=True)
    signed: bool


def method_info(method: str, settings: Settings | None = None, model=None) -> MethodInfo:
    """:class:`MethodInfo` of ``method`` with ``settings`` (None: the defaults). For
    Grad-CAM and IBA without a layer in the settings, ``model`` resolves its default."""
    spec = _method(method)
    settings = _settings(method, spec, settings)
    layer = None
    if spec.layered:
        layer = settings.layer
        if layer is None and model is not None:
            layer = model.default_concept_layer()
    if spec.library == "xaistudy":
        version = xaistudy.__version__
    else:
        try:
            version = importlib.metadata.version(spec.library)
        except importlib.metadata.PackageNotFoundError as exc:
            raise _not_installed(method, spec.library) from exc
    return MethodInfo(
        method=method,
        library=spec.library,
        version=version,
        settings=asdict(settings),
        layer=layer,
        signed=spec.signed,
    )
