"""Bundle validation: the checks, the gate in ``xaistudy explain`` and ``bundle validate``."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from explain.build import bundle_is_current, maps_every_scene
from explain.manifest import Attribute, CounterfactualValidation, KeyEffect, Validation
from explain.preview import failing_cells
from explain.validation import (
    Thresholds,
    concept_checks,
    failures,
    ground_truth_checks,
    region_fractions,
    validate_bundle,
    within_row_trend,
)
from generator.dataset import DatasetFolder
from xaistudy.cli import cli
from xaistudy.errors import UserError
from xaistudy.vocabulary import CONDITIONS

CPU = torch.device("cpu")
SMALL = ["--device", "cpu", "--baseline-rows", "2", "--baseline-columns", "3", "--cf-sources",
         "3", "--cf-targets", "3", "--concepts", "3", "--gt-scenes", "24"]  # fmt: skip


def explain_args(run, data, out, *extra):
    return ["explain", "--model", str(run), "--data", str(data.root), "--out", str(out),
            *SMALL, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def published(tiny_run, tiny_data, tmp_path_factory):
    """A bundle of the tiny model, published with --allow-invalid (it fails the checks)."""
    out = tmp_path_factory.mktemp("validated") / "bundle"
    result = CliRunner().invoke(cli, explain_args(tiny_run, tiny_data, out, "--allow-invalid"))
    assert result.exit_code == 0, result.output
    return out


def test_a_bundle_is_current_only_with_maps_of_every_simulation_scene(bundle_dir, tmp_path):
    from explain.bundle_format import load_manifest

    assert maps_every_scene(load_manifest(bundle_dir))
    old = tmp_path / "learning-maps-only"
    shutil.copytree(bundle_dir, old)
    data = json.loads((old / "manifest.json").read_text())
    learning = len(data["simulation"]["learning"])
    data["conditions"]["lrp"]["scene_maps"] = data["conditions"]["lrp"]["scene_maps"][:learning]
    (old / "manifest.json").write_text(json.dumps(data))
    assert not maps_every_scene(load_manifest(old))  # made before the verification design


def test_a_bundle_is_current_only_for_its_own_run_and_dataset(
    published, tiny_run, tiny_data, tmp_path
):
    assert bundle_is_current(published, tiny_run, tiny_data)
    assert not bundle_is_current(tmp_path / "none", tiny_run, tiny_data)

    other_data = tmp_path / "other-data"
    other_data.mkdir()
    (other_data / "meta.json").write_text(json.dumps({"size": tiny_data.size, "splits": {}}))
    assert not bundle_is_current(published, tiny_run, DatasetFolder(other_data))

    retrained = tmp_path / "retrained"
    retrained.mkdir()
    card = json.loads((tiny_run / "model_card.json").read_text())
    (retrained / "model_card.json").write_text(json.dumps({**card, "created": "later"}))
    assert not bundle_is_current(published, retrained, tiny_data)
    assert not bundle_is_current(published, tmp_path / "unfinished", tiny_data)

    damaged = tmp_path / "damaged"
    shutil.copytree(published, damaged)
    image = next((damaged / "images").iterdir())
    image.write_bytes(image.read_bytes() + b"x")
    assert not bundle_is_current(damaged, tiny_run, tiny_data)


def read_manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def write_manifest(bundle, manifest):
    (bundle / "manifest.json").write_text(json.dumps(manifest))


# ----------------------------------------------------------------- thresholds


def test_thresholds_parse_inline_and_toml_and_reject_unknown_keys(tmp_path):
    assert Thresholds.parse(None) == Thresholds()
    parsed = Thresholds.parse("max_clipped_fraction=0.05, max_wrong_side=2")
    assert parsed.max_clipped_fraction == 0.05 and parsed.max_wrong_side == 2
    toml = tmp_path / "limits.toml"
    toml.write_text("[validation]\nmin_effect_ratio = 1.5\n")
    assert Thresholds.parse(str(toml)).min_effect_ratio == 1.5
    with pytest.raises(UserError, match="unknown validation threshold.*allowed are max_clipped"):
        Thresholds.parse("max_clip=0.1")
    with pytest.raises(UserError, match="not key=value"):
        Thresholds.parse("max_clipped_fraction")
    with pytest.raises(UserError, match="is not a number"):
        Thresholds.parse("min_effect_ratio=lots")


# ------------------------------------------------------------- the checks


def attribute(key, relevant, effect):
    return Attribute(key=key, name=key, factors=(key,), relevant=relevant, effect=effect)


def test_trivial_strategies_and_margin_on_a_hand_made_answer_key():
    key = [
        attribute("arm_position", True, 2.0),
        attribute("obj_color", True, 0.9),
        attribute("spherical", False, 0.1),
        attribute("bg_color", False, 0.4),
    ]
    truth = ground_truth_checks(key)
    assert truth.all_relies_on == pytest.approx(0.5)
    assert truth.all_does_not == pytest.approx(0.5)
    assert truth.all_neutral == 0.0
    assert truth.weakest_relevant == KeyEffect(key="obj_color", effect=0.9)
    assert truth.strongest_irrelevant == KeyEffect(key="bg_color", effect=0.4)
    assert truth.effect_ratio == pytest.approx(2.25)
    passed = failures({"ground_truth": truth}, Thresholds())
    assert not [line for line in passed if line.startswith("ground_truth")]
    tight = failures({"ground_truth": truth}, Thresholds(min_effect_ratio=3))
    assert "ground_truth: effect_ratio 2.25 < 3" in tight[-1]
    # "Agree to everything" scores 6 of 7 on a key where almost everything is relevant,
    # and a key without an irrelevant attribute fails.
    lopsided = [attribute(f"a{i}", True, 1.0) for i in range(6)] + [attribute("z", False, 0.9)]
    assert ground_truth_checks(lopsided).all_relies_on == pytest.approx(6 / 7)
    only = ground_truth_checks([attribute("a", True, 1.0), attribute("b", True, 2.0)])
    assert "no irrelevant attribute" in failures({"ground_truth": only}, Thresholds())[-1]


def test_within_row_trend_sees_changes_along_rows_not_between_them():
    rows = np.repeat([0, 1, 2], 5)
    targets = np.tile(np.linspace(-2, 2, 5), 3)
    along = 0.1 * targets + np.repeat([0.0, 5.0, -3.0], 5)  # rows differ, a common slope
    slope, r2 = within_row_trend(rows, targets, along)
    assert slope == pytest.approx(0.1) and r2 == pytest.approx(1.0)
    between = np.repeat([0.0, 5.0, -3.0], 5)  # constant along every row
    assert within_row_trend(rows, targets, between) == (0.0, 0.0)


def counterfactual_numbers(**changes):
    trend = {"reading": "bg_color", "slope": 0.0, "r2": 0.0, "range_share": 0.0}
    numbers = {
        "n": 30,
        "clipped_fraction_mean": 0.001,
        "clipped_fraction_max": 0.01,
        "stored_logit_error_max": 0.1,
        "wrong_side": 0,
        "manifest_logit_mismatch_max": None,
        "cells": [],
        "attribute_trends": {"bg_color": {**trend, "relevant": False}},
    }
    numbers.update(changes)
    return CounterfactualValidation.from_json(numbers)


def test_counterfactual_limits_name_the_check_the_value_and_the_limit():
    assert failures({"counterfactuals": counterfactual_numbers()}, Thresholds())[:1] == [
        "concepts: not checked (the bundle has no stored concept checks)"
    ]
    clipped = counterfactual_numbers(clipped_fraction_max=0.214)
    assert "counterfactuals: clipped_fraction_max 0.214 > 0.03" in failures(
        {"counterfactuals": clipped}, Thresholds()
    )
    trend = {"reading": "bg_color", "slope": 0.1, "r2": 0.6, "range_share": 0.4}
    trending = counterfactual_numbers(attribute_trends={"bg_color": {**trend, "relevant": False}})
    assert any(
        "trend of irrelevant bg_color (bg_color) r2 0.6 > 0.1" in line
        for line in failures({"counterfactuals": trending}, Thresholds())
    )
    # The same trend on a relevant attribute is what a counterfactual should show.
    relevant = counterfactual_numbers(attribute_trends={"bg_color": {**trend, "relevant": True}})
    assert not any("trend" in f for f in failures({"counterfactuals": relevant}, Thresholds()))


def test_duplicate_concepts_are_flagged_and_heatmaps_located(tiny_data):
    test = tiny_data.split("test")
    masks = np.asarray(test.masks)
    n = len(masks)
    regions = region_fractions(masks, 8, 8)  # (N, 8, 8, 3)
    np.testing.assert_allclose(regions.sum(axis=-1), 1.0)
    rng = np.random.default_rng(0)
    maps = rng.random((n, 3, 8, 8))
    maps[:, 0] = regions[..., 2] == 1  # concept 0 lies on cells of pure background only
    maps[:, 2] = maps[:, 1]  # concept 2 duplicates concept 1
    checks = concept_checks(maps, maps.mean(axis=(2, 3)), [0, 1, 2], test.params, masks)
    assert checks.rows[0].mass.background == pytest.approx(1.0)
    assert checks.rows[0].mass.arms == pytest.approx(0.0)
    assert set(checks.rows[1].correlations) >= {"bg_color", "arm_position", "label"}
    pairs = {p.rows: p for p in checks.pairs}
    assert pairs[(1, 2)].similarity == pytest.approx(1.0)
    assert pairs[(0, 1)].similarity < 0.9
    flagged = [f for f in failures({"concepts": checks}, Thresholds()) if f.startswith("concepts")]
    assert flagged == ["concepts: concepts 2 and 3 are duplicates, similarity 1.000 >= 0.9"]


# ------------------------------------------------------------------ the gate


def test_explain_refuses_to_publish_a_failing_bundle_unless_allowed(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "bundle"
    strict = ("--thresholds", "max_stored_logit_error=0")  # 8-bit rounding alone exceeds it
    result = CliRunner().invoke(cli, explain_args(tiny_run, tiny_data, out, *strict))
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "failed validation" in output and "stored_logit_error_max" in output
    assert "--allow-invalid" in output and "--thresholds" in output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing published, no partial folder left

    result = CliRunner().invoke(
        cli, explain_args(tiny_run, tiny_data, out, *strict, "--allow-invalid")
    )
    assert result.exit_code == 0, result.output
    assert "published despite failed validation" in result.output
    validation = read_manifest(out)["validation"]
    assert validation["passed"] is False and validation["published_despite_failures"] is True
    assert any("stored_logit_error_max" in f for f in validation["failures"])
    assert validation["thresholds"]["max_stored_logit_error"] == 0


def test_the_demo_serves_a_failing_bundle_only_when_allowed(
    published, tiny_run, tiny_data, tmp_path
):
    """``xaistudy demo`` keeps the gate: a bundle that fails validation, even one published
    by an earlier run with --allow-invalid, is refused by a run without it."""
    from xaistudy.cli.demo_pipeline import DemoSettings, bundle_stage

    settings = DemoSettings(out=tmp_path, conditions=CONDITIONS, gt_scenes=24)
    shutil.copytree(published, settings.bundle_dir)
    with pytest.raises(UserError) as refused:
        bundle_stage(settings, tiny_data, tiny_run, CPU)
    message = str(refused.value)
    assert "failed validation" in message and "nothing is served" in message
    assert "--allow-invalid" in message and "--conditions baseline,concepts,lrp" in message
    assert "The counterfactuals need the invertible network" in message
    allowed = replace(settings, allow_invalid=True)
    assert bundle_stage(allowed, tiny_data, tiny_run, CPU) == settings.bundle_dir


def test_the_demo_words_the_gate_refusal_of_a_new_bundle(
    published, tiny_run, tiny_data, tmp_path, monkeypatch
):
    """When the gate refuses the bundle the demo just built, the demo's own advice is said
    (it has no --thresholds) and nothing is published. The build is the gate's own, tested
    above; here it refuses with the published bundle's failures."""
    import explain.build
    from explain.bundle_format import load_manifest
    from explain.validation import InvalidBundle
    from xaistudy.cli.demo_pipeline import DemoSettings, bundle_stage

    validation = load_manifest(published).validation

    def refuse(*args, allow_invalid, **kwargs):
        assert not allow_invalid
        raise InvalidBundle(validation)

    monkeypatch.setattr(explain.build, "build_bundle", refuse)
    settings = DemoSettings(out=tmp_path, conditions=("baseline", "concepts"))
    with pytest.raises(UserError) as refused:
        bundle_stage(settings, tiny_data, tiny_run, CPU)
    message = str(refused.value)
    assert validation.failures[0] in message and "--thresholds" not in message
    assert "--allow-invalid" in message and "need the invertible network" not in message
    assert not settings.bundle_dir.exists()


