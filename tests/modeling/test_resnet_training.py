"""``xaistudy train`` with a ResNet config: the same run folder, card, resume and errors
as for the flow, and the cards of flow runs written before the ResNet still load."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from modeling_helpers import TINY_RESNET_TOML, TINY_TOML, run_cli, tiny_config, tiny_resnet_config

from generator.dataset import DatasetFolder
from modeling import load_run
from modeling import training as training_module
from modeling.card import ModelCard
from modeling.checkpoint import read_model_card, run_can_resume, run_is_current
from modeling.resnet import ResNetClassifier
from modeling.training import TrainOptions, build_training, native_bfloat16, train
from xaistudy.errors import UserError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def resnet_run(tiny_dataset, tmp_path_factory):
    toml = tmp_path_factory.mktemp("cfg") / "tiny-resnet.toml"
    toml.write_text(TINY_RESNET_TOML)
    out = tmp_path_factory.mktemp("runs") / "resnet"
    result = run_cli("--data", tiny_dataset, "--out", out, "--config", toml, "--quiet")
    assert result.exit_code == 0, result.output
    assert "ResNetClassifier, 8 epochs" in result.output and "bits/dim" not in result.output
    return out


def test_a_resnet_run_writes_a_card_with_the_resnet_meanings(resnet_run, tiny_dataset):
    card = read_model_card(resnet_run)
    assert card.architecture == "resnet" and card.model == "ResNetClassifier"
    assert card.config.resnet_width == 8 and card.config.blocks_per_stage is None
    assert card.bits_per_dim == {}  # no likelihood
    assert (card.num_stages, card.classifier_layer, card.default_concept_layer) == (4, 3, 2)
    assert card.head_shape == (64,)  # the pooled layer4 the fully connected layer reads
    assert set(card.accuracy) == {"val", "test", "test_intervene_bg_color"}
    assert card.epochs == 8 and card.label_noise == 0.0
    assert card.dataset.fingerprint == DatasetFolder(tiny_dataset).fingerprint()
    text = (resnet_run / "model_card.json").read_text()
    assert json.dumps(card.to_json(), indent=2, sort_keys=True) + "\n" == text
    metrics = pd.read_csv(resnet_run / "metrics.csv")
    assert list(metrics["epoch"]) == list(range(1, 9))
    assert {"train_loss", "train_accuracy", "val_accuracy"} <= set(metrics)
    assert not any("bits_per_dim" in column for column in metrics)


def test_a_resnet_run_learns_the_visible_pattern(resnet_run):
    assert read_model_card(resnet_run).accuracy["test"] >= 0.8


def test_load_run_gives_the_trained_resnet_with_the_cards_accuracy(resnet_run, tiny_dataset):
    run = load_run(resnet_run, "cpu")
    assert isinstance(run.model, ResNetClassifier) and not run.model.training
    images, labels = training_module.load_split_tensors(DatasetFolder(tiny_dataset), "test")
    with torch.no_grad():
        logits = run.model(images.float() / 255.0).logit
    accuracy = float(((logits > 0).long() == labels).float().mean())
    assert accuracy == pytest.approx(run.card.accuracy["test"])


def test_a_resnet_run_is_current_and_resumable_like_a_flow_run(resnet_run, tiny_dataset, tmp_path):
    dataset = DatasetFolder(tiny_dataset)
    assert run_is_current(resnet_run, dataset, "tiny-resnet")
    assert not run_is_current(resnet_run, dataset, "resnet-cpu")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(resnet_run, unfinished)
    (unfinished / "model_card.json").unlink()
    assert run_can_resume(unfinished, dataset, "tiny-resnet")
    assert not run_can_resume(unfinished, dataset, "tiny")


def options(data, out, **kw):
    kw.setdefault("config", tiny_resnet_config(label_noise=0.2, augment_shift=2))
    return TrainOptions(data=data, out=out, device=CPU, progress=False, **kw)


def test_resume_continues_a_resnet_exactly_where_it_stopped(tiny_dataset, tmp_path):
    straight = tmp_path / "straight"
    train(options(tiny_dataset, straight, epochs=2))
    stopped = tmp_path / "stopped"
    first = train(options(tiny_dataset, stopped, epochs=2, max_minutes=1e-9))
    assert first.epochs == 1
    resumed = train(options(tiny_dataset, stopped, resume=True, config=None))
    assert resumed.epochs == 2 and resumed.accuracy == read_model_card(straight).accuracy
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(stopped / "checkpoint.pt", weights_only=False)["model"]
    assert any("running_mean" in key for key in a)  # BatchNorm statistics are compared too
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resuming_a_resnet_run_with_a_flow_config_is_refused(resnet_run, tiny_dataset, tmp_path):
    flow = tmp_path / "tiny.toml"
    flow.write_text(TINY_TOML)
    copy = tmp_path / "run"
    shutil.copytree(resnet_run, copy)
    result = run_cli("--data", tiny_dataset, "--out", copy, "--resume", "--config", flow)
    assert result.exit_code == 2 and "belongs to config 'tiny-resnet'" in result.output


def test_a_dataset_of_another_size_than_the_resnet_config_is_refused(tiny_dataset, tmp_path):
    result = run_cli("--data", tiny_dataset, "--out", tmp_path / "run", "--config", "resnet-cpu")
    assert result.exit_code == 2
    assert "16 px images but config 'resnet-cpu' takes 64 px" in result.output
    assert "Traceback" not in result.output


def test_a_mixed_toml_is_one_error_line(tiny_dataset, tmp_path):
    mixed = tmp_path / "mixed.toml"
    mixed.write_text(TINY_RESNET_TOML + "scale_bound = 0.7\n")
    result = run_cli("--data", tiny_dataset, "--out", tmp_path / "run", "--config", mixed)
    assert result.exit_code == 2
    assert result.output.startswith("Error: config 'tiny-resnet': scale_bound is a setting")


@pytest.mark.parametrize("allowed", [True, False])
def test_resnet_training_set_up_follows_the_config_and_the_hardware(allowed):
    model, optimizer = build_training(tiny_resnet_config(mixed_precision=allowed), 0, CPU)
    expected = torch.bfloat16 if allowed and native_bfloat16(CPU) else None
    assert model.amp_dtype == expected
    assert optimizer.defaults["fused"] is True
    assert model.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.parameters()}


def test_a_flow_card_from_before_the_resnet_still_loads(tiny_dataset, tmp_path):
    run = tmp_path / "flow"
    train(TrainOptions(tiny_dataset, run, CPU, config=tiny_config(), epochs=1, progress=False))
    for name in ("model_card.json", "config.json"):  # as written before the ResNet joined
        data = json.loads((run / name).read_text())
        config = data["config"] if name == "model_card.json" else data["model"]
        del config["architecture"]
        data.pop("architecture", None)
        (run / name).write_text(json.dumps(data))
    loaded = load_run(run)
    assert loaded.card.architecture == "invertible" and loaded.config.architecture == "invertible"
    assert loaded.card.config == loaded.config and loaded.card.bits_per_dim["test"] > 0


def test_a_card_whose_model_contradicts_its_architecture_is_refused(resnet_run):
    data = json.loads((resnet_run / "model_card.json").read_text())
    for key, value, message in (
        ("model", "InvertibleClassifier", "model must be 'ResNetClassifier' for the resnet"),
        ("bits_per_dim", {"test": 4.0}, "bits_per_dim must be empty"),
        ("architecture", "invertible", "config.architecture is 'resnet' but the card's"),
        ("architecture", "cnn", "architecture must be one of 'invertible', 'resnet'"),
    ):
        with pytest.raises(UserError, match=f"invalid model card: {message}"):
            ModelCard.from_json({**data, key: value})
