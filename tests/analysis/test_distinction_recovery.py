"""The distinction analysis recovers what simulated participants were set to: they walk
the real server (practice and test trials of the fixture bundle), each picking the map of
the model's decision with a known chance per condition, from what the maps explain (the
panel sides are the server's draw); and a chance-level condition is not called better
than chance."""

from __future__ import annotations

import pytest

from analysis.load import responses_from_frames
from analysis.report import analyze
from analysis.simulate import SimulationSpec
from simulation.runs import simulate_database
from study_server.export import export_frames
from study_server.study import default_study_path, study_for_conditions, write_study
from xaistudy.too_fast import TooFastRule

TRUTH = {"integrated_gradients": 0.85, "grad_cam": 0.5}
DISTINCTION = default_study_path().parent / "distinction.toml"


@pytest.mark.slow
def test_the_analysis_recovers_each_conditions_accuracy_against_chance(bundle_dir, tmp_path):
    data = study_for_conditions(list(TRUTH), 12, DISTINCTION)
    study = write_study(data, tmp_path / "s.toml", "t")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    spec = SimulationSpec(accuracy=TRUTH, n=24, seed=6, ability_sd=0.05)
    summary = simulate_database(bundle_dir, url, spec, study=study)
    assert summary.statuses == {"completed": 24}

    result = analyze(
        tmp_path / "report",
        bundle_dir,
        responses_from_frames(export_frames(url), url),
        exclusions=TooFastRule(min_seconds=0.0, min_median_fraction=None),
    )
    assert result.design == "distinction" and result.utility.empty  # no control to gain over
    accuracy = result.accuracy.set_index(["condition", "phase"])
    for condition, truth in TRUTH.items():
        row = accuracy.loc[(condition, "test")]
        assert row["participants"] == 12 and row["trials"] == 12 * 16
        assert row["ci_low"] <= truth <= row["ci_high"], condition
    assert accuracy.loc[("integrated_gradients", "test"), "p_chance"] < 0.001
    assert accuracy.loc[("grad_cam", "test"), "p_chance"] > 0.01
    report = (tmp_path / "report" / "report.html").read_text()
    assert "can participants tell the model's explanation from another?" in report
    assert "Distinction accuracy per condition and phase" in report
