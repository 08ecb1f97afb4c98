"""Scoring rules and exclusions on hand-made responses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.load import Responses
from analysis.scoring import ScoringRule, score_study
from analysis.statistics import accuracy_tables, bootstrap, participant_matrix
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule


def test_default_rule_counts_4_5_as_relies_and_never_3():
    rule = ScoringRule()
    ratings = np.array([1, 2, 3, 4, 5])
    assert rule.correct(ratings, np.ones(5, bool)).tolist() == [0, 0, 0, 1, 1]
    assert rule.correct(ratings, np.zeros(5, bool)).tolist() == [1, 1, 0, 0, 0]


def test_rule_is_configurable_and_checked():
    rule = ScoringRule.parse("3,4,5", "1,2")
    assert rule.correct(np.array([3]), np.array([True])).tolist() == [True]
    with pytest.raises(UserError, match="overlap"):
        ScoringRule.parse("3,4", "3")
    with pytest.raises(UserError, match="outside the rating scale"):
        ScoringRule.parse("4,6", "1")


def _participants(rows):
    columns = [
        "participant_id",
        "condition",
        "status",
        "preview",
        "excluded",
        "attention_passed",
        "duration_s",
    ]
    return pd.DataFrame(rows, columns=columns)


def test_each_exclusion_counted_once_under_its_first_reason(bundle):
    keys = list(bundle.attributes["attribute"])
    people = _participants(
        [
            ("p1", "baseline", "completed", True, False, True, 600),  # preview
            ("p2", "baseline", "screened_out", False, False, None, None),  # screened out
            ("p3", "concepts", "abandoned", False, False, True, None),  # incomplete
            ("p4", "concepts", "completed", False, True, False, 600),  # admin (and attention)
            ("p5", "concepts", "completed", False, False, False, 600),  # attention
            ("p6", "baseline", "completed", False, False, True, 50),  # too fast
            ("p7", "baseline", "completed", False, False, True, 610),
            ("p8", "concepts", "completed", False, False, True, 590),
        ]
    )
    answers = pd.DataFrame(
        [
            (p, c, k, 5)
            for p, c in zip(people["participant_id"], people["condition"], strict=True)
            for k in keys
        ],
        columns=["participant_id", "condition", "attribute", "rating"],
    )
    for column in ("preview", "excluded", "attention_passed"):
        people[column] = people[column].astype("boolean")
    scored = score_study(
        Responses(answers, people, None, "test"), bundle, exclusions=TooFastRule(min_seconds=120)
    )
    table = scored.exclusions.set_index("reason")
    assert table["n_excluded"].to_dict() == {
        "preview": 1,
        "screened_out": 1,
        "incomplete": 1,
        "admin_excluded": 1,
        "attention_failed": 1,
        "too_fast": 1,
    }
    assert table.loc["attention_failed", "n_matching"] == 2
    assert sorted(scored.participants["participant_id"]) == ["p7", "p8"]
    # All 5s: correct exactly for the relevant attributes.
    relevant = bundle.attributes["relevant"].mean()
    assert scored.answers["correct"].mean() == pytest.approx(relevant)


def test_bootstrap_intervals_bracket_exact_accuracies(bundle):
    keys = list(bundle.attributes["attribute"])
    truth = dict(zip(keys, bundle.attributes["relevant"], strict=True))
    rows = []
    for i in range(40):
        condition = "baseline" if i % 2 else "concepts"
        for j, key in enumerate(keys):
            right = (i + j) % 4 != 0 if condition == "baseline" else (i + j) % 2 == 0
            rating = (5 if truth[key] else 1) if right else 3
            rows.append((f"p{i}", condition, key, rating))
    answers = pd.DataFrame(rows, columns=["participant_id", "condition", "attribute", "rating"])
    scored = score_study(Responses(answers, None, None, "test"), bundle)
    assert not scored.exclusions["applicable"].any()
    matrix = participant_matrix(scored)
    boot = bootstrap(matrix, n_boot=500, seed=1)
    tables = accuracy_tables(matrix, boot, truth)
    by = tables.by_condition.set_index("condition")
    expected = answers.assign(ok=answers["rating"] != 3).groupby("condition")["ok"].mean()
    for condition in ("baseline", "concepts"):
        assert by.loc[condition, "accuracy"] == pytest.approx(expected[condition])
        assert by.loc[condition, "ci_low"] <= expected[condition] <= by.loc[condition, "ci_high"]
        assert by.loc[condition, "n"] == 20
    # The same seed gives the same intervals.
    again = accuracy_tables(matrix, bootstrap(matrix, n_boot=500, seed=1), truth)
    pd.testing.assert_frame_equal(again.by_condition, tables.by_condition)
