"""The questionnaire analysis recovers what simulated participants were set to: they walk
the real server (the shipped forward-simulation study, its trials shortened) answering
each Likert item around a set mean per item and condition, and the pre/post item with a
set change per condition. Their draws are keyed by their rank in the condition, so the
server's random assignment changes nothing: one seed, one simulated study. 99% intervals:
18 cells at 95% would miss one by chance."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from analysis.load import read_export, responses_from_frames
from analysis.questionnaires import analyze_questionnaires
from analysis.report import analyze
from analysis.simulate import ScaleAnswers, SimulationSpec
from simulation.runs import simulate_database
from study_server.export import export_frames, write_export
from study_server.study import default_study_path, study_for_conditions, write_study
from xaistudy.cli.analysis import summary_lines
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule

CONDITIONS = ["none", "baseline", "integrated_gradients"]
TRUST = {"none": 2.5, "baseline": 3.5, "integrated_gradients": 4.0}  # post.trust, 5 points
OFFSET = {"none": -1.0, "baseline": 0.0, "integrated_gradients": 0.5}  # from the midpoint
CHANGE = {"none": 0.3, "baseline": 1.0, "integrated_gradients": 1.5}  # pre -> post
FORWARD = default_study_path().parent / "forward-simulation.toml"
N = 20  # per condition


@pytest.fixture(scope="module")
def simulated(bundle_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scales")
    data = study_for_conditions(CONDITIONS, N, FORWARD)
    data["forward_simulation"].update(learning_trials=2, test_trials=2)
    study = write_study(data, folder / "s.toml", "t")
    url = f"sqlite:///{folder / 'study.sqlite'}"
    scales = ScaleAnswers(means={"post.trust": TRUST}, offset=OFFSET, change=CHANGE)
    spec = SimulationSpec(
        accuracy=dict.fromkeys(CONDITIONS, 0.7), n=3 * N, seed=0, ability_sd=0.0, scales=scales
    )
    summary = simulate_database(bundle_dir, url, spec, study=study)
    assert summary.statuses == {"completed": 3 * N}
    return url


def _set_mean(questionnaire: str, item: str, point: str, condition: str) -> float:
    if (questionnaire, item) == ("post", "trust"):
        return TRUST[condition]
    points = 7 if questionnaire == "predict" else 5
    change = CHANGE[condition] if point == "after-learning" else 0.0
    return (points + 1) / 2 + OFFSET[condition] + change


@pytest.mark.slow
def test_the_analysis_recovers_each_items_mean_and_each_change(simulated, bundle_dir, tmp_path):
    result = analyze(
        tmp_path / "report",
        bundle_dir,
        responses_from_frames(export_frames(simulated), simulated),
        exclusions=TooFastRule(min_seconds=0.0, min_median_fraction=None),
        level=0.99,
    )
    q = result.questionnaires
    assert len(q.items) == 3 * (3 + 2)  # post's three items, predict at two points
    assert set(q.items["n"]) == {N}
    for _, row in q.items.iterrows():
        truth = _set_mean(row["questionnaire"], row["item"], row["point"], row["condition"])
        assert row["mean_ci_low"] <= truth <= row["mean_ci_high"], dict(row)
        assert row["median_ci_low"] <= row["median"] <= row["median_ci_high"]
    change = q.change.set_index("condition")
    assert set(change["pre"]) == {"after-intro"} and set(change["post"]) == {"after-learning"}
    for condition, truth in CHANGE.items():
        row = change.loc[condition]
        assert row["n"] == N and row["ci_low"] <= truth <= row["ci_high"], condition
    assert change.loc["integrated_gradients", "p_value"] < 0.001  # 1.5 points up is clear
    between = q.between.set_index(["questionnaire", "item", "point"])
    assert between.loc[("post", "trust", "after-test"), "p_value"] < 0.001
    assert set(between["conditions"]) == {3}

    report = tmp_path / "report"
    html = (report / "report.html").read_text()
    assert "<h2>Questionnaires</h2>" in html and "Wilcoxon signed-rank" in html
    for name in ("items", "change", "between", "text"):
        assert (report / f"questionnaire_{name}.csv").is_file(), name
    texts = pd.read_csv(report / "questionnaire_text.csv")
    assert 0 < len(texts) < 3 * N and set(texts["item"]) == {"comment"}  # ~30% comment
    lines = summary_lines(result)
    assert re.search(r"post\.trust at after-test: .*none \d\.\d\d \[\d\.\d\d, \d\.\d\d\]", lines)
    assert "predict.can_predict integrated_gradients change after-intro -> after-learning +1." in (
        lines
    )


@pytest.mark.slow
def test_an_export_folder_is_read_with_its_questionnaire(simulated, tmp_path):
    write_export(simulated, tmp_path / "export")
    responses = read_export(tmp_path / "export")
    assert len(responses.questionnaire) == len(export_frames(simulated)["questionnaire"])
    table = responses.questionnaire.copy()
    table.loc[table.index[0], "value"] = 9
    responses.questionnaire = table
    with pytest.raises(UserError, match="questionnaire value 9 of participant .* outside"):
        responses_from_frames(
            {"participants": responses.participants, "answers": responses.answers,
             "trials": responses.trials, "questionnaire": table}, "edited",
        )  # fmt: skip


def test_unchanged_answers_and_one_condition_give_no_test_rather_than_a_failure():
    rows = [
        {"participant_id": str(p), "condition": "baseline", "questionnaire": "q",
         "point": point, "item": "i", "value": 3, "text": None,
         "answered_at": f"2026-01-01T0{int(point == 'after-learning')}:00:00+00:00"}
        for p in range(5)
        for point in ("after-intro", "after-learning")
    ]  # fmt: skip
    frame = pd.DataFrame(rows)
    result = analyze_questionnaires(frame, frame["participant_id"], n_boot=200)
    assert result.change.loc[0, "change"] == 0 and np.isnan(result.change.loc[0, "p_value"])
    assert result.between["p_value"].isna().all() and set(result.between["conditions"]) == {1}
    assert analyze_questionnaires(frame, pd.Series(["nobody"])) is None
