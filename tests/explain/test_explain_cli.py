"""``xaistudy explain`` on a run folder made by the modeling package's own training."""

import json

import pytest
from click.testing import CliRunner

from explain.bundle_format import verify_bundle
from xaistudy.cli import cli


def test_explain_writes_a_verified_bundle(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "bundle"
    args = [
        "explain", "--model", str(tiny_run), "--data", str(tiny_data.root), "--out", str(out),
        "--device", "cpu", "--baseline-rows", "2", "--baseline-columns", "3", "--cf-sources", "2",
        "--cf-targets", "3", "--concepts", "3", "--concept-highest", "2", "--concept-lowest", "1",
        "--gt-scenes", "24",
        "--relevance-rule", "min_flip_rate=0.5,min_variance_share=1", "--allow-invalid",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "wrote study bundle" in result.output
    manifest = verify_bundle(out)
    assert manifest.model_card.to_json() == json.loads((tiny_run / "model_card.json").read_text())
    assert manifest.ground_truth_rule.min_flip_rate == 0.5
    assert manifest.conditions.baseline.layout.columns == 3
    assert manifest.conditions.counterfactuals.targets[1] == 0.0
    # How much each condition shows is set by the options and said by `bundle verify`.
    assert manifest.conditions.concepts.layout.columns == 3
    assert manifest.explain_settings["concept_highest"] == 2
    shown = CliRunner().invoke(cli, ["bundle", "verify", str(out)]).output
    concepts = len(manifest.conditions.concepts.stimuli)
    assert f"pictures shown: baseline 6, counterfactuals 8, concepts {concepts}" in shown


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--relevance-rule", "nonsense=1"], "unknown relevance rule key"),
        (["--baseline-columns", "4"], "must be odd"),
        (["--gt-scenes", "0"], "--gt-scenes must be at least 1"),
        (["--conditions", "baseline,saliency"], "unknown condition(s) saliency; allowed are"),
        (["--conditions", ","], "unknown condition(s) (none given)"),
        (["--conditions", "baseline,baseline"], "a condition is named twice"),
        (["--simulation-trials", "8"], "must be two counts LEARNING,TEST such as 8,16"),
        (["--simulation-trials", "0,4"], "both 0 (no forward-simulation scenes) or both at"),
        (["--simulation-trials", "60,60"], "asks for 60 learning + 60 test scenes, but the test"),
        (["--counterfactual-pairs", "8"], "must be two counts PRE,POST such as 8,8"),
        (["--counterfactual-pairs", "4,0"], "pre and post are both 0 (no counterfactual-simul"),
        (
            [
                "--counterfactual-pairs",
                "200,200",
                "--gt-scenes",
                "24",
                "--conditions",
                "baseline",
                "--baseline-rows",
                "2",
                "--baseline-columns",
                "3",
            ],
            "asks for 200 pre-test + 200 post-test pairs, 200 of them changes that flip",
        ),
    ],
)
def test_explain_refuses_bad_options_with_one_line(tiny_run, tiny_data, tmp_path, extra, message):
    args = ["explain", "--model", str(tiny_run), "--data", str(tiny_data.root),
            "--out", str(tmp_path / "b"), *extra]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "b").exists()


def test_explain_names_a_missing_run_folder(tiny_data, tmp_path):
    args = ["explain", "--model", str(tmp_path / "none"), "--data", str(tiny_data.root),
            "--out", str(tmp_path / "b")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "run folder" in result.output


def test_explain_builds_the_conditions_asked_for(tiny_run, tiny_data, tmp_path):
    """A subset of conditions: only those are built, and the validation does not count
    the conditions left out as unchecked."""
    out = tmp_path / "bundle"
    args = [
        "explain", "--model", str(tiny_run), "--data", str(tiny_data.root), "--out", str(out),
        "--device", "cpu", "--conditions", "concepts,baseline", "--baseline-rows", "2",
        "--baseline-columns", "3", "--concepts", "3", "--concept-highest", "2",
        "--concept-lowest", "1", "--gt-scenes", "24", "--allow-invalid",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    manifest = verify_bundle(out)
    assert list(manifest.conditions) == ["baseline", "concepts"]  # in the platform's order
    assert manifest.explain_settings["conditions"] == ["concepts", "baseline"]
    assert manifest.validation.counterfactuals is None
    assert not [f for f in manifest.validation.failures if "not checked" in f]
