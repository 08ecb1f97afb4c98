"""Training on pairs: scenes and their partners with the class-free factors redrawn, and a
penalty on the gap between the two decisions (``invariance_weight``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from modeling_helpers import (
    run_cli,
    tiny_config,
    tiny_resnet_config,
    with_background,
    write_paired_dataset,
)

from generator.dataset import DatasetFolder
from modeling import load_run
from modeling.training import TrainOptions, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    return write_paired_dataset(tmp_path_factory.mktemp("paired") / "data")


def _train(data, out, config):
    return train(TrainOptions(data=data, out=out, device=CPU, progress=False, config=config))


def background_effect(run_dir, data) -> float:
    """Mean |change of the logit| when only the background of a test image changes."""
    model = load_run(run_dir, "cpu").model
    images = np.asarray(DatasetFolder(data).split("test").images)
    dark, light = (with_background(images, np.full(len(images), v)) for v in (0.1, 0.9))
    with torch.no_grad():
        logits = [
            model.logit(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
            for x in (dark, light)
        ]
    return float((logits[0] - logits[1]).abs().mean())


def test_the_pair_penalty_makes_the_model_ignore_what_the_pairs_redraw(paired, tmp_path):
    config = tiny_config(epochs=8, augment_flip=False)
    _train(paired, tmp_path / "plain", config)
    _train(paired, tmp_path / "pairs", dataclasses.replace(config, invariance_weight=1.0))
    plain, pairs = (background_effect(tmp_path / name, paired) for name in ("plain", "pairs"))
    assert plain > 1.0  # without pairs the model reads the background it was given
    assert pairs < plain / 3
    metrics = pd.read_csv(tmp_path / "pairs" / "metrics.csv")
    assert "train_pair_gap" in metrics
    assert load_run(tmp_path / "pairs", "cpu").card.accuracy["test"] >= 0.8  # the arms remain


@pytest.mark.parametrize("fraction", [1.0, 0.3])
def test_partners_are_taken_row_for_row(tmp_path, fraction):
    # Partners identical to their scenes, nothing drawn per image (a ResNet: no
    # dequantization noise; no augmentation): the gap is zero only if each scene meets
    # its own partner.
    identical = write_paired_dataset(tmp_path / "identical", redraw=False)
    config = tiny_resnet_config(
        epochs=1, augment_flip=False, invariance_weight=1.0, pair_fraction=fraction
    )
    _train(identical, tmp_path / "run", config)
    gap = pd.read_csv(tmp_path / "run" / "metrics.csv")["train_pair_gap"]
    assert gap.iloc[0] == pytest.approx(0.0, abs=1e-6)


def test_a_pair_config_needs_a_dataset_with_pairs(tiny_dataset, tmp_path, tiny_toml):
    tiny_toml.write_text(tiny_toml.read_text() + "invariance_weight = 1.0\n")
    result = run_cli("--data", tiny_dataset, "--out", tmp_path / "run", "--config", tiny_toml)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "has no 'train_pairs' split: generate it with --train-pairs" in result.output
