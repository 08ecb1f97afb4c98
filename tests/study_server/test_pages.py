"""The pages of the participant flow: their order, their end statuses, their templates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from simulation.client import FILLERS
from study_server import pages
from study_server.study import default_study_path, load_study
from xaistudy.vocabulary import Status

STUDY = load_study(None)
FORWARD = load_study(default_study_path().parent / "forward-simulation.toml")
VERIFY = load_study(default_study_path().parent / "verification.toml")
DISTINCTION = load_study(default_study_path().parent / "distinction.toml")
COUNTERFACTUAL = load_study(default_study_path().parent / "counterfactual-simulation.toml")
WITHIN = load_study(default_study_path().parent / "within-forward-simulation.toml")
TEMPLATES = Path(pages.__file__).parent / "templates" / "pages"


def test_the_walk_of_the_default_study():
    names = [page.name for page in pages.page_sequence(STUDY)]
    ratings = [f"rating-{i}" for i in range(1, 8)]
    assert names == [
        "consent",
        "intro",
        "tutorial",
        "comprehension",
        "explanations",
        *ratings[:3],
        "attention-a1",
        *ratings[3:6],
        "attention-a2",
        ratings[6],
        "questionnaire-post",
        "demographics",
        "complete",
    ]


def test_a_study_without_demographics_ends_after_its_last_rating():
    study = dataclasses.replace(STUDY, demographics=False, attention_checks=(), questionnaires=())
    names = [page.name for page in pages.page_sequence(study)]
    assert names[-2:] == ["rating-7", "complete"] and "demographics" not in names


def test_each_end_page_stands_for_one_status():
    assert pages.END_STATUS == {
        "complete": Status.COMPLETED,
        "screened-out": Status.SCREENED_OUT,
        "declined": Status.RETURNED,
    }
    now = object()
    visit = pages.Visit(STUDY, participant=None, now=now, following=pages.COMPLETE)
    assert pages.COMPLETE.arrival(visit) == {
        "status": Status.COMPLETED,
        "completed_at": now,
        "completion_code": STUDY.completed_code,
    }
    assert pages.SCREENED_OUT.arrival(visit) == {
        "status": Status.SCREENED_OUT,
        "completion_code": STUDY.screened_out_code,
    }
    assert pages.DECLINED.arrival(visit) == {"status": Status.RETURNED}
    assert pages.IntroPage().arrival(visit) == {}


def test_pages_are_found_by_their_stored_names():
    for page in (*pages.page_sequence(STUDY), *pages.END_PAGES):
        assert pages.find_page(STUDY, page.name) == page
    assert pages.find_page(STUDY, "rating-8") is None
    assert pages.find_page(STUDY, "attention-nope") is None


def test_the_walk_goes_on_page_by_page_and_stops_at_its_end():
    walk = pages.page_sequence(STUDY)
    assert [pages.page_after(STUDY, page) for page in walk[:-1]] == list(walk[1:])
    assert pages.page_after(STUDY, pages.COMPLETE) == pages.COMPLETE
    assert pages.progress(STUDY, walk[0]) == 0 and pages.progress(STUDY, walk[-1]) == 100
    assert pages.progress(STUDY, pages.SCREENED_OUT) is None
    explanations = pages.ExplanationsPage()
    assert pages.is_past(STUDY, pages.RatingPage(1), explanations)
    assert not pages.is_past(STUDY, explanations, explanations)
    assert not pages.is_past(STUDY, pages.DECLINED, explanations)


def test_a_questionnaire_limited_to_conditions_is_skipped_by_the_others():
    post = dataclasses.replace(STUDY.questionnaire("post"), conditions=("concepts",))
    study = dataclasses.replace(STUDY, questionnaires=(post,))
    last_rating = pages.RatingPage(7)
    assert pages.page_after(study, last_rating, "concepts").name == "questionnaire-post"
    assert pages.page_after(study, last_rating, "baseline") == pages.DemographicsPage()
    assert pages.page_after(study, last_rating) == pages.QuestionnairePage(
        "post", "after-ratings", repeated=False
    )


def test_the_walk_of_the_forward_simulation_study():
    names = [page.name for page in pages.page_sequence(FORWARD)]
    learning = [name for i in range(1, 9) for name in (f"learning-{i}", f"feedback-{i}")]
    tests = [f"test-{i}" for i in range(1, 17)]
    assert names == [
        "consent", "intro", "questionnaire-predict-after-intro", "learning-intro", *learning,
        "questionnaire-predict-after-learning", "test-intro", *tests, "questionnaire-post",
        "demographics", "complete",
    ]  # fmt: skip
    design = dataclasses.replace(FORWARD.trials, feedback=False, learning_trials=2)
    quiet = dataclasses.replace(FORWARD, forward_simulation=design)
    assert [p.name for p in pages.page_sequence(quiet)][3:6] == [
        "learning-intro", "learning-1", "learning-2",
    ]  # fmt: skip
    # a milestone of the other design is never passed (its pages are refused)
    assert not pages.is_past(FORWARD, pages.TestPage(3), pages.ExplanationsPage())


def test_the_verification_walk_has_the_same_names_and_its_own_kinds():
    walk = pages.page_sequence(VERIFY)
    forward = [p.name for p in pages.page_sequence(FORWARD)]  # with its questionnaires
    assert [p.name for p in walk] == [n for n in forward if not n.startswith("questionnaire-")]
    kinds = {p.name: p.kind for p in walk}
    assert kinds["learning-intro"] == "verification-intro"
    assert kinds["learning-3"] == "verification-learning-trial"
    assert kinds["feedback-3"] == "verification-feedback"
    assert kinds["test-intro"] == "verification-test-intro"
    assert kinds["test-16"] == "verification-test-trial"


def test_the_walk_of_the_counterfactual_simulation_study():
    names = [page.name for page in pages.page_sequence(COUNTERFACTUAL)]
    learning = [name for i in range(1, 9) for name in (f"learning-{i}", f"feedback-{i}")]
    assert names == [
        "consent", "intro", "pre-intro", *(f"pre-{i}" for i in range(1, 9)), "learning-intro",
        *learning, "post-intro", *(f"post-{i}" for i in range(1, 9)), "demographics", "complete",
    ]  # fmt: skip
    design = dataclasses.replace(
        COUNTERFACTUAL.counterfactual_simulation, feedback=False, pre_trials=1, post_trials=2
    )
    short = dataclasses.replace(COUNTERFACTUAL, counterfactual_simulation=design)
    assert [p.name for p in pages.page_sequence(short)][2:6] == [
        "pre-intro", "pre-1", "learning-intro", "learning-1",
    ]  # fmt: skip
    assert [p.name for p in pages.page_sequence(short)][-5:-2] == ["post-intro", "post-1", "post-2"]


def test_every_kind_has_a_template_and_every_answered_kind_a_simulated_answer():
    every = (
        *pages.page_sequence(STUDY), *pages.page_sequence(FORWARD),
        *pages.page_sequence(VERIFY), *pages.page_sequence(DISTINCTION),
        *pages.page_sequence(COUNTERFACTUAL), *pages.page_sequence(WITHIN), *pages.END_PAGES,
    )  # fmt: skip
    for page in every:
        assert (TEMPLATES / f"{page.kind}.html").is_file(), page.kind
    answered = {p.kind for p in every if not isinstance(p, pages.EndPage)}
    assert answered == set(FILLERS)
