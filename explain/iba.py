"""Information Bottleneck Attribution, per sample (Schulz, Sixt, Tombari, Landgraf:
"Restricting the Flow: Information Bottlenecks for Attribution", ICLR 2020).

At a layer with activations ``R`` (C, h, w) the bottleneck replaces ``R`` by

    Z = lam * R + (1 - lam) * eps,    eps ~ N(mu, sigma^2),

where ``mu`` and ``sigma`` (C, h, w) are the activations' mean and spread over reference
images, and ``lam = sigmoid(alpha)`` in (0, 1) per element, smoothed over positions by a
Gaussian. ``lam = 1`` passes ``R`` unchanged; ``lam = 0`` replaces it by noise that carries
no information about the image. For each image ``alpha`` is fitted by Adam to

    L = CE(decided class | Z) + beta * mean over elements of D_KL(P(Z | R) || N(mu, sigma^2)),

so that the decision survives while as little information as possible passes. The
attribution is the KL divergence of each element (an upper bound on the information it
lets through), in bits, summed over channels: 0 where the bottleneck closed, many bits
where the model needed the activations.

For a single-logit model the cross-entropy of the decided class is ``softplus(-s * logit)``
with ``s = +1`` when the model decided stretchy (logit > 0) and ``-1`` otherwise.

Written from the paper (no maintained package is on the registries); the defaults are the
paper's: beta 10, 10 Adam steps at learning rate 1, 10 noise samples per step, alpha
starting at 5 (lam = 0.993: nearly everything passes), Gaussian smoothing with sigma 1.
Only ``model.activations(x, layer)`` and ``model.logit_from_activations(h, layer)`` are
used, so it works on every model under study.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xaistudy.errors import UserError

# Elements that never vary over the reference images still get this much noise, so that
# their information stays finite (the paper's implementation does the same).
MIN_STD = 0.01
# Below this lam, -lam - log(1 - lam) cancels to rounding noise; its series is exact there.
SERIES_BELOW = 1e-3


@dataclass(frozen=True)
class IbaSettings:
    """``layer``: where the bottleneck sits (None: the model's default concept layer);
    ``beta``: weight of the information term; ``steps``, ``lr``: Adam's fit of alpha per
    image; ``samples``: noise draws per step; ``init_alpha``: alpha's start (5: lam 0.993);
    ``smooth_sigma``: the Gaussian smoothing of lam over positions, in layer cells (0: none);
    ``seed``: the noise draws (the same for every image, so a map depends on its image
    alone)."""

    layer: int | None = None
    beta: float = 10.0
    steps: int = 10
    lr: float = 1.0
    samples: int = 10
    init_alpha: float = 5.0
    smooth_sigma: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "samples"):
            if getattr(self, name) < 1:
                raise UserError(f"iba {name} must be at least 1, not {getattr(self, name)}")
        for name in ("beta", "smooth_sigma"):
            if getattr(self, name) < 0:
                raise UserError(f"iba {name} must be 0 or more, not {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"iba lr must be positive, not {self.lr}")


@dataclass(frozen=True)
class ActivationStatistics:
    """Mean and spread (C, h, w) of a layer's activations over reference images; the
    spread is at least :data:`MIN_STD`."""

    mean: torch.Tensor
    std: torch.Tensor


@torch.no_grad()
def fit_statistics(model, layer: int, images: Iterable[torch.Tensor]) -> ActivationStatistics:
    """The statistics of ``model.activations(x, layer)`` over batches ``images`` (B, 3, S, S)."""
    count, total, squares = 0, None, None
    for x in images:
        h = model.activations(x, layer).double()
        batch_total, batch_squares = h.sum(0), h.pow(2).sum(0)
        total = batch_total if total is None else total + batch_total
        squares = batch_squares if squares is None else squares + batch_squares
        count += len(h)
    if count < 2:
        raise UserError(
            "iba estimates the spread of the layer's activations over reference images: "
            f"it needs at least 2, got {count}"
        )
    mean = total / count
    variance = ((squares - count * mean.pow(2)) / (count - 1)).clamp_min(0.0)
    return ActivationStatistics(mean.float(), variance.sqrt().clamp_min(MIN_STD).float())


def smooth(values: torch.Tensor, sigma: float) -> torch.Tensor:
    """``values`` (N, C, h, w) blurred over positions by a normalized Gaussian (replicated
    borders, so every output is a weighted mean and ``smooth(1 - v) == 1 - smooth(v)``)."""
    if sigma == 0:
        return values
    radius = int(round(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    line = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = torch.outer(line, line)
    kernel = (kernel / kernel.sum())[None, None]
    n, c, h, w = values.shape
    flat = F.pad(values.reshape(n * c, 1, h, w), (radius,) * 4, mode="replicate")
    return F.conv2d(flat, kernel).reshape(n, c, h, w)


def gates(alpha: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lam, 1 - lam)`` in float64 for ``alpha`` (N, C, h, w), both smoothed; ``1 - lam``
    is computed as ``sigmoid(-alpha)`` so that it stays positive where lam rounds to 1."""
    alpha = alpha.double()
    return smooth(torch.sigmoid(alpha), sigma), smooth(torch.sigmoid(-alpha), sigma)


def restrict(
    h: torch.Tensor,
    lam: torch.Tensor,
    one_minus_lam: torch.Tensor,
    stats: ActivationStatistics,
    noise: torch.Tensor,
) -> torch.Tensor:
    """The bottleneck's output ``lam * h + (1 - lam) * (mu + sigma * noise)``, broadcast
    over leading dimensions; ``noise`` is standard normal."""
    lam, one_minus_lam = lam.to(h.dtype), one_minus_lam.to(h.dtype)
    return lam * h + one_minus_lam * (stats.mean + stats.std * noise)


def capacity(
    h: torch.Tensor, lam: torch.Tensor, one_minus_lam: torch.Tensor, stats: ActivationStatistics
) -> torch.Tensor:
    """``D_KL(P(Z | R) || N(mu, sigma^2))`` per element in nats, float64, never negative.

    In units of sigma around mu, ``P(Z | R)`` is ``N(lam r, (1 - lam)^2)`` with
    ``r = (h - mu) / sigma``, and the divergence from ``N(0, 1)`` is
    ``lam^2 (1 + r^2) / 2 + (-lam - log(1 - lam))``; the bracket, which is
    ``lam^2/2 + lam^3/3 + ...``, is summed as its series where it would cancel.
    """
    r = (h.double() - stats.mean.double()) / stats.std.double()
    exact = -lam - torch.log(one_minus_lam)
    series = lam**2 / 2 + lam**3 / 3 + lam**4 / 4 + lam**5 / 5
    tail = torch.where(lam < SERIES_BELOW, series, exact)
    return 0.5 * lam**2 * (1.0 + r**2) + tail


def fit_alpha(
    model,
    layer: int,
    h: torch.Tensor,
    sign: torch.Tensor,
    stats: ActivationStatistics,
    settings: IbaSettings,
) -> torch.Tensor:
    """alpha (N, C, h, w) fitted for the activations ``h`` (N, C, h, w) of N images whose
    decided class has sign ``sign`` (N,) (+1 stretchy, -1 peaky).

    The images are fitted together but independently: the loss is a sum over images, and
    Adam scales each element's step by its own gradient history.
    """
    h = h.detach()
    alpha = torch.full_like(h, settings.init_alpha, requires_grad=True)
    optimizer = torch.optim.Adam([alpha], lr=settings.lr)
    generator = torch.Generator(device=h.device).manual_seed(settings.seed)
    n, samples = len(h), settings.samples
    for _ in range(settings.steps):
        noise = torch.randn(
            (samples, *h.shape[1:]), generator=generator, device=h.device, dtype=h.dtype
        )
        lam, one_minus_lam = gates(alpha, settings.smooth_sigma)
        z = restrict(h[:, None], lam[:, None], one_minus_lam[:, None], stats, noise[None])
        logits = model.logit_from_activations(z.flatten(0, 1), layer).view(n, samples)
        cross_entropy = F.softplus(-sign[:, None] * logits).mean(1)
        information = capacity(h, lam, one_minus_lam, stats).flatten(1).mean(1)
        loss = (cross_entropy + settings.beta * information).sum()
        # autograd.grad, not backward: the model's own gradients stay untouched.
        alpha.grad = torch.autograd.grad(loss, alpha)[0]
        optimizer.step()
    return alpha.detach()


def information_bits(
    model,
    layer: int,
    x: torch.Tensor,
    sign: torch.Tensor,
    stats: ActivationStatistics,
    settings: IbaSettings,
) -> torch.Tensor:
    """Bits (N, C, h, w) float64 that the fitted bottleneck lets through, per element of
    the layer's activations of images ``x`` (N, 3, S, S)."""
    with torch.no_grad():
        h = model.activations(x, layer)
    alpha = fit_alpha(model, layer, h, sign, stats, settings)
    lam, one_minus_lam = gates(alpha, settings.smooth_sigma)
    return capacity(h, lam, one_minus_lam, stats) / math.log(2.0)
