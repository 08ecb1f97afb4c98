"""The study bundle end to end: build, manifest contents, verify, damage, preview, CLI."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from make_bundle import fixture_model_card

from explain.batching import batched_logits
from explain.build import ExplainSettings, GroundTruthScenes, build_bundle, default_renderer
from explain.bundle_format import BundleError, load_manifest, verify_bundle
from explain.images import decode_png
from explain.probe import ProbeSettings
from generator.biases import load_spec
from generator.dataset import DatasetFolder
from generator.generate import generate_dataset
from xaistudy.cli import cli
from xaistudy.errors import UserError
from xaistudy.files import json_text
from xaistudy.vocabulary import FACTORS, STUDY_ATTRIBUTE_KEYS, study_attribute

CPU = torch.device("cpu")
CARD = fixture_model_card()
SETTINGS = ExplainSettings(
    baseline_rows=3,
    counterfactual_sources=3,
    concepts=4,
    concept_highest=2,
    concept_lowest=1,
    concept_overlay_size=64,
    ground_truth_scenes=48,
    tutorial_examples=2,
    probe=ProbeSettings(train_images=64, test_images=32, epochs=1),
)


@pytest.fixture(scope="module")
def bundle(tiny_model, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    path, timings = build_bundle(
        tiny_model, CARD, tiny_data, out, CPU, SETTINGS, progress=False,
        allow_invalid=True,
    )  # fmt: skip
    assert set(timings) == {
        "logits", "baseline", "counterfactuals", "concepts", "ground_truth", "tutorial",
        "validation", "write",
    }  # fmt: skip
    return path


@pytest.fixture
def manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def test_bundle_verifies_and_every_image_is_named_by_its_content_hash(bundle, manifest):
    assert verify_bundle(bundle).schema_version == 1
    assert not list(bundle.parent.glob("*.partial-*"))
    for rel, digest in manifest["files"].items():
        assert re.fullmatch(r"images/[0-9a-f]{16}\.png", rel)
        assert rel == f"images/{digest[:16]}.png"
    assert manifest["model_card"] == CARD.to_json()
    assert manifest["dataset"]["size"] == 32 and manifest["dataset"]["preset"] == "iclr2022"


def test_manifest_reads_into_records_and_writes_back_byte_for_byte(bundle, manifest):
    """A bundle built by ``xaistudy explain`` round-trips through the typed manifest."""
    text = (bundle / "manifest.json").read_text()
    record = load_manifest(bundle)
    assert record.to_json() == manifest
    assert json_text(record.to_json()) == text
    assert record.model_card == CARD
    assert record.conditions.counterfactuals.stimuli[0].source is True
    assert record.validation is not None and record.validation.published_despite_failures
    assert set(record.images()) <= set(record.files)


def test_ground_truth_covers_every_factor_and_attribute(manifest):
    truth = manifest["ground_truth"]
    assert list(sorted(truth)) == sorted(FACTORS)
    for entry in truth.values():
        assert entry["ci"][0] <= entry["effect"] <= entry["ci"][1]
        assert 0 <= entry["flip_rate"] <= 1 and 0 <= entry["variance_share"] <= 1
        assert entry["n"] == 48
    assert "description" in manifest["ground_truth_rule"]
    attributes = {a["key"]: a for a in manifest["attributes"]}
    assert list(attributes) == list(STUDY_ATTRIBUTE_KEYS)
    for key, attr in attributes.items():
        assert attr["name"] == study_attribute(key).name
        assert attr["relevant"] == any(truth[f]["relevant"] for f in study_attribute(key).factors)


def test_conditions_layouts_and_numbers(manifest, bundle, tiny_model):
    conditions = manifest["conditions"]
    assert set(conditions) == {"baseline", "counterfactuals", "concepts"}
    for condition in conditions.values():
        layout = condition["layout"]
        assert condition["title"] and condition["description"]
        assert len(condition["stimuli"]) == layout["rows"] * layout["columns"]
        assert len(layout["row_labels"]) == layout["rows"]
        assert len(layout["column_labels"]) == layout["columns"]
        order = [(s["row"], s["column"]) for s in condition["stimuli"]]
        assert order == sorted(order)
    baseline = conditions["baseline"]
    assert baseline["layout"]["columns"] == 5 and len(baseline["layout"]["bins"]["edges"]) == 6
    # The stored counterfactual images give the target logit (up to 8-bit rounding of
    # the stored PNG), and the decoded ones exactly.
    counterfactuals = conditions["counterfactuals"]
    for stim in counterfactuals["stimuli"]:
        assert abs(stim["logit"] - stim["target"]) < 1e-3
        image = decode_png((bundle / stim["image"]).read_bytes())
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            assert tiny_model.logit(x).item() == pytest.approx(stim["stored_logit"], abs=1e-4)
    concepts = conditions["concepts"]
    assert concepts["factorisation"] in ("nmf", "signed")
    assert len(concepts["importance"]) == concepts["layout"]["rows"] == 4
    assert 0 <= concepts["fidelity"]["decision_agreement"] <= 1


def test_forward_simulation_scenes_carry_the_models_output_on_their_stored_image(
    bundle, tiny_model, tiny_data
):
    """8 learning and 16 test scenes of the test split, disjoint, the logit the model's on
    the scene; the pictures are the test images themselves."""
    simulation = verify_bundle(bundle).simulation
    assert len(simulation.learning) == 8 and len(simulation.test) == 16
    scenes = (*simulation.learning, *simulation.test)
    assert len({s.test_index for s in scenes}) == 24
    test = tiny_data.split("test")
    images = np.asarray(test.images[:])
    logits = batched_logits(tiny_model.logit, images, CPU, 64)
    for scene in scenes:
        assert scene.logit == pytest.approx(float(logits[scene.test_index]), abs=1e-4)
        assert scene.label == ("peaky", "stretchy")[int(test.params["label"][scene.test_index])]
        stored = decode_png((bundle / scene.image).read_bytes())
        assert (stored == images[scene.test_index]).all()


def test_counterfactual_pairs_carry_the_models_output_on_both_stored_pictures(
    bundle, tiny_model, tiny_data
):
    """8 pre-test and 8 post-test pairs from the intervention splits: the first picture is
    the test image, the second the split's image with only the pair's factor redrawn; both
    logits are the model's on the stored PNGs; half of each test flips the decision."""
    manifest = verify_bundle(bundle)
    pairs = manifest.counterfactual_simulation
    assert len(pairs.pre) == len(pairs.post) == 8
    learned = {s.test_index for s in (*manifest.simulation.learning, *manifest.simulation.test)}
    assert not pairs.scene_ids() & learned
    test = tiny_data.split("test")
    for phase in (pairs.pre, pairs.post):
        assert [p.flips for p in phase] == [True, False] * 4
        for pair in phase:
            original = decode_png((bundle / pair.original_image).read_bytes())
            changed = decode_png((bundle / pair.changed_image).read_bytes())
            assert (original == np.asarray(test.images[pair.test_index])).all()
            split = tiny_data.split(f"test_intervene_{pair.factor}")
            row = np.flatnonzero(split.params["original_id"].astype(str)
                                 == str(test.params["id"][pair.test_index]))  # fmt: skip
            assert (changed == np.asarray(split.images[int(row[0])])).all()
            logits = batched_logits(tiny_model.logit, np.stack([original, changed]), CPU, 2)
            assert (pair.original_logit, pair.changed_logit) == pytest.approx(
                tuple(float(v) for v in logits), abs=1e-4
            )
            assert pair.label == ("peaky", "stretchy")[int(test.params["label"][pair.test_index])]


