"""The flow is exactly invertible, its log-det is right, and the explanation API holds."""

from __future__ import annotations

import pytest
import torch
from modeling_helpers import randomized_model, tiny_config

from generator.dataset import ImageDataset
from modeling.configs import CONFIGS
from modeling.layers import FlowStep, squeeze, unsqueeze
from modeling.network import InvertibleClassifier, build_model, stage_shapes


def test_squeeze_is_a_permutation_undone_by_unsqueeze():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = squeeze(x)
    assert y.shape == (2, 12, 2, 2)
    assert torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values)
    assert torch.equal(unsqueeze(y), x)


def test_flow_step_equals_actnorm_then_1x1_convolution_then_coupling():
    # The step folds ActNorm into the 1x1 convolution; the separate layers are the reference.
    step = FlowStep(8, 16, scale_bound=0.7, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 8, 6, 6, generator=torch.Generator().manual_seed(1))
    step(x, torch.zeros(4))  # data-dependent ActNorm initialization
    with torch.no_grad():
        for p in step.parameters():  # move every parameter off its initial value
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        step.eval()
        y, log_det = step(x, torch.zeros(4))
        h, ref_det = step.actnorm(x, torch.zeros(4))
        h, ref_det = step.invconv(h, ref_det)
        ref, ref_det = step.coupling(h, ref_det)
    assert (y - ref).abs().max() < 1e-5
    assert (log_det - ref_det).abs().max() < 1e-4


def test_inverse_reconstructs_random_images():
    model = randomized_model(tiny_config())
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
        x_rec = model.inverse(out.latents)
    assert x_rec.dtype == torch.float32
    assert (x_rec - x).abs().max() < 1e-4


def test_inverse_reconstructs_dataset_images(tiny_dataset):
    model = randomized_model(tiny_config(), seed=3)
    data = ImageDataset(tiny_dataset, "test")
    x = torch.stack([data[i][0] for i in range(8)])
    with torch.no_grad():
        x_rec = model.decode(model.encode(x))
    assert (x_rec - x).abs().max() < 1e-4


def test_mixed_precision_training_keeps_evaluation_exact():
    model = randomized_model(tiny_config())
    model.set_mixed_precision(torch.bfloat16)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    model.train()
    out = model(x)
    (model.bits_per_dim(out).mean() + out.logit.sum()).backward()
    assert model.classifier_w.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert (model.decode(model.encode(x)) - x).abs().max() < 1e-4


