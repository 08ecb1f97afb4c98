"""The attribution methods (explain/attribution.py) on both kinds of model under study.

The ResNet is a stand-in with the shape of modeling.resnet.ResNetClassifier
(tests/fixtures/resnet_standin.py); the flow is the tiny trained invertible network of
conftest.py. Images are the tiny dataset's 32 px test scenes.
"""

from __future__ import annotations

import importlib.metadata
import sys

import numpy as np
import pytest
import torch
from resnet_standin import ResNetStandIn, randomize_batch_norms, readout_resnet

from explain.attribution import (
    METHODS,
    SUPPORTED,
    GradCamSettings,
    IntegratedGradientsSettings,
    LrpSettings,
    MethodInfo,
    OcclusionSettings,
    SmoothGradSettings,
    architecture,
    attribute,
    method_info,
    supports,
)
from explain.batching import to_tensor
from explain.iba import IbaSettings
from xaistudy.errors import UserError

CPU = torch.device("cpu")
SIZE = 32
FLOW_METHODS = ("integrated_gradients", "smoothgrad", "grad_cam", "occlusion", "iba")
# Small settings where a test is about behaviour, not fidelity.
QUICK = {
    "integrated_gradients": IntegratedGradientsSettings(steps=8),
    "smoothgrad": SmoothGradSettings(samples=4),
    "occlusion": OcclusionSettings(window=8, stride=8),
    "iba": IbaSettings(steps=3, samples=2),
}


@pytest.fixture(scope="module")
def images(test_images) -> np.ndarray:
    return test_images[:6]


@pytest.fixture(scope="module")
def resnet(images):
    """The stand-in ResNet with batch norms as after training (their folding leaves biases)
    and its bias set so that it decides stretchy on half of ``images``, peaky on the rest."""
    model = randomize_batch_norms(ResNetStandIn()).eval()
    with torch.no_grad():
        logits = model(to_tensor(images, CPU)).logit
        model.body.fc.bias -= logits.median() + 1e-3
    return model


