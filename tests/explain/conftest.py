"""Shared fixtures: a tiny rendered dataset and a tiny invertible model fitted to it.

Both are session-scoped (each xdist worker builds its own once): 32 px images, a few
hundred scenes, a three-stage flow trained for a few dozen steps, so that the model's
logits spread over both classes like a real model's do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.biases import load_spec
from generator.dataset import DatasetFolder
from generator.generate import generate_dataset
from modeling.configs import ModelConfig
from modeling.network import build_model
from modeling.training import TrainOptions, train

SIZE = 32
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> DatasetFolder:
    out = tmp_path_factory.mktemp("explain") / "data"
    generate_dataset(
        load_spec("iclr2022"),
        out,
        n_train=128,
        n_val=0,
        n_test=96,
        size=SIZE,
        seed=3,
        interventions=True,
        progress=False,
    )
    return DatasetFolder(out)


@pytest.fixture(scope="session")
def tiny_model(tiny_data):
    """A 32 px, three-stage flow fitted for 40 steps on the tiny training split."""
    torch.manual_seed(0)
    config = ModelConfig(
        name="tiny", input_size=SIZE, blocks_per_stage=(1, 1, 1), coupling_widths=(8, 8, 8)
    )
    model = build_model(config, seed=0)
    train = tiny_data.split("train")
    x = torch.from_numpy(np.array(train.images)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(train.params["label"].to_numpy(copy=True)).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(40):
        batch = torch.from_numpy(rng.choice(len(x), size=32, replace=False))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(x[batch], dequant_noise=torch.full_like(x[batch], 0.5)).logit, y[batch]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """A run folder made by the modeling package's own training (one epoch)."""
    out = tmp_path_factory.mktemp("run") / "run"
    config = ModelConfig(
        name="tiny",
        input_size=SIZE,
        blocks_per_stage=(1, 1, 1),
        coupling_widths=(8, 8, 8),
        epochs=1,
        batch_size=64,
    )
    train(TrainOptions(data=tiny_data.root, out=out, device=torch.device("cpu"), config=config,
                       progress=False))  # fmt: skip
    return out


@pytest.fixture(scope="session")
def test_images(tiny_data) -> np.ndarray:
    return np.array(tiny_data.split("test").images)


@pytest.fixture(scope="session")
def test_logits(tiny_model, test_images) -> np.ndarray:
    from explain.batching import batched_logits

    return batched_logits(tiny_model.logit, test_images, torch.device("cpu"))
