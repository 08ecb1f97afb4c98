"""The within-subjects analysis recovers what simulated participants were set to: they
walk the real server through both blocks of the shipped within study (the fixture
bundle's 8 learning and 16 test scenes: two blocks of 4 and 8), each block's trials
answered with the set accuracy of its condition plus a set practice gain in the second
block. The per-condition accuracies, the within-subject contrast and the period effect
land inside their intervals."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.load import responses_from_frames
from analysis.report import analyze
from analysis.simulate import SimulationSpec
from simulation.runs import simulate_database
from study_server.export import export_frames
from study_server.study import shipped_studies, study_for_conditions, write_study
from xaistudy.too_fast import TooFastRule

TRUTH = {"none": 0.55, "integrated_gradients": 0.8}
PRACTICE = 0.1  # accuracy gained in the second block, whichever condition it is
N = 40


@pytest.fixture(scope="module")
def simulated(bundle_dir, tmp_path_factory):
    """40 participants through the within study's two blocks; the database URL."""
    folder = tmp_path_factory.mktemp("within")
    source = shipped_studies()["within-forward-simulation"]
    study = write_study(study_for_conditions(list(TRUTH), N, source), folder / "s.toml", "t")
    url = f"sqlite:///{folder / 'study.sqlite'}"
    spec = SimulationSpec(accuracy=TRUTH, n=N, seed=2, ability_sd=0.05, practice=PRACTICE)
    summary = simulate_database(bundle_dir, url, spec, study=study)
    assert summary.statuses == {"completed": N}
    return url


@pytest.mark.slow
def test_the_analysis_recovers_each_condition_the_contrast_and_the_period_effect(
    simulated, bundle_dir, tmp_path
):
    frames = export_frames(simulated)
    orders = frames["participants"]["condition_order"].value_counts()
    assert orders.to_dict() == {
        "none|integrated_gradients": N // 2,
        "integrated_gradients|none": N // 2,
    }
    result = analyze(
        tmp_path / "report",
        bundle_dir,
        responses_from_frames(frames, simulated),
        exclusions=TooFastRule(min_seconds=0.0, min_median_fraction=None),
    )
    within = result.within
    assert within is not None and within.reference == "none"
    accuracy = within.accuracy.set_index("condition")
    for condition, truth in TRUTH.items():
        row = accuracy.loc[condition]
        assert row["participants"] == N and row["trials"] == N * 8
        expected = truth + PRACTICE / 2  # half the participants meet it in block 2
        assert row["ci_low"] <= expected <= row["ci_high"], condition
    contrast = within.contrasts.set_index("condition").loc["integrated_gradients"]
    gain = TRUTH["integrated_gradients"] - TRUTH["none"]
    assert contrast["ci_low"] <= gain <= contrast["ci_high"]
    assert contrast["or_ci_low"] > 1 and contrast["gee_ci_low"] > 1  # a clear gain
    period = within.periods.set_index("period").loc[2]
    assert period["difference_ci_low"] <= PRACTICE <= period["difference_ci_high"]
    assert period["odds_ratio"] > 1
    report = (tmp_path / "report" / "report.html").read_text()
    assert "Within subjects: conditions compared within participants" in report
    assert "Period (order) effect" in report
    written = pd.read_csv(tmp_path / "report" / "within_contrasts.csv")
    assert list(written["condition"]) == ["integrated_gradients"]
    # the questionnaire after both blocks is reported per order met, not per first block
    groups = set(result.questionnaires.items["condition"])
    assert groups == {"none > integrated_gradients", "integrated_gradients > none"}


def test_a_between_subjects_study_has_no_within_section(tmp_path):
    from analysis.within import is_within

    trials = pd.DataFrame({"period": [1, 1], "condition": ["none", "baseline"]})
    assert not is_within(trials)
    assert not is_within(trials.drop(columns="period"))  # an export made before periods
    assert is_within(pd.DataFrame({"period": [1, 2]}))