def logits_of(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logit.double()


def test_the_fixtures_decide_both_classes(resnet, tiny_model, images):
    for model in (resnet, tiny_model):
        logits = logits_of(model, to_tensor(images, CPU))
        assert (logits > 0).any() and (logits <= 0).any()


# -- the registry ---------------------------------------------------------------------------


def test_the_table_says_which_methods_each_architecture_allows(resnet, tiny_model):
    assert architecture(resnet) == "resnet" and architecture(tiny_model) == "invertible"
    assert set(SUPPORTED) == set(METHODS)
    assert all(supports(method, resnet) for method in METHODS)
    assert [m for m in METHODS if supports(m, tiny_model)] == list(FLOW_METHODS)


def test_an_unknown_method_is_one_message_listing_the_allowed(resnet, images):
    with pytest.raises(UserError) as error:
        attribute("saliency", resnet, images, CPU)
    assert str(error.value) == (
        "unknown attribution method 'saliency'; allowed are integrated_gradients, smoothgrad, "
        "grad_cam, occlusion, lrp, contrastive_lrp, iba"
    )
    with pytest.raises(UserError, match="unknown attribution method 'saliency'"):
        supports("saliency", resnet)


@pytest.mark.parametrize("method", ["lrp", "contrastive_lrp"])
def test_lrp_is_refused_on_the_flow_naming_the_methods_allowed_for_it(tiny_model, images, method):
    with pytest.raises(UserError) as error:
        attribute(method, tiny_model, images, CPU)
    message = str(error.value)
    assert message.startswith(f"{method} is not defined for the invertible model: ")
    assert "affine couplings" in message
    assert message.endswith(
        "methods allowed for it: integrated_gradients, smoothgrad, grad_cam, occlusion, iba"
    )


def test_a_model_that_is_not_under_study_is_refused(images):
    with pytest.raises(UserError, match="Linear is not a model under study"):
        attribute("grad_cam", torch.nn.Linear(2, 1), images, CPU)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x: attribute("lrp", m, x, CPU, GradCamSettings()),
         "lrp takes LrpSettings, not GradCamSettings"),
        (lambda m, x: attribute("lrp", m, x.astype(np.float32), CPU),
         "images must be N x H x W x 3 uint8 or an N x 3 x H x W float tensor, not an array "
         "of float32 with shape (6, 32, 32, 3)"),
        (lambda m, x: attribute("lrp", m, torch.full((1, 3, 32, 32), 2.0), CPU),
         "images must hold values in [0, 1]"),
        (lambda m, x: attribute("grad_cam", m, x, CPU, GradCamSettings(layer=9)),
         "grad_cam layer 9 does not fit this model"),
        (lambda m, x: attribute("occlusion", m, x, CPU, OcclusionSettings(window=8, stride=5)),
         "occlusion windows of 8 px moved by 5 px do not tile 32 px images"),
        (lambda m, x: attribute("iba", m, x[:1], CPU),
         "iba estimates the spread of the layer's activations over reference images: "
         "it needs at least 2, got 1"),
        (lambda m, x: LrpSettings(composite="epsilon_gamma_box"),
         "unknown LRP composite 'epsilon_gamma_box'; allowed are epsilon_plus_flat, "
         "epsilon_plus, epsilon_alpha2_beta1_flat, epsilon_alpha2_beta1"),
        (lambda m, x: SmoothGradSettings(samples=0), "smoothgrad samples must be at least 1"),
        (lambda m, x: IbaSettings(lr=0), "iba lr must be positive, not 0"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_message(resnet, images, call, message):
    with pytest.raises(UserError) as error:
        call(resnet, images)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(("method", "module"), [("grad_cam", "captum.attr"), ("lrp", "zennit")])
def test_a_missing_library_is_one_message_saying_what_to_install(
    resnet, images, monkeypatch, method, module
):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    package = module.split(".")[0]
    pin = {"captum": "captum==0.9.0", "zennit": "zennit==0.5.1"}[package]
    with pytest.raises(UserError) as error:
        attribute(method, resnet, images, CPU)
    assert str(error.value) == (
        f"{method} needs the {package} package, which is not installed: pip install {pin}"
    )


def test_method_info_names_library_version_settings_and_layer(resnet):
    info = method_info("grad_cam", model=resnet)
    assert (info.library, info.layer, info.signed) == ("captum", 4, False)
    assert info.version == importlib.metadata.version("captum")
    lrp = method_info("lrp", LrpSettings(epsilon=0.01))
    assert (lrp.library, lrp.layer, lrp.settings) == (
        "zennit",
        None,
        {"composite": "epsilon_plus_flat", "epsilon": 0.01},
    )
    iba = method_info("iba", IbaSettings(layer=2))
    assert (iba.library, iba.layer, iba.settings["beta"]) == ("xaistudy", 2, 10.0)
    assert MethodInfo.from_json(iba.to_json()) == iba


# -- maps: shapes, batches, the model left as it was -------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_maps_are_float32_at_input_resolution_whatever_the_batching(resnet, images, method):
    settings = QUICK.get(method)
    whole = attribute(method, resnet, images, CPU, settings, batch_size=len(images))
    assert whole.shape == (len(images), SIZE, SIZE) and whole.dtype == np.float32
    assert np.isfinite(whole).all() and np.abs(whole).max() > 0
    # the same up to float32 rounding, which batched convolutions order differently
    close = {"rtol": 1e-3, "atol": 1e-4 * np.abs(whole).max()}
    in_twos = attribute(method, resnet, images, CPU, settings, batch_size=2)
    np.testing.assert_allclose(in_twos, whole, **close)
    as_tensor = attribute(method, resnet, to_tensor(images, CPU), CPU, settings, batch_size=3)
    np.testing.assert_allclose(as_tensor, whole, **close)
    # each map is the map of its own image: maps differ between images
    assert not np.allclose(whole[0], whole[1])


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_every_method_allowed_for_the_flow_explains_it(tiny_model, images, method):
    maps = attribute(method, tiny_model, images, CPU, QUICK.get(method), batch_size=4)
    assert maps.shape == (len(images), SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and np.abs(maps).max() > 0


def test_no_images_give_no_maps(resnet, images):
    assert attribute("lrp", resnet, images[:0], CPU).shape == (0, SIZE, SIZE)


@pytest.mark.parametrize("method", METHODS)
def test_the_maps_explain_the_decision_so_a_negated_model_gets_the_same(images, method):
    """Positive is evidence for the decided class: a model whose logit is negated decides
    the other class everywhere with the same evidence, and is explained by the same maps."""
    model = randomize_batch_norms(ResNetStandIn(seed=1)).eval()
    negated = randomize_batch_norms(ResNetStandIn(seed=1)).eval()
    with torch.no_grad():
        negated.body.fc.weight.neg_()
        negated.body.fc.bias.neg_()
    x = to_tensor(images[:3], CPU)
    assert torch.allclose(logits_of(negated, x), -logits_of(model, x))
    maps = attribute(method, model, x, CPU, QUICK.get(method))
    np.testing.assert_allclose(
        attribute(method, negated, x, CPU, QUICK.get(method)),
        maps,
        rtol=1e-3,
        atol=1e-4 * np.abs(maps).max(),
    )


def test_the_model_is_left_as_it_was(images):
    model = randomize_batch_norms(ResNetStandIn()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for method in METHODS:
        attribute(method, model, images[:2], CPU, QUICK.get(method))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- what each method promises ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["resnet", "flow"])
def test_integrated_gradients_sum_to_the_decided_evidence_gained_over_the_baseline(
    resnet, tiny_model, images, which
):
    model = {"resnet": resnet, "flow": tiny_model}[which]
    x = to_tensor(images, CPU)
    settings = IntegratedGradientsSettings(steps=64, baseline=0.25)
    maps = attribute("integrated_gradients", model, x, CPU, settings)
    logits = logits_of(model, x)
    sign = torch.where(logits > 0, 1.0, -1.0).double()
    gained = sign * (logits - logits_of(model, torch.full_like(x, 0.25)))
    np.testing.assert_allclose(
        maps.sum((1, 2)), gained.numpy(), rtol=0.01, atol=0.01 * gained.abs().max().item()
    )


def test_smoothgrad_is_deterministic_under_its_seed(resnet, images):
    maps = [
        attribute("smoothgrad", resnet, images[:2], CPU, SmoothGradSettings(samples=8, seed=seed))
        for seed in (0, 0, 1)
    ]
    np.testing.assert_array_equal(maps[0], maps[1])
    assert not np.allclose(maps[0], maps[2])
    assert (maps[0] >= 0).all()


def outside(maps: np.ndarray, margin: int) -> np.ndarray:
    """The maps' values farther than ``margin`` pixels from the top-left quadrant."""
    half = SIZE // 2 + margin
    return np.concatenate([maps[:, half:, :].ravel(), maps[:, :half, half:].ravel()])


@pytest.mark.parametrize(
    ("method", "settings", "margin"),
    [
        # windows that reach into the quadrant are the only ones that change the logit
        ("occlusion", OcclusionSettings(), OcclusionSettings().window),
        # stage 1's activations see 3 pixels around them (three 3 x 3 convolutions)
        ("grad_cam", GradCamSettings(layer=1), 3),
    ],
)
def test_a_model_that_reads_one_quadrant_gets_no_relevance_elsewhere(
    images, method, settings, margin
):
    model = ResNetStandIn(quadrant_only=True).eval()
    maps = attribute(method, model, images, CPU, settings)
    quadrant = np.abs(maps[:, : SIZE // 2, : SIZE // 2])
    assert quadrant.max() > 0
    assert np.abs(outside(maps, margin)).max() <= 1e-6 * quadrant.max()


def test_lrp_conserves_the_relevance_of_the_decided_class(images):
    """Every rule of EpsilonPlusFlat passes on what it receives, except what biases
    absorb: with batch norms as initialized (no biases after folding) the map sums to the
    decided neuron's value less the dense layer's bias, ``|z| - s * b``; with trained-like
    batch norms their biases absorb part of it (here up to 20 %)."""
    for model, tolerance in (
        (ResNetStandIn(seed=2).eval(), 1e-3),
        (randomize_batch_norms(ResNetStandIn(seed=2), seed=2).eval(), 0.2),
    ):
        with torch.no_grad():
            model.body.fc.bias.fill_(0.05)
        x = to_tensor(images, CPU)
        logits = logits_of(model, x)
        sign = torch.where(logits > 0, 1.0, -1.0).double()
        entering = (logits.abs() - sign * 0.05).numpy()
        totals = attribute("lrp", model, x, CPU).sum((1, 2))
        np.testing.assert_allclose(totals, entering, rtol=tolerance)


def hand_checkable_image(red: float, green: float) -> torch.Tensor:
    """Left third (columns 0..11) red at ``red``, the rest green at ``green``; every other
    channel value is 0.5, which the stand-in normalizes to 0."""
    x = torch.full((1, 3, SIZE, SIZE), 0.5)
    x[0, 0, :, :12] = red
    x[0, 1, :, 12:] = green
    return x


@pytest.mark.parametrize(
    ("red", "green", "decided", "h_for", "h_against"),
    [
        # red 1.0 -> 2 over 8 of the 16 read pixels: h_red = 1.0; green 0.75 -> h_green = 0.5
        (1.0, 0.75, "stretchy", "left", "right"),
        # red 0.75 -> h_red = 0.5, green 1.0 -> h_green = 1.0: peaky, evidence on the right
        (0.75, 1.0, "peaky", "right", "left"),
    ],
)
def test_contrastive_lrp_keeps_the_evidence_for_the_decided_class_over_the_other(
    red, green, decided, h_for, h_against
):
    """The hand-set ResNet's logit is ``h_red - h_green``: red speaks for stretchy, green
    for peaky. Plain LRP gives the red region ``+h_red`` and the green one ``-h_green``
    (times the decided sign); contrastive LRP puts all of the decided evidence ``|z|`` on
    the region that speaks for the decided class and nothing on the other, and is no
    rescaled copy of plain LRP."""
    model = readout_resnet(w_red=1.0, w_green=-1.0)
    x = hand_checkable_image(red, green)
    z = logits_of(model, x).item()
    h_red, h_green = (red - 0.5) / 0.25 / 2, (green - 0.5) / 0.25 / 2
    assert z == pytest.approx(h_red - h_green, rel=1e-3)
    assert (z > 0) == (decided == "stretchy")
    s = 1.0 if z > 0 else -1.0

    def regions(maps):
        return {"left": maps[0, :, :12].sum(), "right": maps[0, :, 12:].sum()}

    lrp = regions(attribute("lrp", model, x, CPU))
    assert lrp["left"] == pytest.approx(s * h_red, rel=1e-3)
    assert lrp["right"] == pytest.approx(-s * h_green, rel=1e-3)

    contrastive = attribute("contrastive_lrp", model, x, CPU)
    assert (contrastive >= 0).all()
    assert regions(contrastive)[h_for] == pytest.approx(abs(z), rel=1e-3)
    assert regions(contrastive)[h_against] == 0.0


@pytest.mark.parametrize(
    "method", ["integrated_gradients", "smoothgrad", "grad_cam", "occlusion", "lrp",
               "contrastive_lrp", "iba"],
)  # fmt: skip
def test_every_method_explains_the_resnet_under_study(images, method):
    """The real modeling.resnet.ResNetClassifier, not a stand-in: every method runs on it
    and gives finite, image-specific maps at input resolution."""
    from modeling.architectures import build_model
    from modeling.configs import ModelConfig

    config = ModelConfig(name="tiny-resnet", architecture="resnet", input_size=SIZE,
                         resnet_width=8)  # fmt: skip
    model = build_model(config, seed=0).eval()
    assert supports(method, model)
    maps = attribute(method, model, images, CPU, QUICK.get(method), batch_size=4)
    assert maps.shape == (len(images), SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and not np.allclose(maps[0], maps[1])


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_linear_methods_give_the_other_class_the_negated_map(resnet, images, method):
    """A distinction trial's wrong panel is the map for the class the model did not decide:
    with one logit, that class's evidence is the decided one's negated, and so are the maps
    of methods linear in the explained output."""
    x = to_tensor(images, CPU)
    decided = attribute(method, resnet, x, CPU, QUICK.get(method))
    other = attribute(method, resnet, x, CPU, QUICK.get(method), other_class=True)
    np.testing.assert_allclose(other, -decided, rtol=1e-4, atol=1e-5 * np.abs(decided).max())


def test_grad_cam_shows_the_other_class_where_it_does_not_show_the_decided_one(resnet, images):
    """Grad-CAM keeps the positive part of the weighted activations: the two classes'
    maps are the two signs of one map, so they never light up the same place."""
    x = to_tensor(images, CPU)
    decided = attribute("grad_cam", resnet, x, CPU)
    other = attribute("grad_cam", resnet, x, CPU, other_class=True)
    assert (decided > 0).any() and (other > 0).any()
    # bilinear upsampling blurs the border between the two, so compare at the layer: where
    # one is clearly on, the other is off
    strong = decided > 0.5 * decided.max()
    assert np.all(other[strong] < 0.05 * other.max())


def test_smoothgrad_cannot_tell_the_classes_apart(resnet, images):
    """SmoothGrad shows gradient magnitudes, the same whichever class is explained: a
    distinction trial with it has no right answer (the study refuses it)."""
    x = to_tensor(images[:2], CPU)
    decided = attribute("smoothgrad", resnet, x, CPU, QUICK.get("smoothgrad"))
    other = attribute("smoothgrad", resnet, x, CPU, QUICK.get("smoothgrad"), other_class=True)
    np.testing.assert_allclose(other, decided, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_for_the_other_class_sum_to_its_evidence(resnet, images):
    x = to_tensor(images, CPU)
    settings = IntegratedGradientsSettings(steps=64, baseline=0.25)
    decided = attribute("integrated_gradients", resnet, x, CPU, settings)
    other = attribute("integrated_gradients", resnet, x, CPU, settings, other_class=True)
    # a single logit: the other class's evidence is the decided one's, negated
    np.testing.assert_allclose(other, -decided, rtol=1e-4, atol=1e-6 * np.abs(decided).max())
