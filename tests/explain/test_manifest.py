"""The manifest's typed records: parsing is the validation, writing gives the same JSON.

The round trip of a bundle built by ``xaistudy explain`` is in test_bundle.py; here the
fixture bundle and hand-broken copies of it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from make_bundle import make_fixture_bundle

from explain.bundle_format import BundleError, load_manifest, verify_bundle
from explain.manifest import Manifest
from xaistudy.cli import cli
from xaistudy.files import json_text
from xaistudy.vocabulary import ALL_CONDITIONS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fixture_bundle(tmp_path_factory) -> Path:
    return make_fixture_bundle(tmp_path_factory.mktemp("manifest") / "bundle")


@pytest.fixture
def data(fixture_bundle) -> dict:
    return json.loads((fixture_bundle / "manifest.json").read_text())


def test_the_fixture_bundle_round_trips_byte_for_byte(fixture_bundle, data):
    manifest = verify_bundle(fixture_bundle)
    assert isinstance(manifest, Manifest)
    assert manifest.to_json() == data
    text = (fixture_bundle / "manifest.json").read_text()
    assert json_text(manifest.to_json()) == text
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert list(manifest.conditions) == list(ALL_CONDITIONS)
    assert manifest.conditions["concepts"] is manifest.conditions.concepts
    assert "placebo" not in manifest.conditions
    without = dataclasses.replace(manifest.conditions, lrp=None)
    assert "lrp" not in without and "lrp" not in list(without)
    with pytest.raises(KeyError):
        without["lrp"]  # a method the bundle does not hold
    assert manifest.validation is None and "validation" not in data  # optional: absent


def _drop(data: dict, *path) -> dict:
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    del target[last]
    return data


def _set(data: dict, value, *path) -> dict:
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    return data


BROKEN = [
    (
        lambda d: _drop(d, "conditions", "baseline", "layout", "rows"),
        "invalid bundle manifest: conditions.baseline.layout.rows is missing",
    ),
    (
        lambda d: _drop(d, "model_card", "accuracy"),
        "invalid bundle manifest: model_card.accuracy is missing",
    ),
    (
        lambda d: _set(d, "two", "conditions", "concepts", "layout", "rows"),
        "invalid bundle manifest: conditions.concepts.layout.rows must be an integer, not 'two'",
    ),
    (
        lambda d: _set(d, "yes", "ground_truth", "bg_color", "relevant"),
        "invalid bundle manifest: ground_truth.bg_color.relevant must be true or false, not 'yes'",
    ),
    (
        lambda d: _set(d, 3, "tutorial", "examples", "peaky", 0, "image"),
        "invalid bundle manifest: tutorial.examples.peaky[0].image must be text, not 3",
    ),
    (
        lambda d: _set(d, d["conditions"]["baseline"], "conditions", "placebo"),
        "invalid bundle manifest: conditions.placebo is not a known condition "
        "(allowed: baseline, counterfactuals, concepts, integrated_gradients, smoothgrad, "
        "grad_cam, occlusion, lrp, contrastive_lrp, iba)",
    ),
    (
        lambda d: {**d, "conditions": {}},
        "invalid bundle manifest: conditions must hold at least one of baseline, "
        "counterfactuals, concepts, integrated_gradients",
    ),
    (
        lambda d: _set(d, "lrp", "conditions", "grad_cam", "method"),
        "invalid bundle manifest: conditions.grad_cam.method must be 'grad_cam'",
    ),
    (
        lambda d: _set(d, "both", "conditions", "grad_cam", "stimuli", 1, "shows"),
        "invalid bundle manifest: conditions.grad_cam.stimuli[1].shows must be one of "
        "'scene', 'map', not 'both'",
    ),
    (
        lambda d: _set(d, "maybe", "conditions", "concepts", "factorisation"),
        "invalid bundle manifest: conditions.concepts.factorisation must be one of 'nmf', "
        "'signed', not 'maybe'",
    ),
    (
        lambda d: _set(d, {}, "ground_truth", "tail_length"),
        "invalid bundle manifest: ground_truth.tail_length is not a known factor (allowed: "
        "arm_position, obj_color, spherical, bg_color, bending, obj_rotation_yaw, "
        "obj_rotation_pitch, obj_rotation_roll, position)",
    ),
    (
        lambda d: _set(d, 9, "conditions", "counterfactuals", "stimuli", 3, "row"),
        "invalid bundle manifest: conditions.counterfactuals.stimuli[3] has row 9, column 3: "
        "outside the 2 x 6 layout",
    ),
    (
        lambda d: _set(d, ["one"], "conditions", "baseline", "layout", "row_labels"),
        "invalid bundle manifest: conditions.baseline.layout.row_labels must hold 3 labels, "
        "one per row",
    ),
    (
        lambda d: _set(d, [], "conditions", "baseline", "stimuli"),
        "invalid bundle manifest: conditions.baseline.stimuli is empty",
    ),
    (
        lambda d: _set(d, ["arm_position", "tail"], "attributes", 0, "factors"),
        "invalid bundle manifest: attributes[0].factors names tail, not in ground_truth",
    ),
    (
        lambda d: _set(d, 2, "schema_version"),
        "invalid bundle manifest: schema_version is 2; this version reads 1",
    ),
    (
        lambda d: _set(d, True, "conditions", "baseline", "stimuli", 0, "color"),
        "invalid bundle manifest: conditions.baseline.stimuli[0].color is not a known key "
        "(allowed: image, caption, test_index, row, column, logit, decision)",
    ),
    (
        lambda d: _set(d, None, "conditions", "baseline", "stimuli", 0, "logit"),
        "invalid bundle manifest: conditions.baseline.stimuli[0].logit must be a number, not None",
    ),
    (
        lambda d: _set(
            d, d["simulation"]["learning"][0]["test_index"], "simulation", "test", 0, "test_index"
        ),
        "invalid bundle manifest: simulation.test repeats learning scene(s)",
    ),  # fmt: skip
    (
        lambda d: _set(
            d,
            d["counterfactual_simulation"]["pre"][0]["test_index"],
            "counterfactual_simulation",
            "post",
            0,
            "test_index",
        ),
        "invalid bundle manifest: counterfactual_simulation.post repeats pre-test scene(s)",
    ),  # fmt: skip
    (
        lambda d: _set(
            d,
            d["simulation"]["test"][0]["test_index"],
            "counterfactual_simulation",
            "pre",
            0,
            "test_index",
        ),
        "invalid bundle manifest: counterfactual_simulation repeats forward-simulation scene(s)",
    ),  # fmt: skip
    (
        lambda d: _set(d, "tail", "counterfactual_simulation", "pre", 0, "factor"),
        "invalid bundle manifest: counterfactual_simulation.pre[0].factor is 'tail'; allowed "
        "are arm_position",
    ),
    (lambda d: [d], "invalid bundle manifest: must be an object, not [{"),
]


def test_a_bundle_without_forward_simulation_scenes_still_loads(data):
    old = {k: v for k, v in data.items() if k != "simulation"}
    for condition in old["conditions"].values():
        condition.pop("scene_maps", None)
    manifest = Manifest.from_json(old)
    assert manifest.simulation is None and manifest.conditions.lrp.scene_maps is None
    assert manifest.to_json() == old


@pytest.mark.parametrize(("damage", "message"), BROKEN)
def test_a_broken_manifest_gives_one_message_naming_the_key(data, damage, message):
    with pytest.raises(BundleError) as caught:
        Manifest.from_json(damage(data))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_server_and_the_cli_refuse_a_broken_manifest_with_that_message(
    fixture_bundle, data, tmp_path
):
    copy = tmp_path / "copy"
    shutil.copytree(fixture_bundle, copy)
    _set(data, "two", "conditions", "concepts", "layout", "rows")
    (copy / "manifest.json").write_text(json.dumps(data))
    message = "conditions.concepts.layout.rows must be an integer, not 'two'"
    with pytest.raises(BundleError, match=message):
        load_manifest(copy)
    result = CliRunner().invoke(cli, ["bundle", "verify", str(copy)])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_the_contract_modules_import_neither_torch_nor_numpy():
    code = (
        "import sys, explain.bundle_format, explain.manifest, modeling.card;"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_bundle_without_counterfactual_pairs_still_loads(data):
    old = {k: v for k, v in data.items() if k != "counterfactual_simulation"}
    manifest = Manifest.from_json(old)
    assert manifest.counterfactual_simulation is None and manifest.to_json() == old


def test_the_pairs_pictures_are_checked_when_the_bundle_is_verified(fixture_bundle, tmp_path):
    """Both pictures of every pair are listed, hashed and decode at the dataset's size."""
    manifest = verify_bundle(fixture_bundle)
    pairs = manifest.counterfactual_simulation
    assert len(pairs.pre) == len(pairs.post) == 8
    pictures = pairs.images()
    assert len(pictures) == 32 and set(pictures) <= set(manifest.files)
    assert set(pictures) <= set(manifest.images())
    shown = CliRunner().invoke(cli, ["bundle", "verify", str(fixture_bundle)]).output
    assert "counterfactual-simulation pairs: 8 pre-test (4 flipping), 8 post-test (4 " in shown

    broken = tmp_path / "broken"
    shutil.copytree(fixture_bundle, broken)
    rel = pairs.post[0].changed_image
    (broken / rel).write_bytes(b"not a png")  # the hash is rewritten: only decoding fails
    data = json.loads((broken / "manifest.json").read_text())
    from explain.bundle_format import sha256_file

    data["files"][rel] = sha256_file(broken / rel)
    (broken / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=f"damaged bundle: {rel} does not decode as an image"):
        verify_bundle(broken)