def test_log_det_matches_brute_force_jacobian():
    config = tiny_config(input_size=4, blocks_per_stage=(2, 1), coupling_widths=(4, 4))
    model = randomized_model(config, seed=2, dtype=torch.float64)
    y = torch.rand(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def flat_latents(inp):
        latents, _ = model.flow_forward(inp)
        return torch.cat([z.flatten() for z in latents])

    jacobian = torch.autograd.functional.jacobian(flat_latents, y).reshape(48, 48)
    _, log_det = model.flow_forward(y)
    expected = torch.linalg.slogdet(jacobian).logabsdet
    assert log_det.item() == pytest.approx(expected.item(), abs=1e-8)
    assert abs(expected.item()) > 0.1  # a non-trivial map


def test_output_shapes_and_latent_layout():
    config = tiny_config()
    model = randomized_model(config)
    out = model(torch.rand(5, 3, 16, 16))
    assert out.logit.shape == (5,) and out.log_det.shape == (5,)
    assert [tuple(z.shape[1:]) for z in out.latents] == [(6, 8, 8), (12, 4, 4), (48, 2, 2)]
    assert out.head.shape == (5, 48, 2, 2)
    assert torch.allclose(
        model.logit(torch.zeros(2, 3, 16, 16)), model(torch.zeros(2, 3, 16, 16)).logit
    )


def test_classifier_on_an_intermediate_latent():
    model = randomized_model(tiny_config(classifier_stage=1))
    x = torch.rand(3, 3, 16, 16)
    out = model(x)
    assert out.head.shape == (3, 12, 4, 4)
    w, b = model.classifier_weight()
    assert torch.allclose(out.logit, (out.head * w).flatten(1).sum(1) + b, atol=1e-5)
    assert torch.allclose(model.logit(x), out.logit, atol=1e-5)
    with pytest.raises(ValueError, match="classifier reads stage 1"):
        model.logit_from_activations(model.activations(x, 2), 2)


@pytest.mark.parametrize("pooling", [False, True])
def test_edit_logit_counterfactual_reaches_the_target_logit(pooling):
    model = randomized_model(tiny_config(classifier_pooling=pooling), seed=5)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([-3.0, -0.5, 0.5, 3.0])
    with torch.no_grad():
        enc = model.encode(x)
        edited = model.edit_logit(enc, targets)
        x_cf = model.decode(edited)
        logit_cf = model(x_cf).logit
    assert torch.allclose(edited.logit, targets, atol=1e-5)
    assert (logit_cf - targets).abs().max() < 1e-3
    # only the head moved, and only along w
    for index, (before, after) in enumerate(zip(enc.latents, edited.latents, strict=True)):
        if index != enc.head_index:
            assert torch.equal(before, after)
    w, _ = model.classifier_weight()
    delta = (edited.head - enc.head).flatten(1)
    cosine = torch.nn.functional.cosine_similarity(delta, w.flatten()[None], dim=1)
    assert torch.allclose(cosine.abs(), torch.ones(4), atol=1e-4)


def test_pooled_classifier_shares_one_weight_per_channel():
    model = randomized_model(tiny_config(classifier_pooling=True))
    w, b = model.classifier_weight()
    assert w.shape == model.head_shape
    assert torch.allclose(w, w[:, :1, :1].expand_as(w))
    out = model(torch.rand(2, 3, 16, 16))
    assert torch.allclose(out.logit, (out.head * w).flatten(1).sum(1) + b, atol=1e-5)


def test_with_head_replaces_only_the_head():
    model = randomized_model(tiny_config())
    enc = model.encode(torch.rand(2, 3, 16, 16))
    new = enc.with_head(torch.zeros_like(enc.head))
    assert torch.equal(new.head, torch.zeros_like(enc.head))
    assert new.latents[0] is enc.latents[0]
    assert torch.allclose(new.logit, model.classifier_weight()[1].expand(2))
    with pytest.raises(ValueError, match="head must have shape"):
        enc.with_head(torch.zeros(2, 3))


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_logit_from_activations_matches_and_is_differentiable(layer):
    model = randomized_model(tiny_config(), seed=4)
    x = torch.rand(3, 3, 16, 16)
    h = model.activations(x, layer).detach().requires_grad_(True)
    assert h.shape[1:] == model.stage_shapes[layer]
    logit = model.logit_from_activations(h, layer)
    assert torch.allclose(logit, model.logit(x), atol=1e-5)
    logit.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0


def test_default_concept_layer_is_8x8_at_64px():
    model = build_model(CONFIGS["cpu-small"])
    layer = model.default_concept_layer()
    with torch.no_grad():
        h = model.activations(torch.rand(1, 3, 64, 64), layer)
    assert h.shape[-2:] == (8, 8)


def test_paper_config_reads_a_768_channel_latent():
    config = CONFIGS["paper"]
    assert config.input_size == 128 and config.blocks_per_stage == (32,) * 7
    stages, latents = stage_shapes(config)
    assert latents[config.resolved_classifier_stage] == (768, 1, 1)
    assert stages[2][1:] == (16, 16)


def test_wrong_image_size_is_refused():
    model = InvertibleClassifier(tiny_config())
    with pytest.raises(ValueError, match=r"expected images \(N, 3, 16, 16\)"):
        model(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("pooling", [False, True])
def test_class_conditional_prior_is_a_mixture_whose_log_odds_is_the_logit(pooling):
    config = tiny_config(class_conditional_prior=True, classifier_pooling=pooling)
    model = randomized_model(config, seed=4)
    with torch.no_grad():
        model.classifier_b.zero_()  # the prior's log-odds is <w, h>, the logit without bias
        x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
        out = model(x)
        peaky = model.log_prob(out, torch.zeros(6))
        stretchy = model.log_prob(out, torch.ones(6))
        mixture = model.log_prob(out)
    assert torch.allclose(stretchy - peaky, out.logit, atol=1e-3)
    expected = torch.logaddexp(peaky, stretchy) - torch.log(torch.tensor(2.0))
    assert torch.allclose(mixture, expected, atol=1e-4)
    # The standard-normal prior ignores the label.
    plain = randomized_model(tiny_config(classifier_pooling=pooling), seed=4)
    with torch.no_grad():
        out = plain(x)
        assert torch.equal(plain.log_prob(out, torch.zeros(6)), plain.log_prob(out))
