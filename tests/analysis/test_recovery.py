"""Simulate a study with known accuracies, analyze it, and find them again."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from xaistudy.cli import cli

TARGETS = {"baseline": 0.8, "counterfactuals": 0.65, "concepts": 0.5}


def test_simulate_then_analyze_recovers_the_study(bundle_dir, bundle, tmp_path):
    """One simulated study (simulating and analyzing it is the costly part), five checks."""
    out = tmp_path
    accuracy = ",".join(f"{k}={v}" for k, v in TARGETS.items())
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--bundle",
            str(bundle_dir),
            "--n",
            "240",
            "--accuracy",
            accuracy,
            "--attention-fail",
            "0.05",
            "--too-fast",
            "0.05",
            "--seed",
            "3",
            "--out",
            str(out / "responses"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        [
            "analyze",
            "--responses",
            str(out / "responses"),
            "--bundle",
            str(bundle_dir),
            "--out",
            str(out / "report"),
            "--bootstrap",
            "1000",
        ],
    )
    assert result.exit_code == 0, result.output
    check_set_accuracies_lie_within_the_reported_intervals(out)
    check_exclusions_are_counted_exactly(out)
    check_cells_carry_the_ground_truth_and_sum_to_the_conditions(out, bundle)
    check_comparisons_and_model_point_the_right_way(out)
    check_report_is_one_self_contained_page(out)


def check_set_accuracies_lie_within_the_reported_intervals(simulated):
    table = pd.read_csv(simulated / "report" / "accuracy_by_condition.csv")
    assert list(table.columns[:5]) == ["condition", "accuracy", "ci_low", "ci_high", "n"]
    assert set(table["condition"]) == set(TARGETS)
    for _, row in table.iterrows():
        assert row["ci_low"] <= TARGETS[row["condition"]] <= row["ci_high"], row.to_dict()
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
        assert row["ci_high"] - row["ci_low"] < 0.2  # 80 people x 7 answers: a tight interval


def check_exclusions_are_counted_exactly(simulated):
    participants = pd.read_csv(simulated / "responses" / "participants.csv")
    failed = int((~participants["attention_passed"]).sum())
    fast = int((participants["attention_passed"] & (participants["duration_s"] < 100)).sum())
    assert failed > 0 and fast > 0
    exclusions = pd.read_csv(simulated / "report" / "exclusions.csv").set_index("reason")
    assert exclusions.loc["attention_failed", "n_excluded"] == failed
    assert exclusions.loc["too_fast", "n_excluded"] == fast
    assert (
        exclusions.loc[
            ["preview", "screened_out", "incomplete", "admin_excluded"], "n_excluded"
        ].sum()
        == 0
    )
    table = pd.read_csv(simulated / "report" / "accuracy_by_condition.csv")
    assert table["n"].sum() == len(participants) - failed - fast
    sample = pd.read_csv(simulated / "report" / "sample.csv").set_index("condition")
    assert sample["recorded"].to_dict() == participants["condition"].value_counts().to_dict()
    assert sample["excluded"].sum() == failed + fast
    assert sample["included"].to_dict() == table.set_index("condition")["n"].to_dict()


def check_cells_carry_the_ground_truth_and_sum_to_the_conditions(simulated, bundle):
    cells = pd.read_csv(simulated / "report" / "accuracy_by_condition_attribute.csv")
    assert list(cells.columns) == [
        "condition",
        "attribute",
        "accuracy",
        "ci_low",
        "ci_high",
        "n",
        "relevant",
    ]
    assert len(cells) == len(TARGETS) * len(bundle.attributes)
    truth = dict(zip(bundle.attributes["attribute"], bundle.attributes["relevant"], strict=True))
    assert all(cells["relevant"] == cells["attribute"].map(truth))
    by_condition = pd.read_csv(simulated / "report" / "accuracy_by_condition.csv")
    mean_cells = cells.groupby("condition")["accuracy"].mean()
    for _, row in by_condition.iterrows():
        assert mean_cells[row["condition"]] == pytest.approx(row["accuracy"], abs=1e-9)


def check_comparisons_and_model_point_the_right_way(simulated):
    comparisons = pd.read_csv(simulated / "report" / "comparisons.csv")
    row = comparisons.set_index(["condition_a", "condition_b"]).loc[("concepts", "baseline")]
    assert row["ci_low"] <= -0.3 <= row["ci_high"]
    assert row["cohens_h"] < 0 and row["odds_ratio"] < 1 and row["p_holm"] < 0.001
    model = pd.read_csv(simulated / "report" / "mixed_model.csv").set_index("term")
    assert model.loc["condition[concepts]", "ci_high"] < 0


def check_report_is_one_self_contained_page(simulated):
    page = (simulated / "report" / "report.html").read_text()
    for heading in (
        "Exclusions",
        "Accuracy by condition and attribute",
        "Ratings per attribute",
        "Ground truth",
        "Logistic model",
        "Time spent per page",
    ):
        assert heading in page
    assert page.count("data:image/png;base64,") >= 4
    assert "BinomialBayesMixedGLM" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
