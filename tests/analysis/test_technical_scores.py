"""The report sets each attribution condition's accuracy beside its method's technical
scores, and correlates them across conditions only where there are enough."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from analysis.load import Responses
from analysis.report import run_analysis, write_report
from analysis.technical import (
    MIN_CONDITIONS,
    accuracy_beside_scores,
    correlation_note,
    rank_correlations,
)

METHODS = ("integrated_gradients", "grad_cam", "lrp", "iba")


def test_the_fixture_bundle_carries_its_technical_scores(bundle):
    technical = bundle.technical.set_index("condition")
    assert list(technical.index) == ["integrated_gradients"]  # the others have none
    assert technical.loc["integrated_gradients", "deletion_gain"] == pytest.approx(0.3)
    assert technical.loc["integrated_gradients", "pointing_game_arms"] == pytest.approx(0.6)


def _by_condition(accuracies: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"condition": c, "accuracy": a, "ci_low": a - 0.05, "ci_high": a + 0.05}
            for c, a in accuracies.items()
        ]
    )


def test_a_score_that_orders_the_conditions_like_accuracy_correlates_fully():
    accuracy = dict(zip(METHODS, (0.55, 0.6, 0.7, 0.8), strict=True))
    technical = pd.DataFrame(
        {
            "condition": METHODS,
            "pointing_game_arms": [0.1, 0.2, 0.5, 0.9],  # same order as accuracy
            "deletion_gain": [0.4, 0.3, 0.2, 0.1],  # the reverse
            "mirror_consistency": [0.5] * 4,  # does not vary
            "stability_across_models": [None] * 4,  # not computed
        }
    )
    table = accuracy_beside_scores(_by_condition(accuracy), technical)
    correlations = rank_correlations(table).set_index("score")
    assert correlations.loc["pointing_game_arms", "rho"] == pytest.approx(1.0)
    assert correlations.loc["deletion_gain", "rho"] == pytest.approx(-1.0)
    assert np.isnan(correlations.loc["mirror_consistency", "rho"])
    assert "stability_across_models" not in correlations.index
    assert set(correlations["n_conditions"]) == {4}
    assert "rests on 4 conditions" in correlation_note(rank_correlations(table))


def test_too_few_conditions_give_no_correlation():
    table = accuracy_beside_scores(
        _by_condition({"integrated_gradients": 0.6, "grad_cam": 0.7, "baseline": 0.5}),
        pd.DataFrame({"condition": ["integrated_gradients", "grad_cam"], "deletion_gain": [1, 2]}),
    )
    assert list(table["condition"]) == ["integrated_gradients", "grad_cam"]  # baseline: none
    correlations = rank_correlations(table)
    assert correlations["rho"].isna().all() and MIN_CONDITIONS > 2
    assert "too few for a rank correlation" in correlation_note(correlations)


def test_the_report_shows_accuracy_beside_the_scores(bundle, tmp_path):
    technical = pd.DataFrame(
        {"condition": METHODS, "pointing_game_arms": [0.1, 0.2, 0.5, 0.9], "deletion_gain": 0.2}
    )
    with_scores = dataclasses.replace(bundle, technical=technical)
    keys = list(bundle.attributes["attribute"])
    rows = [
        (f"p{i}", METHODS[i % 4], key, 5 if (j + i) % 3 else 1)
        for i in range(24)
        for j, key in enumerate(keys)
    ]
    responses = Responses(
        pd.DataFrame(rows, columns=["participant_id", "condition", "attribute", "rating"]),
        None,
        None,
        "test",
    )
    analysis = run_analysis(responses, with_scores, n_boot=100, model="gee")
    write_report(analysis, with_scores, "test", tmp_path)
    csv = pd.read_csv(tmp_path / "technical_scores.csv")
    assert sorted(csv["condition"]) == sorted(METHODS)
    assert {"accuracy", "ci_low", "ci_high", "pointing_game_arms"} <= set(csv.columns)
    correlations = pd.read_csv(tmp_path / "technical_correlations.csv").set_index("score")
    assert correlations.loc["pointing_game_arms", "n_conditions"] == 4
    html = (tmp_path / "report.html").read_text()
    assert "Human accuracy beside the technical scores" in html
    assert "rests on 4 conditions" in html and "accuracy against each technical score" in html
