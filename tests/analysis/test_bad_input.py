"""Bad input ends in one clear message naming the problem, never a traceback."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.report import analyze
from analysis.simulate import SimulationSpec, parse_accuracy, simulate_frames, write_frames
from simulation.runs import answered_pages
from xaistudy.cli import cli
from xaistudy.errors import UserError


@pytest.fixture()
def export_dir(bundle, tmp_path):
    spec = SimulationSpec(accuracy={"baseline": 0.7, "concepts": 0.6}, n=12, seed=1)
    frames = simulate_frames(bundle, spec, answered_pages())
    return write_frames(frames, tmp_path / "export")


def _cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_missing_answer_columns_are_named(export_dir, bundle_dir, tmp_path):
    answers = pd.read_csv(export_dir / "answers.csv").drop(columns=["rating", "attribute"])
    answers.to_csv(export_dir / "answers.csv", index=False)
    code, output = _cli(
        "analyze", "--responses", export_dir, "--bundle", bundle_dir, "--out", tmp_path / "report"
    )
    assert code == 2
    assert output.startswith("Error: ") and "attribute, rating" in output
    assert "Traceback" not in output
    assert not (tmp_path / "report" / "report.html").exists()


def test_missing_participant_columns_are_named(export_dir, bundle_dir, tmp_path):
    people = pd.read_csv(export_dir / "participants.csv").drop(columns=["duration_s"])
    people.to_csv(export_dir / "participants.csv", index=False)
    with pytest.raises(UserError, match="participants.csv lacks column.*duration_s"):
        analyze(tmp_path / "report", bundle_dir, responses=export_dir)


def test_a_bundle_that_does_not_match_the_study(export_dir, bundle_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(bundle_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["attributes"] = [a for a in manifest["attributes"] if a["key"] != "bending"]
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, output = _cli(
        "analyze", "--responses", export_dir, "--bundle", other, "--out", tmp_path / "report"
    )
    assert code == 2 and "attribute(s) bending" in output and "does not define" in output


def test_an_empty_database(bundle_dir, tmp_path):
    import flask_migrate

    from study_server import create_app

    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "XAISTUDY_BUNDLE": str(bundle_dir), "SECRET_KEY": "k"}
    )
    with app.app_context():
        flask_migrate.upgrade()
    code, output = _cli("analyze", "--db", url, "--bundle", bundle_dir, "--out", tmp_path / "r")
    assert code == 2 and "has no participants" in output


def test_a_csv_of_only_a_header(bundle_dir, tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("participant_id,condition,attribute,rating\n")
    with pytest.raises(UserError, match="no answers"):
        analyze(tmp_path / "report", bundle_dir, responses=path)


def test_ratings_off_the_scale(export_dir, bundle_dir, tmp_path):
    answers = pd.read_csv(export_dir / "answers.csv")
    answers.loc[3, "rating"] = 7
    answers.to_csv(export_dir / "answers.csv", index=False)
    with pytest.raises(UserError, match="outside the scale 1..5"):
        analyze(tmp_path / "report", bundle_dir, responses=export_dir)


def test_accuracy_option_is_checked():
    conditions = ["baseline", "concepts", "counterfactuals"]
    assert parse_accuracy("baseline=0.7, concepts=0.6", conditions) == {
        "baseline": 0.7,
        "concepts": 0.6,
    }
    with pytest.raises(UserError, match="unknown condition 'heatmaps'"):
        parse_accuracy("baseline=0.7,heatmaps=0.6", conditions)
    with pytest.raises(UserError, match=r"outside \[0, 1\]"):
        parse_accuracy("baseline=1.2", conditions)
    with pytest.raises(UserError, match="not CONDITION=VALUE"):
        parse_accuracy("baseline", conditions)


def test_simulate_needs_exactly_one_target(bundle_dir, tmp_path):
    code, output = _cli("simulate", "--bundle", bundle_dir, "--accuracy", "baseline=0.7")
    assert code == 2 and "exactly one of --out" in output
