"""``xaistudy train``: run folder, model card, exact resume, and clear errors."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from modeling_helpers import run_cli, tiny_config, write_dataset

from generator.dataset import DatasetFolder
from modeling import load_run
from modeling import training as training_module
from modeling.card import ModelCard
from modeling.ceiling import ceiling_accuracy
from modeling.checkpoint import run_can_resume, run_is_current
from modeling.configs import CONFIGS, ModelConfig, load_config
from modeling.training import (
    TrainOptions,
    build_training,
    native_bfloat16,
    noisy_labels,
    random_rot90,
    random_shift,
    train,
)
from xaistudy.errors import UserError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def finished_run(tiny_dataset, tmp_path_factory):
    toml = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    from modeling_helpers import TINY_TOML

    toml.write_text(TINY_TOML)
    out = tmp_path_factory.mktemp("runs") / "run"
    result = run_cli(
        "--data", tiny_dataset, "--out", out, "--config", toml, "--epochs", 3, "--quiet"
    )
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_complete_run_folder(finished_run, tiny_dataset):
    card = json.loads((finished_run / "model_card.json").read_text())
    assert set(card["accuracy"]) == {"val", "test", "test_intervene_bg_color"}
    assert all(0.0 <= v <= 1.0 for v in card["accuracy"].values())
    assert 0.9 <= card["ceiling_accuracy"] <= 1.0  # arm_position separates the classes
    assert card["dataset"]["fingerprint"] == DatasetFolder(tiny_dataset).fingerprint()
    assert card["config_name"] == "tiny" and card["input_size"] == 16
    assert card["classifier_layer"] == 2 and card["epochs"] == 3
    assert card["bits_per_dim"]["test"] > 0
    assert card["training_seconds"] > 0
    metrics = pd.read_csv(finished_run / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert {"train_loss", "train_bits_per_dim", "train_accuracy", "val_accuracy"} <= set(metrics)


def test_training_learns_the_visible_pattern(finished_run):
    card = json.loads((finished_run / "model_card.json").read_text())
    assert card["accuracy"]["test"] >= 0.8


def test_load_run_gives_the_trained_model(finished_run, tiny_dataset):
    run = load_run(finished_run, "cpu")
    assert run.config.name == "tiny" and not run.model.training
    data = training_module.load_split_tensors(DatasetFolder(tiny_dataset), "test")
    metrics = training_module.evaluate(run.model, *data, CPU)
    assert metrics["accuracy"] == pytest.approx(run.card.accuracy["test"])


def test_model_card_round_trips_and_a_broken_one_names_the_key(finished_run, tmp_path):
    text = (finished_run / "model_card.json").read_text()
    card = ModelCard.from_json(json.loads(text))
    assert json.dumps(card.to_json(), indent=2, sort_keys=True) + "\n" == text
    assert load_run(finished_run).card == card
    assert card.config == load_run(finished_run).config
    broken = tmp_path / "broken"
    shutil.copytree(finished_run, broken)
    for key, value, message in (
        ("epochs", "three", "epochs must be an integer, not 'three'"),
        ("accuracy", {"val": 0.5}, "accuracy has no 'test' split"),
        ("dataset", {"fingerprint": "x"}, "dataset.path is missing"),
    ):
        data = json.loads(text)
        data[key] = value
        (broken / "model_card.json").write_text(json.dumps(data))
        with pytest.raises(UserError, match=f"model_card.json: invalid model card: {message}$"):
            load_run(broken)


def test_load_run_refuses_an_incomplete_folder(finished_run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(finished_run, partial)
    (partial / "model_card.json").unlink()
    with pytest.raises(UserError, match="not a complete run folder"):
        load_run(partial)


def test_a_run_is_current_only_for_its_config_and_dataset(finished_run, tiny_dataset, tmp_path):
    dataset = DatasetFolder(tiny_dataset)
    other = DatasetFolder(write_dataset(tmp_path / "other", seed=1))
    assert run_is_current(finished_run, dataset, "tiny")
    assert not run_is_current(finished_run, dataset, "cpu-small")
    assert not run_is_current(finished_run, other, "tiny")
    assert not run_is_current(tmp_path / "none", dataset, "tiny")
    assert not run_can_resume(finished_run, dataset, "tiny")  # finished: nothing to resume


def test_an_unfinished_run_can_resume_on_its_config_and_dataset(
    finished_run, tiny_dataset, tmp_path
):
    dataset = DatasetFolder(tiny_dataset)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(finished_run, unfinished)
    (unfinished / "model_card.json").unlink()
    assert not run_is_current(unfinished, dataset, "tiny")
    assert run_can_resume(unfinished, dataset, "tiny")
    assert not run_can_resume(unfinished, dataset, "cpu-small")
    other = DatasetFolder(write_dataset(tmp_path / "other", seed=1))
    assert not run_can_resume(unfinished, other, "tiny")
    (unfinished / "config.json").write_text("{not json")
    assert not run_can_resume(unfinished, dataset, "tiny")


def options(data, out, **kw):
    kw.setdefault("config", tiny_config())
    return TrainOptions(data=data, out=out, device=CPU, progress=False, **kw)


def test_resume_continues_exactly_where_a_stopped_run_ended(tiny_dataset, tmp_path):
    straight = tmp_path / "straight"
    train(options(tiny_dataset, straight, epochs=2))
    stopped = tmp_path / "stopped"
    # --max-minutes so small that the run stops after its first epoch
    first = train(options(tiny_dataset, stopped, epochs=2, max_minutes=1e-9))
    assert first.epochs == 1
    resumed = train(options(tiny_dataset, stopped, resume=True, config=None))
    assert resumed.epochs == 2
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(stopped / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert pd.read_csv(stopped / "metrics.csv")["epoch"].tolist() == [1, 2]


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(
    tiny_dataset, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    train(options(tiny_dataset, out, epochs=1))
    before = (out / "checkpoint.pt").read_bytes()
    real_bce = training_module.F.binary_cross_entropy_with_logits

    def nan_bce(logit, target):
        return real_bce(logit, target) * float("nan")

    monkeypatch.setattr(training_module.F, "binary_cross_entropy_with_logits", nan_bce)
    result = run_cli("--data", tiny_dataset, "--out", out, "--resume", "--epochs", 2, "--quiet")
    assert result.exit_code == 2
    assert "training diverged" in result.output and "after epoch 1 is kept" in result.output
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not (out / "model_card.json").exists()


def test_dataset_without_meta_json_is_refused(tiny_dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    (broken / "meta.json").unlink()
    result = run_cli("--data", broken, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "no meta.json" in result.output and "Traceback" not in result.output


def test_image_size_must_match_the_config(tiny_dataset, tmp_path):
    result = run_cli("--data", tiny_dataset, "--out", tmp_path / "run", "--config", "cpu-small")
    assert result.exit_code == 2
    assert "16 px images but config 'cpu-small' takes 64 px" in result.output


def test_resume_with_another_config_is_refused(finished_run, tiny_dataset, tmp_path, tiny_toml):
    other = tmp_path / "other.toml"
    other.write_text(
        tiny_toml.read_text().replace("coupling_widths = [8, 8, 16]", "coupling_widths = [8, 8, 8]")
    )
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    result = run_cli("--data", tiny_dataset, "--out", copy, "--resume", "--config", other)
    assert result.exit_code == 2
    assert "belongs to config 'tiny'" in result.output


def test_a_used_run_folder_needs_resume(finished_run, tiny_dataset):
    result = run_cli("--data", tiny_dataset, "--out", finished_run)
    assert result.exit_code == 2 and "pass --resume" in result.output


def test_unknown_config_and_bad_toml_keys_are_refused(tmp_path):
    with pytest.raises(UserError, match="unknown config 'huge'"):
        load_config("huge")
    bad = tmp_path / "bad.toml"
    bad.write_text("input_size = 16\nblocks_per_stage = [1]\ncoupling_widths = [8]\ndepth = 3\n")
    with pytest.raises(UserError, match="unknown key"):
        load_config(bad)
    mismatched = tmp_path / "mismatched.toml"
    mismatched.write_text("input_size = 16\nblocks_per_stage = [1, 1]\ncoupling_widths = [8]\n")
    with pytest.raises(UserError, match="one width per stage"):
        load_config(mismatched)


def test_toml_config_is_loaded_with_its_file_name(tiny_toml):
    config = load_config(tiny_toml)
    assert config.name == "tiny" and config.blocks_per_stage == (1, 1, 2)
    assert load_config("cpu-small") is CONFIGS["cpu-small"]


def test_a_cpu_recipe_trains_with_its_own_batch_on_a_gpu():
    """The demo's model must be the same recipe whether it trains on a CPU or a GPU; only
    the GPU configs take a larger batch there."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for name in ("cpu-small", "cpu-study", "resnet-cpu"):
        config = CONFIGS[name]
        assert config.batch_size_on(cuda) == config.batch_size_on(cpu) == config.batch_size
    assert CONFIGS["paper"].batch_size_on(cuda) == 64 and CONFIGS["paper"].batch_size_on(cpu) == 16
    assert CONFIGS["resnet-gpu"].batch_size_on(cuda) == 256


