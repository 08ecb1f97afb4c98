"""The ResNet under study: a genuine torchvision ResNet, the flow's explanation interface,
and configs that keep the two architectures' settings apart."""

from __future__ import annotations

import pytest
import torch
from modeling_helpers import randomized_model, tiny_resnet_config
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, ResNet

from modeling import build_model
from modeling.configs import CONFIGS, ModelConfig, load_config
from modeling.resnet import ResNetClassifier
from xaistudy.errors import UserError


def test_body_is_a_torchvision_resnet18_layout_with_one_output():
    model = build_model(tiny_resnet_config(resnet_width=8))
    body = model.body
    assert isinstance(model, ResNetClassifier) and isinstance(body, ResNet)
    layers = [body.layer1, body.layer2, body.layer3, body.layer4]
    assert [len(layer) for layer in layers] == [2, 2, 2, 2]
    assert all(isinstance(block, BasicBlock) for layer in layers for block in layer)
    assert [layer[0].conv1.out_channels for layer in layers] == [8, 16, 32, 64]
    assert body.fc.out_features == 1 and model.head_shape == (64,)


def test_resnet_gpu_is_torchvision_resnet18_itself():
    ours = build_model(CONFIGS["resnet-gpu"]).body.state_dict()
    reference = resnet18(weights=None, num_classes=1).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in reference.items()}


@pytest.mark.parametrize("name", ["resnet-cpu", "resnet-gpu"])
def test_layer3_is_the_8x8_default_concept_layer(name):
    config = CONFIGS[name]
    model = build_model(config).eval()
    x = torch.rand(1, 3, config.input_size, config.input_size)
    with torch.no_grad():
        sizes = [model.activations(x, layer).shape[-1] for layer in range(model.num_stages)]
    assert sizes == [32, 16, 8, 4]
    assert model.default_concept_layer() == 2 and model.num_stages == 4


@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_activations_and_logit_from_activations_compose_to_the_logit(layer):
    model = randomized_model(tiny_resnet_config(), seed=3)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    h = model.activations(x, layer).detach().requires_grad_(True)
    assert h.shape[1] == 8 * 2**layer
    logit = model.logit_from_activations(h, layer)
    with torch.no_grad():
        assert torch.equal(logit, model(x).logit)
        assert torch.equal(model.logit(x), model(x).logit)
    logit.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0


def test_evaluation_runs_in_float32_whatever_training_uses():
    model = randomized_model(tiny_resnet_config(), seed=2)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        reference = model(x).logit
        model.set_mixed_precision(torch.bfloat16)
        assert torch.equal(model(x).logit, reference)
        assert model(x).logit.dtype == torch.float32


def test_a_layer_out_of_range_and_a_wrong_image_size_are_refused():
    model = build_model(CONFIGS["resnet-cpu"]).eval()
    with pytest.raises(ValueError, match=r"expected images \(N, 3, 64, 64\), got \(1, 3, 32, 32\)"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="layer must be in 0..3"):
        model.activations(torch.rand(1, 3, 64, 64), 4)


@pytest.mark.parametrize("size", [8, 40, 100, 144])
def test_an_input_size_the_resnet_cannot_take_is_a_clear_error(size):
    with pytest.raises(UserError, match=f"input_size {size} does not suit the resnet: allowed"):
        tiny_resnet_config(input_size=size)


def test_a_config_mixing_the_architectures_names_the_field(tmp_path):
    mixed = tmp_path / "mixed.toml"
    mixed.write_text('architecture = "resnet"\ninput_size = 64\ncoupling_widths = [8, 8]\n')
    with pytest.raises(
        UserError,
        match="config 'mixed': coupling_widths is a setting of the invertible architecture, "
        "not of 'resnet'; remove it",
    ):
        load_config(mixed)
    flow = tmp_path / "flow.toml"
    flow.write_text(
        "input_size = 16\nblocks_per_stage = [1]\ncoupling_widths = [8]\nresnet_width = 8\n"
    )
    with pytest.raises(UserError, match="resnet_width is a setting of the resnet architecture"):
        load_config(flow)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('architecture = "vit"\ninput_size = 64\n')
    with pytest.raises(UserError, match="architecture 'vit' is unknown; allowed are invertible"):
        load_config(unknown)


def test_a_flow_config_still_needs_its_stages():
    with pytest.raises(UserError, match="missing key\\(s\\) blocks_per_stage, coupling_widths"):
        ModelConfig.from_dict({"name": "flow", "input_size": 16})


def test_resnet_toml_gets_its_defaults_and_round_trips(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('architecture = "resnet"\ninput_size = 64\n')
    config = load_config(path)
    assert config.resnet_width == 64 and config.blocks_per_stage is None
    data = config.to_dict()
    assert "coupling_widths" not in data and data["architecture"] == "resnet"
    assert ModelConfig.from_dict(data) == config