def test_published_bundle_records_every_group(published):
    manifest = read_manifest(published)
    validation = manifest["validation"]
    assert set(validation) >= {"counterfactuals", "concepts", "ground_truth", "probe",
                               "thresholds", "failures", "passed"}  # fmt: skip
    cf = validation["counterfactuals"]
    assert len(cf["cells"]) == cf["n"] == 9
    assert set(cf["attribute_trends"]) == {
        "arm_position", "obj_color", "spherical", "bg_color", "bending", "rotation", "position"
    }  # fmt: skip
    # One row per concept shown (duplicates are merged first), one pair per two rows.
    shown = manifest["conditions"]["concepts"]["layout"]["rows"]
    assert len(validation["concepts"]["rows"]) == shown
    assert len(validation["concepts"]["pairs"]) == shown * (shown - 1) // 2
    assert validation["probe"]["test_r2"]["bg_color"] is not None


# ---------------------------------------------------------- bundle validate


def loose_thresholds(numbers: Validation) -> Thresholds:
    """Limits the intact bundle meets on the stored-image checks."""
    cf = numbers.counterfactuals
    return Thresholds(
        max_clipped_fraction_mean=cf.clipped_fraction_mean + 0.01,
        max_clipped_fraction=cf.clipped_fraction_max + 0.01,
        max_stored_logit_error=cf.stored_logit_error_max + 1.0,
        max_wrong_side=cf.wrong_side,
    )


