"""The report sets each condition's accuracy beside what trivial strategies would score."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from analysis.load import Responses
from analysis.report import run_analysis, write_report
from analysis.scoring import ScoringRule, score_study, trivial_strategies


@pytest.fixture()
def two_of_seven(bundle):
    """The fixture bundle with a hand-made answer key: only the first two attributes are
    relied on."""
    attributes = bundle.attributes.copy()
    attributes["relevant"] = [i < 2 for i in range(len(attributes))]
    return dataclasses.replace(bundle, attributes=attributes)


def _answers(bundle, participants: int = 12) -> Responses:
    keys = list(bundle.attributes["attribute"])
    rows = [
        (f"p{i}", ("baseline", "concepts")[i % 2], key, 1 + (i + j) % 5)
        for i in range(participants)
        for j, key in enumerate(keys)
    ]
    columns = ["participant_id", "condition", "attribute", "rating"]
    return Responses(pd.DataFrame(rows, columns=columns), None, None, "test")


def test_trivial_accuracies_follow_the_answer_key_and_the_rule(two_of_seven):
    n = len(two_of_seven.attributes)
    scored = score_study(_answers(two_of_seven), two_of_seven)
    table = trivial_strategies(scored).set_index("condition")
    assert list(table.index) == ["baseline", "concepts"]
    assert table["relies_on_everything"].tolist() == pytest.approx([2 / n] * 2)
    assert table["relies_on_nothing"].tolist() == pytest.approx([(n - 2) / n] * 2)
    assert table["neutral_everything"].tolist() == [0.0, 0.0]  # 3 is never correct
    # A rule that counts 3 as "relies on" makes the neutral answer score like "relies on".
    lenient = score_study(_answers(two_of_seven), two_of_seven, ScoringRule.parse("3,4,5", "1,2"))
    assert trivial_strategies(lenient)["neutral_everything"].tolist() == pytest.approx([2 / n] * 2)


def test_report_shows_the_trivial_strategies_beside_each_condition(two_of_seven, tmp_path):
    n = len(two_of_seven.attributes)
    analysis = run_analysis(_answers(two_of_seven), two_of_seven, n_boot=100, model="gee")
    write_report(analysis, two_of_seven, "test", tmp_path)
    csv = pd.read_csv(tmp_path / "trivial_strategies.csv").set_index("condition")
    assert csv.loc["concepts", "relies_on_nothing"] == pytest.approx((n - 2) / n)
    html = (tmp_path / "report.html").read_text()
    assert "Against trivial strategies" in html
    assert f"{(n - 2) / n:.3f}" in html and f"{2 / n:.3f}" in html
    assert "relies_on_everything" in html and "neutral_everything" in html