def test_label_noise_flips_the_asked_share_deterministically():
    labels = torch.arange(4000) % 2
    noisy = noisy_labels(labels, 0.1, seed=3)
    assert torch.equal(noisy, noisy_labels(labels, 0.1, seed=3))
    assert 0.08 < (noisy != labels).float().mean() < 0.12
    assert torch.equal(noisy_labels(labels, 0.0, seed=3), labels)


def test_ceiling_reflects_how_separable_the_attributes_are(tmp_path):
    folder = DatasetFolder(write_dataset(tmp_path / "d", counts={"train": 200, "test": 100}))
    scores = ceiling_accuracy(folder)
    assert scores["ceiling"] == max(scores["logistic_regression"], scores["gradient_boosting"])
    assert scores["ceiling"] >= 0.95


def test_rot90_augmentation_turns_each_image_by_a_multiple_of_90_degrees():
    images = torch.rand(32, 3, 8, 8)
    turned = random_rot90(images, torch.Generator().manual_seed(0))
    turns = []
    for original, result in zip(images, turned, strict=True):
        matches = [k for k in range(4) if torch.equal(result, original.rot90(k, dims=(-2, -1)))]
        assert len(matches) == 1
        turns.append(matches[0])
    assert set(turns) == {0, 1, 2, 3}


