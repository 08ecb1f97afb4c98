"""Dataset generation: folder contents, interventions, seeds, shards and merging."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from generator.attributes import ATTRIBUTES, intervention_split
from generator.biases import load_spec
from generator.dataset import DatasetFolder, ImageDataset
from generator.generate import (
    check_pair_factors,
    dataset_is_current,
    free_factors,
    generate_dataset,
    intervene,
    merge_shards,
    parse_shard,
    plan_splits,
    shard_rows,
)
from xaistudy.errors import UserError
from xaistudy.vocabulary import FACTORS

SIZE = 16
COUNTS = {"n_train": 6, "n_val": 3, "n_test": 5}


def _generate(out, **kwargs):
    options = {"size": SIZE, "seed": 11, "progress": False, "batch_size": 4, **COUNTS}
    options.update(kwargs)
    return generate_dataset(load_spec("iclr2022"), out, **options)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return DatasetFolder(_generate(tmp_path_factory.mktemp("ds") / "full", interventions=True))


def test_folder_has_every_split_with_matching_arrays_and_meta(dataset):
    meta = dataset.meta
    for key in ("preset", "spec", "seed", "size", "interventions", "antialias", "created"):
        assert key in meta
    assert meta["preset"] == "iclr2022" and meta["seed"] == 11 and meta["size"] == SIZE
    assert meta["spec"] == load_spec("iclr2022").to_dict()
    assert meta["interventions"] == list(FACTORS)
    expected = {"train": 6, "val": 3, "test": 5} | {intervention_split(f): 5 for f in FACTORS}
    assert meta["splits"] == expected
    for name, n in expected.items():
        split = dataset.split(name)
        assert split.images.shape == (n, SIZE, SIZE, 3) and split.images.dtype == np.uint8
        assert split.masks.shape == (n, SIZE, SIZE)
        assert {"id", "label", *ATTRIBUTES, "original_id", "intervened"} <= set(split.params)
        assert split.params["id"].is_unique
        assert split.masks.max() <= 8 and split.images.std() > 0
    image, label = ImageDataset(dataset, "train")[0]
    assert tuple(image.shape) == (3, SIZE, SIZE) and int(label) in (0, 1)


def test_a_dataset_is_current_only_for_the_arguments_it_was_made_with(dataset, tmp_path):
    made = {"seed": 11, "size": SIZE, "counts": {"train": 6, "val": 3, "test": 5}}
    assert dataset_is_current(dataset.root, "iclr2022", **made, interventions=True)
    assert not dataset_is_current(dataset.root, "iclr2022", **made, interventions=False)
    assert not dataset_is_current(
        dataset.root, "iclr2022", **made, interventions=True, train_pairs=("bending",)
    )
    assert not dataset_is_current(dataset.root, "unbiased", **made, interventions=True)
    for change in ({"seed": 12}, {"size": 32}, {"counts": {"train": 7, "val": 3, "test": 5}}):
        assert not dataset_is_current(
            dataset.root, "iclr2022", **{**made, **change}, interventions=True
        )
    assert not dataset_is_current(tmp_path / "none", "iclr2022", **made, interventions=True)
    shard = _generate(tmp_path / "shard", n_train=6, n_val=0, n_test=0, shard=(1, 1))
    assert not dataset_is_current(
        shard, "iclr2022", seed=11, size=SIZE, counts={"train": 6}, interventions=False
    )


def test_intervention_splits_change_only_their_factor(dataset):
    test = dataset.split("test").params
    for factor, attributes in FACTORS.items():
        split = dataset.split(intervention_split(factor)).params
        assert (split["original_id"] == test["id"]).all()
        assert (split["intervened"] == factor).all()
        assert not set(split["id"]) & set(test["id"])
        others = [a for a in ATTRIBUTES if a not in attributes] + ["label"]
        pd.testing.assert_frame_equal(split[others], test[others])
        for name in attributes:
            assert (split[name] != test[name]).sum() >= 4, (factor, name)


def test_intervene_api_keeps_rows_and_labels():
    spec = load_spec("iclr2022")
    params = spec.sample(50, np.random.default_rng(0))
    params.insert(0, "id", [f"s{i}" for i in range(50)])
    new = intervene(params, "position", spec, np.random.default_rng(1))
    assert list(new["original_id"]) == list(params["id"])
    assert new["id"].is_unique and not set(new["id"]) & set(params["id"])
    assert (new["label"] == params["label"]).all()
    assert (new["position_x"] != params["position_x"]).all()
    assert (new["position_y"] != params["position_y"]).all()
    with pytest.raises(UserError, match="unknown factor 'legs'"):
        intervene(params, "legs", spec, np.random.default_rng(1))


def test_training_pairs_redraw_only_the_named_factors_of_each_training_scene(tmp_path):
    factors = ("bg_color", "position")
    folder = DatasetFolder(_generate(tmp_path / "paired", train_pairs=factors))
    assert folder.meta["train_pairs"] == list(factors)
    train, pairs = folder.split("train").params, folder.split("train_pairs").params
    assert list(pairs["original_id"]) == list(train["id"])
    assert list(pairs["id"]) == [f"{i}:pair" for i in train["id"]]
    redrawn = ("bg_color", "position_x", "position_y")
    kept = [a for a in ATTRIBUTES if a not in redrawn] + ["label"]
    pd.testing.assert_frame_equal(pairs[kept], train[kept])
    for name in redrawn:
        assert (pairs[name] != train[name]).all(), name
    assert not np.array_equal(folder.split("train_pairs").images, folder.split("train").images)


def test_training_pairs_may_only_redraw_what_does_not_carry_the_class():
    spec = load_spec("iclr2022")
    assert free_factors(spec) == (
        "bg_color", "bending", "obj_rotation_yaw", "obj_rotation_pitch",
        "obj_rotation_roll", "position",
    )  # fmt: skip
    with pytest.raises(UserError, match="obj_color depends on the class in bias spec"):
        check_pair_factors(spec, ["bg_color", "obj_color"])
    with pytest.raises(UserError, match="unknown factor legs"):
        check_pair_factors(spec, ["legs"])
    assert free_factors(load_spec("unbiased"))[0] == "obj_color"  # nothing biased but arms


def test_training_pairs_leave_every_other_split_as_it_was():
    spec = load_spec("iclr2022")
    counts = {"train": 20, "val": 5, "test": 5}
    plain = plan_splits(spec, counts, seed=3, interventions=True)
    paired = plan_splits(spec, counts, seed=3, interventions=True, train_pairs=("bending",))
    assert set(paired) == set(plain) | {"train_pairs"}
    for name, frame in plain.items():
        pd.testing.assert_frame_equal(paired[name], frame)


def test_same_seed_same_scenes_and_splits_do_not_disturb_each_other():
    spec = load_spec("iclr2022")
    counts = {"train": 20, "val": 5, "test": 5}
    a = plan_splits(spec, counts, seed=3, interventions=False)
    b = plan_splits(spec, {**counts, "val": 9}, seed=3, interventions=True)
    c = plan_splits(spec, counts, seed=4, interventions=False)
    pd.testing.assert_frame_equal(a["train"], b["train"])
    pd.testing.assert_frame_equal(a["test"], b["test"])
    assert not a["train"]["arm_position"].equals(c["train"]["arm_position"])


def test_two_shards_merged_equal_the_unsharded_folder(dataset, tmp_path):
    shards = [_generate(tmp_path / f"shard{i}", interventions=True, shard=(i, 2)) for i in (2, 1)]
    assert json.loads((shards[1] / "meta.json").read_text())["shard"] == [1, 2]
    assert DatasetFolder(shards[0]).meta["splits"]["train"] == 3
    merged = DatasetFolder(merge_shards(shards, tmp_path / "merged"))
    assert merged.meta["splits"] == dataset.meta["splits"]
    assert "shard" not in merged.meta
    for name in dataset.splits:
        a, b = dataset.split(name), merged.split(name)
        pd.testing.assert_frame_equal(a.params, b.params)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.masks, b.masks)


def test_merge_refuses_incomplete_or_mismatched_shards(tmp_path):
    one = _generate(tmp_path / "a1", shard=(1, 2))
    with pytest.raises(UserError, match="cover 1..2 exactly once"):
        merge_shards([one], tmp_path / "m")
    other_seed = _generate(tmp_path / "b2", shard=(2, 2), seed=12)
    with pytest.raises(UserError, match="'seed'"):
        merge_shards([one, other_seed], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_shard_rows_cover_every_row_once():
    for n in (0, 1, 7, 100):
        for count in (1, 2, 3, 8):
            rows = [list(range(n))[shard_rows(n, (i, count))] for i in range(1, count + 1)]
            assert sum(rows, []) == list(range(n))
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "x", "1/0"):
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad)


def test_interrupted_generation_leaves_no_folder(tmp_path, monkeypatch):
    import generator.render

    calls = []

    def failing_render(params, **kwargs):
        calls.append(len(params))
        if len(calls) > 1:
            raise RuntimeError("out of memory")
        n = len(params)
        return np.zeros((n, SIZE, SIZE, 3), np.uint8), np.zeros((n, SIZE, SIZE), np.uint8)

    monkeypatch.setattr(generator.render, "render_scenes", failing_render)
    with pytest.raises(RuntimeError):
        _generate(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_png_export_writes_browsable_images(tmp_path):
    from PIL import Image

    out = _generate(tmp_path / "png", n_train=2, n_val=0, n_test=1, png=True)
    pngs = sorted(p.name for p in (out / "train" / "png").iterdir())
    assert pngs == ["train-000000.png", "train-000000_mask.png", "train-000001.png",
                    "train-000001_mask.png"]  # fmt: skip
    image = np.asarray(Image.open(out / "train" / "png" / "train-000001.png"))
    np.testing.assert_array_equal(image, DatasetFolder(out).split("train").images[1])
