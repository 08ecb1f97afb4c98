"""The forward-simulation analysis recovers what simulated participants were set to: they
walk the real server (learning and test trials of the fixture bundle) predicting the
model's decision with a known accuracy per condition. Their draws are keyed by their
rank in the condition and the scene, so the server's random assignment tie-breaks and
trial orders change nothing: one seed, one simulated study."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.forward_simulation import analyze_trials
from analysis.load import responses_from_frames
from analysis.report import analyze
from analysis.simulate import SimulationSpec
from simulation.runs import simulate_database
from study_server.export import export_frames
from study_server.study import default_study_path, study_for_conditions, write_study
from xaistudy.cli import cli
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule

TRUTH = {"none": 0.55, "baseline": 0.7, "integrated_gradients": 0.9}
FORWARD = default_study_path().parent / "forward-simulation.toml"


@pytest.fixture(scope="module")
def simulated(bundle_dir, tmp_path_factory):
    """45 participants (15 per condition) through the server; the database URL."""
    folder = tmp_path_factory.mktemp("forward")
    study = write_study(study_for_conditions(list(TRUTH), 15, FORWARD), folder / "s.toml", "t")
    url = f"sqlite:///{folder / 'study.sqlite'}"
    spec = SimulationSpec(accuracy=TRUTH, n=45, seed=4, ability_sd=0.05)
    summary = simulate_database(bundle_dir, url, spec, study=study)
    assert summary.statuses == {"completed": 45}
    assert summary.conditions == dict.fromkeys(TRUTH, 15)
    return url


@pytest.mark.slow
def test_the_analysis_recovers_each_conditions_accuracy_and_utility(
    simulated, bundle_dir, tmp_path
):
    result = analyze(
        tmp_path / "report",
        bundle_dir,
        responses_from_frames(export_frames(simulated), simulated),
        exclusions=TooFastRule(min_seconds=0.0, min_median_fraction=None),
    )
    accuracy = result.accuracy.set_index(["condition", "phase"])
    for condition, truth in TRUTH.items():
        for phase, trials in (("learning", 15 * 8), ("test", 15 * 16)):
            row = accuracy.loc[(condition, phase)]
            assert row["participants"] == 15 and row["trials"] == trials
            assert row["ci_low"] <= truth <= row["ci_high"], (condition, phase)
            assert row["median_response_ms"] == 900  # what the simulated browser reports
    utility = result.utility.set_index("condition")
    assert sorted(utility.index) == ["baseline", "integrated_gradients"]
    for condition in utility.index:
        gain = TRUTH[condition] - TRUTH["none"]
        row = utility.loc[condition]
        assert row["ci_low"] <= gain <= row["ci_high"], condition
        assert row["odds_ratio"] > 1
    assert utility.loc["integrated_gradients", "p_value"] < 0.001  # a 35-point gain is clear
    report = (tmp_path / "report" / "report.html").read_text()
    assert "Utility: test accuracy gained over the control" in report
    written = pd.read_csv(tmp_path / "report" / "simulation_utility.csv")
    assert set(written["condition"]) == {"baseline", "integrated_gradients"}


@pytest.mark.slow
def test_analyze_on_the_command_line_prints_the_gain(simulated, bundle_dir, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["analyze", "--db", simulated, "--bundle", str(bundle_dir), "--out",
         str(tmp_path / "r"), "--min-seconds", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "45 participants analyzed, 0 excluded (forward simulation)" in result.output
    assert "integrated_gradients gain over none +" in result.output
    assert "none             test     accuracy" in result.output


def test_an_unfinished_participant_is_excluded_and_a_study_without_trials_refused(
    simulated,
):
    frames = export_frames(simulated)
    participants = frames["participants"].copy()
    first = participants["participant_id"].iloc[0]
    participants.loc[participants["participant_id"] == first, "status"] = "started"
    responses = responses_from_frames({**frames, "participants": participants}, "edited")
    result = analyze_trials(responses, TooFastRule(min_seconds=0.0, min_median_fraction=None))
    assert int(result.sample["included"].sum()) == 44
    assert str(first) not in set(result.trials["participant_id"])
    no_trials = {**frames, "trials": frames["trials"].iloc[:0]}
    with pytest.raises(UserError, match="holds no answers to analyze"):
        responses_from_frames(no_trials, "empty")