def edited_stimulus(manifest: dict, row: int, column: int) -> dict:
    """The counterfactual stimulus at (row, column); column 0 is each row's unedited source."""
    stimuli = manifest["conditions"]["counterfactuals"]["stimuli"]
    (found,) = [s for s in stimuli if (s["row"], s["column"]) == (row, column)]
    assert not found["source"]
    return found


def limits_text(limits: Thresholds) -> str:
    return ",".join(f"{k}={v}" for k, v in limits.to_dict().items())


def test_bundle_validate_catches_a_counterfactual_off_its_caption(published, tiny_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(published, copy)
    intact = validate_bundle(copy, tiny_run, CPU, progress=False)
    limits = loose_thresholds(intact)
    again = validate_bundle(copy, tiny_run, CPU, limits, progress=False)
    assert not [f for f in again.failures if "logit" in f or "wrong_side" in f]

    # Move one correctly placed stimulus' caption target across the boundary, far away.
    manifest = read_manifest(copy)
    cells = intact.counterfactuals.cells
    i = next(i for i, c in enumerate(cells) if c.target != 0 and not c.wrong_side)
    logit = cells[i].logit
    stimulus = edited_stimulus(manifest, cells[i].row, cells[i].column)
    stimulus["target"] = -np.sign(logit) * (abs(logit) + limits.max_stored_logit_error + 1)
    write_manifest(copy, manifest)
    args = ["bundle", "validate", str(copy), "--model", str(tiny_run), "--device", "cpu",
            "--thresholds", limits_text(limits)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "counterfactuals: stored_logit_error_max" in result.output
    assert f"wrong_side {intact.counterfactuals.wrong_side + 1} of 9 images" in result.output
    assert "answer key" in result.output and "attribute probe" in result.output  # the table


def test_bundle_validate_catches_clipping_above_the_limit(published, tiny_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(published, copy)
    limits = loose_thresholds(validate_bundle(copy, tiny_run, CPU, progress=False))
    manifest = read_manifest(copy)
    edited_stimulus(manifest, 0, 1)["clipped_fraction"] = 0.9
    write_manifest(copy, manifest)
    args = ["bundle", "validate", str(copy), "--model", str(tiny_run), "--device", "cpu",
            "--thresholds", limits_text(limits)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert f"clipped_fraction_max 0.9 > {limits.max_clipped_fraction:g}" in result.output


def test_bundle_validate_needs_the_dataset_when_the_probe_is_missing(
    published, tiny_run, tiny_data, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("probe"))
    args = ["bundle", "validate", str(published), "--model", str(run), "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "pass --data" in result.output
    assert "Traceback" not in result.output


def test_preview_shows_the_validation(published, tmp_path):
    out = tmp_path / "preview"
    result = CliRunner().invoke(cli, ["bundle", "preview", str(published), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "validation.png").is_file()
    validation = read_manifest(published)["validation"]
    cells = validation["counterfactuals"]["cells"]
    framed = failing_cells(Validation.from_json(validation))
    limit = validation["thresholds"]["max_stored_logit_error"]
    assert framed == {
        (c["row"], c["column"])
        for c in cells
        if c["wrong_side"]
        or c["error"] > limit
        or c["clipped_fraction"] > validation["thresholds"]["max_clipped_fraction"]
    }
    assert failing_cells(
        Validation.from_json(
            {**validation, "thresholds": {**validation["thresholds"], "max_stored_logit_error": -1}}
        )
    ) == {(c["row"], c["column"]) for c in cells}