def test_shift_augmentation_moves_images_by_at_most_the_asked_pixels():
    images = torch.zeros(16, 1, 12, 12)
    images[:, :, 5, 5] = 1.0  # one bright pixel away from the edges
    shifted = random_shift(images, 2, torch.Generator().manual_seed(1))
    assert shifted.shape == images.shape
    positions = [divmod(int(image.flatten().argmax()), 12) for image in shifted]
    assert all(3 <= row <= 7 and 3 <= col <= 7 for row, col in positions)
    assert len(set(positions)) > 1
    with pytest.raises(UserError, match="augment_shift"):
        ModelConfig(
            name="bad",
            input_size=16,
            blocks_per_stage=(1,),
            coupling_widths=(8,),
            augment_shift=8,
        )


@pytest.mark.parametrize("allowed", [True, False])
def test_mixed_precision_follows_the_config_and_the_hardware(allowed):
    config = tiny_config(mixed_precision=allowed)
    model, optimizer = build_training(config, 0, CPU)
    dtypes = {m.amp_dtype for m in model.modules() if hasattr(m, "amp_dtype")}
    expected = torch.bfloat16 if allowed and native_bfloat16(CPU) else None
    assert dtypes == {expected}
    assert optimizer.defaults["fused"] is True
    # every parameter is trained: flow and classifier
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.parameters()}
