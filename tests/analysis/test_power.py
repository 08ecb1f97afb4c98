"""Power by simulation: large differences are found, no difference is found at alpha."""

from __future__ import annotations

from click.testing import CliRunner
from PIL import Image

from analysis.power import power_analysis
from xaistudy.cli import cli


def test_power_grows_with_the_difference_and_stays_at_alpha_without_one():
    big = power_analysis({"baseline": 0.5, "concepts": 0.75}, n=80, sims=300, seed=1)
    assert big.loc[0, "power"] > 0.95
    none = power_analysis({"baseline": 0.7, "concepts": 0.7}, n=80, sims=600, seed=2)
    assert none.loc[0, "power"] < 0.09
    small = power_analysis({"baseline": 0.7, "concepts": 0.75}, n=20, sims=300, seed=3)
    more = power_analysis({"baseline": 0.7, "concepts": 0.75}, n=200, sims=300, seed=3)
    assert small.loc[0, "power"] < more.loc[0, "power"]


def test_a_within_study_is_tested_in_pairs_and_gains_from_shared_ability():
    accuracy = {"none": 0.65, "integrated_gradients": 0.75}
    trials = {"n_attributes": 16, "ability_sd": 0.15}
    between = power_analysis(accuracy, n=30, sims=400, seed=4, **trials)
    paired = power_analysis(
        accuracy, n=30, sims=400, seed=4, within=True, correlation=0.8, **trials
    )
    assert paired.loc[0, "power"] > between.loc[0, "power"] + 0.15
    same = {"none": 0.7, "integrated_gradients": 0.7}
    none = power_analysis(same, n=30, sims=800, seed=5, within=True, correlation=0.8, **trials)
    assert none.loc[0, "power"] < 0.08  # a paired test still holds its alpha


def test_power_command_for_a_within_study_and_its_bad_input():
    def run(*args):
        return CliRunner().invoke(
            cli, ["power", "--accuracy", "none=0.6,grad_cam=0.7", "--n", "24", *args]
        )

    result = run("--within", "--trials", "16", "--sims", "100")
    assert result.exit_code == 0, result.output
    assert "N=24 participants, each in every condition -> power" in result.output
    for args, message in [
        (["--correlation", "0.3"], "--correlation goes with --within"),
        (["--within", "--correlation", "1.5"], "--correlation must be in [0, 1)"),
    ]:
        result = run(*args)
        assert (
            result.exit_code == 2 and message in result.output and "Traceback" not in result.output
        )


def test_power_command_prints_and_draws_a_curve(tmp_path):
    curve = tmp_path / "power.png"
    result = CliRunner().invoke(
        cli,
        [
            "power",
            "--accuracy",
            "baseline=0.7,concepts=0.8",
            "--n",
            "60",
            "--sims",
            "100",
            "--curve",
            str(curve),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "concepts vs baseline" in result.output and "power" in result.output
    assert Image.open(curve).size[0] > 300
    assert (tmp_path / "power.csv").read_text().count("\n") > 5
