"""The counterfactual-simulation analysis recovers what simulated participants were set to:
they walk the real server (pre-test pairs, learning trials, post-test pairs of the fixture
bundle) predicting the model's decision with a known pre-test and post-test accuracy per
condition; the analysis finds each accuracy, each condition's gain from pre to post and
its utility over the control inside their intervals."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.counterfactual_simulation import analyze_pairs
from analysis.load import responses_from_frames
from analysis.report import analyze
from analysis.simulate import SimulationSpec
from simulation.runs import simulate_database
from study_server.export import export_frames
from study_server.study import shipped_studies, study_for_conditions, write_study
from xaistudy.cli import cli
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule

PRE = {"none": 0.5, "baseline": 0.5, "integrated_gradients": 0.5}
POST = {"none": 0.55, "baseline": 0.7, "integrated_gradients": 0.9}
EVERYONE = TooFastRule(min_seconds=0.0, min_median_fraction=None)


@pytest.fixture(scope="module")
def simulated(bundle_dir, tmp_path_factory):
    """60 participants (20 per condition) through the server; the database URL."""
    folder = tmp_path_factory.mktemp("pairs")
    source = shipped_studies()["counterfactual-simulation"]
    study = write_study(study_for_conditions(list(POST), 20, source), folder / "s.toml", "t")
    url = f"sqlite:///{folder / 'study.sqlite'}"
    spec = SimulationSpec(accuracy=POST, pre_accuracy=PRE, n=60, seed=4, ability_sd=0.05)
    summary = simulate_database(bundle_dir, url, spec, study=study)
    assert summary.statuses == {"completed": 60}
    assert summary.conditions == dict.fromkeys(POST, 20)
    return url


@pytest.mark.slow
def test_the_analysis_recovers_each_conditions_accuracies_gain_and_utility(
    simulated, bundle_dir, tmp_path
):
    result = analyze(
        tmp_path / "report",
        bundle_dir,
        responses_from_frames(export_frames(simulated), simulated),
        exclusions=EVERYONE,
    )
    accuracy = result.accuracy.set_index(["condition", "phase"])
    for condition in POST:
        for phase, truth in (("pre", PRE[condition]), ("learning", POST[condition]),
                             ("post", POST[condition])):  # fmt: skip
            row = accuracy.loc[(condition, phase)]
            assert row["participants"] == 20 and row["trials"] == 20 * 8
            assert row["ci_low"] <= truth <= row["ci_high"], (condition, phase)
    gain = result.gain.set_index("condition")
    for condition in POST:
        truth = POST[condition] - PRE[condition]
        assert gain.loc[condition, "ci_low"] <= truth <= gain.loc[condition, "ci_high"]
    assert len(result.participants) == 60
    utility = result.utility.set_index("condition")
    assert sorted(utility.index) == ["baseline", "integrated_gradients"]
    for condition in utility.index:
        truth = (POST[condition] - PRE[condition]) - (POST["none"] - PRE["none"])
        row = utility.loc[condition]
        assert row["ci_low"] <= truth <= row["ci_high"], condition
        assert row["odds_ratio"] > 1
    assert utility.loc["integrated_gradients", "p_value"] < 0.001  # a 35-point gain is clear
    # flipping and non-flipping pairs: half of each test, each answered as well
    by_flip = result.by_flip.set_index(["condition", "phase", "flips"])
    assert (by_flip["trials"] == 20 * 4).all() and len(by_flip) == 3 * 2 * 2
    report = (tmp_path / "report" / "report.html").read_text()
    assert "Utility: gain over the control" in report and "flips the model" in report
    written = pd.read_csv(tmp_path / "report" / "pairs_utility.csv")
    assert set(written["condition"]) == {"baseline", "integrated_gradients"}


@pytest.mark.slow
def test_analyze_on_the_command_line_prints_the_gain_and_utility(simulated, bundle_dir, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["analyze", "--db", simulated, "--bundle", str(bundle_dir), "--out",
         str(tmp_path / "r"), "--min-seconds", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "60 participants analyzed, 0 excluded (counterfactual simulation)" in result.output
    assert "none             pre      accuracy" in result.output
    assert "integrated_gradients utility (gain over none's) +" in result.output


def test_a_forward_simulation_analysis_refuses_pairs_and_the_other_way_round(simulated):
    from analysis.forward_simulation import analyze_trials

    responses = responses_from_frames(export_frames(simulated), "pairs")
    assert responses.is_counterfactual_simulation and not responses.is_forward_simulation
    with pytest.raises(UserError, match="pairs holds no forward-simulation or distinction trials"):
        analyze_trials(responses, EVERYONE)
    frames = export_frames(simulated)
    learning = frames["trials"][frames["trials"]["phase"] == "learning"]
    only_learning = responses_from_frames({**frames, "trials": learning}, "learning only")
    with pytest.raises(UserError, match="learning only: no included participant took both"):
        analyze_pairs(only_learning, EVERYONE)
