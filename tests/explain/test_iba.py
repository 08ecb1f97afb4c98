"""Information Bottleneck Attribution (explain/iba.py) against its defining properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from resnet_standin import ResNetStandIn, randomize_batch_norms, readout_resnet

from explain.attribution import attribute, decided_sign
from explain.batching import to_tensor
from explain.iba import (
    ActivationStatistics,
    IbaSettings,
    capacity,
    fit_statistics,
    gates,
    information_bits,
    restrict,
    smooth,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def x(test_images) -> torch.Tensor:
    return to_tensor(test_images[:16], CPU)


def models(tiny_model):
    return {"flow": tiny_model, "resnet": randomize_batch_norms(ResNetStandIn()).eval()}


@pytest.mark.parametrize("which", ["flow", "resnet"])
def test_a_bottleneck_that_passes_everything_reproduces_the_logit(tiny_model, x, which):
    model = models(tiny_model)[which]
    layer = model.default_concept_layer()
    with torch.no_grad():
        h = model.activations(x, layer)
        stats = fit_statistics(model, layer, [x])
        lam, one_minus_lam = torch.ones_like(h), torch.zeros_like(h)
        z = restrict(h, lam, one_minus_lam, stats, noise=torch.randn_like(h))
        torch.testing.assert_close(model.logit_from_activations(z, layer), model(x).logit)
        # ... and one that passes nothing carries no trace of the image: the noise alone
        noise = torch.randn_like(h)
        closed = restrict(h, one_minus_lam, lam, stats, noise)
        torch.testing.assert_close(closed, (stats.mean + stats.std * noise).expand_as(h))


def test_the_capacity_is_the_kl_divergence_and_never_negative():
    generator = torch.Generator().manual_seed(0)
    h = torch.randn((2, 3, 4, 4), generator=generator)
    stats = ActivationStatistics(mean=torch.full((3, 4, 4), 0.2), std=torch.full((3, 4, 4), 1.5))
    for alpha_value in (-40.0, -8.0, -1.0, 0.0, 2.0, 5.0, 30.0):
        alpha = torch.full_like(h, alpha_value)
        lam, one_minus_lam = gates(alpha, sigma=0.0)
        nats = capacity(h, lam, one_minus_lam, stats)
        assert torch.isfinite(nats).all() and (nats >= 0).all()
        if 1e-3 < lam[0, 0, 0, 0] < 1 - 1e-6:  # where torch's own KL is accurate
            r = (h.double() - 0.2) / 1.5
            expected = torch.distributions.kl_divergence(
                torch.distributions.Normal(lam * r, one_minus_lam),
                torch.distributions.Normal(torch.zeros_like(r), torch.ones_like(r)),
            )
            torch.testing.assert_close(nats, expected)
    # a closing gate lets less through
    lams = [gates(torch.full_like(h, a), 0.0) for a in (3.0, 0.0, -3.0)]
    totals = [capacity(h, lam, one_minus, stats).sum() for lam, one_minus in lams]
    assert totals[0] > totals[1] > totals[2]


def test_smoothing_keeps_lam_and_its_complement_summing_to_one():
    alpha = torch.randn((1, 2, 5, 5), generator=torch.Generator().manual_seed(1)) * 4
    lam, one_minus_lam = gates(alpha, sigma=1.0)
    torch.testing.assert_close(lam + one_minus_lam, torch.ones_like(lam))
    assert not torch.allclose(lam, torch.sigmoid(alpha.double()))
    torch.testing.assert_close(
        smooth(torch.full((1, 1, 3, 3), 0.3), 1.0), torch.full((1, 1, 3, 3), 0.3)
    )


@pytest.mark.parametrize("which", ["flow", "resnet"])
def test_the_bits_map_is_non_negative_at_input_resolution(tiny_model, x, which):
    maps = attribute("iba", models(tiny_model)[which], x[:4], CPU, reference=x)
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float32
    assert (maps >= 0).all() and maps.max() > 0


def test_channels_the_flow_splits_off_before_its_classifier_get_close_to_zero_bits(tiny_model, x):
    """Stage 1 of the tiny flow splits off half its channels as a latent that the
    classifier (on stage 2) never reads: irrelevant by construction."""
    layer = 1
    assert tiny_model.classifier_stage == 2
    stats = fit_statistics(tiny_model, layer, [x])
    bits = information_bits(tiny_model, layer, x, decided_sign(tiny_model, x), stats, IbaSettings())
    kept, split_off = bits.chunk(2, dim=1)
    assert (bits >= 0).all()
    assert split_off.max() < 0.01
    assert kept.max() > 1.0


def test_a_region_the_model_does_not_read_gets_close_to_zero_bits():
    """The hand-set ResNet reads only its input's top-left quadrant, there only the pixels
    whose row and column are multiples of 8. At stage 3 (8 x 8 cells of 4 x 4 pixels) the
    quadrant is cells 0..3; cells 6 and 7 lie more than twice the smoothing's sigma away."""
    model = readout_resnet(w_red=4.0, w_green=-4.0, quadrant_only=True)
    images = torch.rand((16, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    layer = 3
    stats = fit_statistics(model, layer, [images])
    sign = decided_sign(model, images)
    bits = information_bits(model, layer, images, sign, stats, IbaSettings(layer=layer))
    far = torch.cat([bits[..., 6:, :].flatten(), bits[..., :6, 6:].flatten()])
    assert far.max() < 0.01
    assert bits[..., :4, :4].max() > 1.0
    # at input resolution, the same: almost all bits lie on the quadrant
    maps = attribute("iba", model, images, CPU, IbaSettings(layer=layer))
    assert maps[:, 24:, 24:].sum() < 0.05 * maps[:, :16, :16].sum()


def test_noise_is_the_same_for_every_image_so_a_map_depends_on_its_image_alone(tiny_model, x):
    settings = IbaSettings(steps=3)
    alone = attribute("iba", tiny_model, x[:1], CPU, settings, reference=x)
    among_others = attribute("iba", tiny_model, x[:5], CPU, settings, reference=x, batch_size=5)
    np.testing.assert_allclose(alone[0], among_others[0], rtol=1e-4, atol=1e-6)
