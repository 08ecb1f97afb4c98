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