def test_tutorial_has_examples_and_one_row_per_study_attribute(manifest, bundle):
    tutorial = manifest["tutorial"]
    assert len(tutorial["examples"]["peaky"]) == 2 and len(tutorial["examples"]["stretchy"]) == 2
    assert set(tutorial["attributes"]) == set(STUDY_ATTRIBUTE_KEYS)
    arm = tutorial["attributes"]["arm_position"]
    captions = [s["caption"] for s in arm["images"]]
    assert captions[0] == "close to the body" and captions[-1] == "stretched away"
    images = [decode_png((bundle / s["image"]).read_bytes()) for s in arm["images"]]
    assert all(im.shape == (32, 32, 3) for im in images)
    assert len({im.tobytes() for im in images}) == len(images)  # the arms really move


def test_damaged_bundle_is_refused_with_a_clear_message(bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    victim = sorted((copy / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"x")
    with pytest.raises(BundleError, match=r"damaged bundle: images/.* has hash"):
        verify_bundle(copy)
    result = CliRunner().invoke(cli, ["bundle", "verify", str(copy)])
    assert result.exit_code == 2
    assert "Error: damaged bundle" in result.output and "Traceback" not in result.output
    victim.unlink()
    result = CliRunner().invoke(cli, ["bundle", "verify", str(copy)])
    assert result.exit_code == 2 and "missing" in result.output
    result = CliRunner().invoke(cli, ["bundle", "verify", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_cli_verify_and_preview(bundle, tmp_path):
    result = CliRunner().invoke(cli, ["bundle", "verify", str(bundle)])
    assert result.exit_code == 0 and "intact" in result.output
    out = tmp_path / "preview"
    result = CliRunner().invoke(cli, ["bundle", "preview", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "baseline.png", "concepts.png", "counterfactuals.png", "tutorial.png", "validation.png"
    ]  # fmt: skip
    assert decode_png((out / "concepts.png").read_bytes()).shape[0] > 200


def test_failed_build_leaves_nothing_that_looks_complete(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "bundle"
    too_many_rows = ExplainSettings(baseline_rows=80)
    with pytest.raises(UserError, match="rows were asked for"):
        build_bundle(tiny_model, CARD, tiny_data, out, CPU, too_many_rows, progress=False)
    assert list(tmp_path.iterdir()) == []
    (out / "keep.txt").parent.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="--overwrite"):
        build_bundle(tiny_model, CARD, tiny_data, out, CPU, SETTINGS, progress=False)


def test_missing_intervention_splits_are_made_on_the_fly(tmp_path):
    out = tmp_path / "plain"
    generate_dataset(
        load_spec("iclr2022"), out, n_train=0, n_val=0, n_test=12, size=32, progress=False
    )
    folder = DatasetFolder(out)
    test = folder.split("test")
    scenes = GroundTruthScenes(folder, test.params, default_renderer(CPU, 64), seed=0)
    originals, images = scenes.scenes("bg_color", 8)
    np.testing.assert_array_equal(originals, np.arange(8))
    assert images.shape == (8, 32, 32, 3) and scenes.made_on_the_fly == ["bg_color"]
    # The background was redrawn: the corner pixel (background) changes color.
    corners_before = np.asarray(test.images[:8, 0, 0]).astype(int)
    assert np.abs(images[:, 0, 0].astype(int) - corners_before).sum() > 0


def test_counterfactuals_are_refused_for_a_model_that_cannot_invert(tiny_model):
    from explain.build import check_conditions

    check_conditions(("baseline", "counterfactuals"), tiny_model)  # the flow: allowed

    class Classifier(torch.nn.Module):  # any model without the flow's inverse
        pass

    with pytest.raises(UserError, match="counterfactuals need the invertible network.*Classifier"):
        check_conditions(("baseline", "counterfactuals"), Classifier())
    check_conditions(("baseline", "concepts"), Classifier())


def test_attribution_conditions_are_built_with_their_technical_scores(
    tiny_model, tiny_data, tmp_path
):
    """A bundle of the baseline and three attribution methods on the invertible network:
    the maps as pictures under the baseline's scenes, the method recorded, the technical
    scores computed on the condition's own scenes; LRP is refused for this model before
    any work."""
    from explain.technical import TechnicalSettings

    settings = dataclasses.replace(
        SETTINGS,
        conditions=("baseline", "integrated_gradients", "grad_cam", "iba"),
        attribution_rows=SETTINGS.baseline_rows,  # so the scenes are the baseline's
        technical=TechnicalSettings(steps=4, sanity_checkpoints=2, sanity_scenes=2),
        out_of_set_scenes=4,
    )
    out = tmp_path / "bundle"
    # the model itself as the "second" model: its maps agree with themselves exactly
    path, timings = build_bundle(
        tiny_model, CARD, tiny_data, out, CPU, settings, progress=False, allow_invalid=True,
        compare_model=tiny_model,
    )  # fmt: skip
    manifest = verify_bundle(path)
    assert list(manifest.conditions) == ["baseline", "integrated_gradients", "grad_cam", "iba"]
    assert {"integrated_gradients", "grad_cam", "iba"} <= set(timings)
    baseline_scenes = [c.test_index for c in manifest.conditions.baseline.stimuli]
    for name in ("integrated_gradients", "grad_cam", "iba"):
        condition = manifest.conditions[name]
        scenes = [c for c in condition.stimuli if c.shows == "scene"]
        assert len(scenes) == 3 * 5 and len(condition.stimuli) == 2 * len(scenes)
        assert [c.test_index for c in scenes] == baseline_scenes  # same draws, same seed
        assert condition.library == ("xaistudy" if name == "iba" else "captum")
        assert condition.signed == (name == "integrated_gradients")
        technical = condition.technical
        assert technical.scenes == 15 and technical.out_of_set.preset == "unbiased"
        assert technical.sanity.down_to  # the cascade ran
        assert technical.stability_across_models == pytest.approx(1.0)
        assert 0 <= technical.localization["animal"].relevance_mass_accuracy <= 1
        maps = [decode_png((path / c.image).read_bytes()) for c in condition.stimuli[1::2]]
        assert len({m.tobytes() for m in maps}) > 1  # maps differ between scenes
        # every simulation scene (learning and test) has its map and the other class's,
        # listed in the bundle
        assert [m.test_index for m in condition.scene_maps] == manifest.simulation.scene_ids()
        for scene_map in condition.scene_maps:
            assert {scene_map.image, scene_map.other_image} <= set(manifest.files)
            assert scene_map.other_image != scene_map.image
    assert manifest.validation.counterfactuals is None

    lrp = dataclasses.replace(settings, conditions=("baseline", "lrp"))
    with pytest.raises(UserError, match="lrp is not defined for the invertible model.*allowed"):
        build_bundle(tiny_model, CARD, tiny_data, tmp_path / "lrp", CPU, lrp, progress=False)
    assert not (tmp_path / "lrp").exists()
