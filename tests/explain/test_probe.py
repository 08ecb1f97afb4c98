"""The attribute probe: trains on the true scene attributes, is cached, reads them back."""

import json
import shutil

import numpy as np
import pytest
import torch

import explain.probe as probe_module
from explain.probe import (
    CARD_FILE,
    TARGETS,
    ProbeSettings,
    ensure_probe,
    load_probe,
    target_table,
)
from xaistudy.errors import UserError

CPU = torch.device("cpu")
QUICK = ProbeSettings(train_images=128, test_images=96, epochs=12, batch_size=32)


@pytest.fixture(scope="module")
def probe_dir(tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe") / "probe"
    ensure_probe(folder, tiny_data, CPU, QUICK, progress=False)
    return folder


def test_targets_are_the_continuous_attributes_with_yaw_as_sine_and_cosine(tiny_data):
    params = tiny_data.split("test").params
    table = target_table(params)
    assert table.shape == (len(params), len(TARGETS))
    assert "obj_rotation_yaw" not in TARGETS and "position_x" in TARGETS
    yaw = np.arctan2(table[:, TARGETS.index("obj_rotation_yaw_sin")],
                     table[:, TARGETS.index("obj_rotation_yaw_cos")])  # fmt: skip
    np.testing.assert_allclose(yaw, params["obj_rotation_yaw"].to_numpy(), atol=1e-9)


def test_probe_reads_the_background_color_better_than_chance(probe_dir, tiny_data):
    probe = load_probe(probe_dir, CPU)
    card = json.loads((probe_dir / CARD_FILE).read_text())
    assert card["fingerprint"] == tiny_data.fingerprint() and card["image_size"] == 32
    assert set(card["test_r2"]) == set(TARGETS) and card["seconds"] > 0
    # Chance (predicting the mean) has R^2 0; the background fills most of the image.
    assert card["test_r2"]["bg_color"] > 0.5
    test = tiny_data.split("test")
    readings = probe.read(np.asarray(test.images[:40]))
    truth = test.params["bg_color"].to_numpy()[:40]
    assert np.corrcoef(readings["bg_color"], truth)[0, 1] > 0.7
    assert readings["obj_rotation_yaw"].shape == (40,)


def test_cached_probe_is_reused_and_retrained_for_another_dataset(
    probe_dir, tiny_data, monkeypatch
):
    def no_training(*args, **kwargs):
        raise AssertionError("the cached probe should have been used")

    monkeypatch.setattr(probe_module, "train_probe", no_training)
    cached = ensure_probe(probe_dir, tiny_data, CPU, QUICK, progress=False)
    assert cached.card["fingerprint"] == tiny_data.fingerprint()

    # A probe of another dataset (another fingerprint) is retrained and replaced.
    card = json.loads((probe_dir / CARD_FILE).read_text())
    other = probe_dir.with_name("other")
    shutil.copytree(probe_dir, other)
    (other / CARD_FILE).write_text(json.dumps({**card, "fingerprint": "another"}))
    calls = []

    def counting(dataset, device, settings, progress):
        calls.append(dataset.root)
        return load_probe(probe_dir, device)

    monkeypatch.setattr(probe_module, "train_probe", counting)
    retrained = ensure_probe(other, tiny_data, CPU, QUICK, progress=False)
    assert calls == [tiny_data.root]
    assert json.loads((other / CARD_FILE).read_text())["fingerprint"] == tiny_data.fingerprint()
    assert retrained.card["fingerprint"] == tiny_data.fingerprint()
    assert not list(other.parent.glob("*partial*"))


def test_missing_probe_without_a_dataset_says_what_is_needed(tmp_path):
    with pytest.raises(UserError, match="pass --data"):
        ensure_probe(tmp_path / "probe", None, CPU)


def test_probe_refuses_images_of_another_size(probe_dir):
    probe = load_probe(probe_dir, CPU)
    with pytest.raises(UserError, match="reads 32 x 32"):
        probe.read(np.zeros((2, 64, 64, 3), dtype=np.uint8))
