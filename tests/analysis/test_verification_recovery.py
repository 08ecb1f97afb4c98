"""The verification analysis recovers what simulated participants were set to: they walk
the real server (learning and test trials of the fixture bundle) accepting the model's
decision with a known chance where it is right and another where it is wrong, per
condition. Their draws are keyed by their rank in the condition and the scene, so the
server's assignment tie-breaks and trial orders change nothing: one seed, one study."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.load import responses_from_frames
from analysis.report import analyze
from analysis.simulate import SimulationSpec, parse_acceptance
from analysis.verification import analyze_verification
from simulation.runs import simulate_database
from study_server.export import export_frames
from study_server.study import default_study_path, study_for_conditions, write_study
from xaistudy.cli import cli
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule

# (P(right verdict | model right), P(right verdict | model wrong)) per condition
ACCEPTANCE = {"none": (0.85, 0.6), "baseline": (0.85, 0.45), "integrated_gradients": (0.9, 0.2)}
VERIFY = default_study_path().parent / "verification.toml"
NO_EXCLUSIONS = TooFastRule(min_seconds=0.0, min_median_fraction=None)


def expected_accuracy(condition: str, model_right_share: float) -> float:
    accept_right, accept_wrong = ACCEPTANCE[condition]
    return model_right_share * accept_right + (1 - model_right_share) * (1 - accept_wrong)


@pytest.fixture(scope="module")
def simulated(bundle_dir, tmp_path_factory):
    """45 participants (15 per condition) through the server; the database URL."""
    folder = tmp_path_factory.mktemp("verification")
    data = study_for_conditions(list(ACCEPTANCE), 15, VERIFY)
    study = write_study(data, folder / "s.toml", "t")
    url = f"sqlite:///{folder / 'study.sqlite'}"
    spec = SimulationSpec(
        accuracy=dict.fromkeys(ACCEPTANCE, 0.5), acceptance=ACCEPTANCE, n=45, seed=4,
        ability_sd=0.05,
    )  # fmt: skip
    summary = simulate_database(bundle_dir, url, spec, study=study)
    assert summary.statuses == {"completed": 45}
    assert summary.conditions == dict.fromkeys(ACCEPTANCE, 15)
    return url


@pytest.mark.slow
def test_the_analysis_recovers_acceptance_reliance_accuracy_and_gain(
    simulated, bundle_dir, tmp_path
):
    result = analyze(
        tmp_path / "report",
        bundle_dir,
        responses_from_frames(export_frames(simulated), simulated),
        exclusions=NO_EXCLUSIONS,
    )
    trials = result.trials
    accuracy = result.accuracy.set_index(["condition", "phase"])
    reliance = result.reliance.set_index(["condition", "phase"])
    for condition, (accept_right, accept_wrong) in ACCEPTANCE.items():
        for phase, count in (("learning", 15 * 8), ("test", 15 * 16)):
            share = trials[trials["phase"] == phase]["model_correct"].mean()
            row = accuracy.loc[(condition, phase)]
            assert row["participants"] == 15 and row["trials"] == count
            truth = expected_accuracy(condition, share)
            assert row["ci_low"] <= truth <= row["ci_high"], (condition, phase)
        row = reliance.loc[(condition, "test")]
        assert row["model_right_trials"] + row["model_wrong_trials"] == 15 * 16
        over, under = accept_wrong, 1 - accept_right
        assert row["over_reliance_ci_low"] <= over <= row["over_reliance_ci_high"], condition
        assert row["under_reliance_ci_low"] <= under <= row["under_reliance_ci_high"], condition
    utility = result.utility.set_index("condition")
    assert sorted(utility.index) == ["baseline", "integrated_gradients"]
    for condition in utility.index:
        gain = expected_accuracy(condition, 0.5) - expected_accuracy("none", 0.5)
        row = utility.loc[condition]
        assert row["ci_low"] <= gain <= row["ci_high"], condition
        assert row["odds_ratio"] > 1
    assert utility.loc["integrated_gradients", "p_value"] < 0.001  # a 22-point gain is clear
    report = (tmp_path / "report" / "report.html").read_text()
    assert "Reliance on the model" in report and "can participants tell" in report
    written = pd.read_csv(tmp_path / "report" / "verification_reliance.csv")
    assert {"over_reliance", "under_reliance_ci_high"} <= set(written.columns)


@pytest.mark.slow
def test_analyze_on_the_command_line_prints_reliance_and_gain(simulated, bundle_dir, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["analyze", "--db", simulated, "--bundle", str(bundle_dir), "--out",
         str(tmp_path / "r"), "--min-seconds", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "45 participants analyzed, 0 excluded (verification)" in result.output
    assert "integrated_gradients test     over-reliance 0." in result.output
    assert "integrated_gradients gain over none +" in result.output


def test_a_forward_simulation_analysis_refuses_verification_trials(simulated):
    from analysis.forward_simulation import analyze_trials

    responses = responses_from_frames(export_frames(simulated), simulated)
    assert responses.is_verification and not responses.is_forward_simulation
    with pytest.raises(UserError, match="holds no forward-simulation or distinction trials"):
        analyze_trials(responses, NO_EXCLUSIONS)
    result = analyze_verification(responses, NO_EXCLUSIONS, n_boot=200)
    assert result.conditions[0] == "none"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("none=0.8", "--acceptance none='0.8' is not RIGHT/WRONG"),
        ("none=0.8/1.2", "--acceptance none=1.2 is outside [0, 1]"),
        ("lime=0.8/0.2", "--acceptance names unknown condition 'lime'"),
        ("", "--acceptance is empty"),
    ],
)
def test_bad_acceptance_is_one_clear_error(text, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_acceptance(text, ["none", "baseline"])
    assert parse_acceptance("none=0.8/0.3", ["none"]) == {"none": (0.8, 0.3)}


def test_simulate_on_the_command_line_takes_the_acceptance(bundle_dir, tmp_path):
    data = study_for_conditions(["none", "baseline"], 15, VERIFY)
    study = write_study(data, tmp_path / "s.toml", "t")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    base = ["simulate", "--bundle", str(bundle_dir), "--n", "2", "--db", url]
    result = CliRunner().invoke(cli, [*base, "--study", str(study)])
    assert result.exit_code != 0 and "give --accuracy" in result.output
    result = CliRunner().invoke(
        cli, [*base, "--study", str(study), "--acceptance", "none=1/1,baseline=0/0"]
    )
    assert result.exit_code == 0, result.output
    trials = export_frames(url)["trials"]
    verdicts = trials.groupby("condition")["verdict"].unique()
    assert list(verdicts["none"]) == ["right"] and list(verdicts["baseline"]) == ["wrong"]
