"""Chromium completes the forward-simulation study in each kind of condition (maps per
scene, an explanation page before the trials, the explanation-free control), answering
trials with the F and J keys and with the mouse, every kind of page audited with
axe-core; the answers stored are those given, each with the browser's response time."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import SCREENSHOTS, study_app, study_makers
from tests.e2e.test_browser import SIZES, answer_questionnaire, audit, follow, page_name

CONDITIONS = ("integrated_gradients", "baseline", "none")
# The kinds of page that look different per condition: audited in each.
BY_CONDITION = ("learning-intro", "learning-trial", "feedback")


def trial_server(tmp_path_factory, bundle_dir, shipped: str, conditions=CONDITIONS):
    """The shipped study ``shipped`` of a trial design serving ``conditions`` on the
    fixture bundle, over HTTP; yields (app, base URL)."""
    from simulation.runs import local_server

    forward_study = study_makers().forward_study
    app = study_app(
        tmp_path_factory.mktemp(f"e2e-{shipped}"),
        bundle_dir,
        lambda root: forward_study(root, conditions, shipped=shipped),
    )
    with local_server(app) as base:
        yield app, base


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    yield from trial_server(tmp_path_factory, bundle_dir, "forward-simulation")


def _option(page, answer: str):
    """A trial's option ``answer`` (an animal, a verdict or a distinction panel's letter)."""
    return page.locator(f'input[data-key][value="{answer}"]')


def walk(
    page,
    base: str,
    pid: str,
    audited: set[str],
    answers: tuple[str, str] = ("peaky", "stretchy"),
    by_condition: tuple[str, ...] = BY_CONDITION,
    folder: str = "forward",
) -> tuple[str, dict[tuple[str, int], str]]:
    """One participant of a trial design from the link to the completion page, the trials
    answered in turn by key and by mouse (``answers``: the odd trials', the even ones');
    returns the (first) condition and the answer given per (phase, trial), in a within
    study per (period, phase, trial). Each kind of page not yet in ``audited`` is audited
    and added (``by_condition`` kinds once per condition, a within study's block's);
    screenshots go to ``folder`` of the screenshots."""
    page.goto(f"{base}/?PROLIFIC_PID={pid}&STUDY_ID=S1&SESSION_ID=X{pid}")
    condition = page.locator('meta[name="xaistudy-condition"]').get_attribute("content")
    out = SCREENSHOTS / folder / condition
    out.mkdir(parents=True, exist_ok=True)
    given: dict[tuple, str] = {}
    step = 0
    while True:
        name = page_name(page)
        kind = page.locator('meta[name="xaistudy-kind"]').get_attribute("content")
        shown_in = page.locator('meta[name="xaistudy-condition"]').get_attribute("content")
        seen = f"{shown_in} {kind}" if kind in by_condition else kind
        if seen not in audited:
            audited.add(seen)
            page.screenshot(path=str(out / f"{step:02d}-{name}.png"), full_page=True)
            audit(page, f"{shown_in} {name}")
        step += 1
        if name == "complete":
            return condition, given
        if name == "consent":
            page.get_by_label("I agree to take part").check()
        if kind == "questionnaire":  # before and after learning: 3, then 6 of 7 points
            answer_questionnaire(page, "6" if "after-learning" in name else "3")
        if kind.endswith("trial"):  # learning-trial, test-trial and the verification ones
            block, phase, number = re.fullmatch(r"(?:b(\d+)-)?(\w+)-(\d+)", name).groups()
            answer = answers[1] if int(number) % 2 == 0 else answers[0]
            key = (phase, int(number))
            given[key if block is None else (int(block), *key)] = answer
            if int(number) % 2 == 1:  # by key: F or J chooses and sends at once
                with page.expect_navigation():
                    page.keyboard.press(_option(page, answer).get_attribute("data-key").lower())
                continue
            _option(page, answer).check()
        if kind.endswith("feedback") and step % 4 == 0:
            with page.expect_navigation():
                page.keyboard.press(" ")  # the space bar goes on
            continue
        follow(page, page.locator("form.step button[type=submit].primary"))


def walk_each_condition(browser, base, prefix: str, conditions, audited: set[str], **walk_options):
    """One participant per condition (assignment fills the least-filled one, so n
    arrivals cover n conditions), each walked by :func:`walk` in a desktop browser; the
    condition -> (Prolific ID, answers given) of each."""
    context = browser.new_context(viewport=SIZES["desktop"])
    walked = {}
    try:
        for i in range(len(conditions)):
            page = context.new_page()
            condition, given = walk(page, base, f"{prefix}{i}", audited, **walk_options)
            walked[condition] = (f"{prefix}{i}", given)
            page.close()
    finally:
        context.close()
    assert sorted(walked) == sorted(conditions)
    return walked


def stored_walks(walked: dict):
    """Each walked participant, checked completed in its condition, with its trial rows
    and the answers given: (participant, rows, given); inside the app's context."""
    from study_server.extensions import db
    from study_server.models import Participant, Trial

    for condition, (pid, given) in walked.items():
        participant = db.session.scalars(
            db.select(Participant).where(Participant.prolific_pid == pid)
        ).one()
        assert participant.status == "completed" and participant.condition == condition
        rows = db.session.scalars(
            db.select(Trial).where(Trial.participant_id == participant.id)
        ).all()
        yield participant, rows, given


@pytest.mark.browser
def test_chromium_completes_the_forward_simulation_study_by_keyboard_and_mouse(server, browser):
    app, base = server
    walked = walk_each_condition(browser, base, "FWD", CONDITIONS, set())

    from study_server.extensions import db
    from study_server.models import QuestionnaireAnswer

    with app.app_context():
        for participant, rows, given in stored_walks(walked):
            stored = {(r.phase, r.position + 1): r.prediction for r in rows}
            assert stored == given and len(rows) == 24
            # every answer timed by the browser: the scene was on screen before it
            assert all(r.response_ms is not None and 0 < r.response_ms < 60_000 for r in rows)
            predicted = db.session.scalars(
                db.select(QuestionnaireAnswer.value)
                .where(QuestionnaireAnswer.participant_id == participant.id)
                .where(QuestionnaireAnswer.item == "can_predict")
                .order_by(QuestionnaireAnswer.answered_at)
            ).all()
            assert predicted == [3, 6]  # the pre/post block, as clicked
            order = json.loads(participant.trial_order)
            assert [r.scene_index for r in rows if r.phase == "test"] == [
                order["test"][r.position] for r in rows if r.phase == "test"
            ]


@pytest.mark.browser
def test_a_trial_sent_without_an_answer_is_shown_again_with_its_error(server, browser):
    app, base = server
    context = browser.new_context(viewport=SIZES["phone"])
    page = context.new_page()
    try:
        page.goto(f"{base}/?PROLIFIC_PID=FWDERR&STUDY_ID=S1&SESSION_ID=XFWDERR")
        page.get_by_label("I agree to take part").check()
        while page_name(page) != "learning-1":
            if page_name(page).startswith("questionnaire-"):
                answer_questionnaire(page)
            follow(page, page.locator("form.step button[type=submit].primary"))
        follow(page, page.locator("form.step button[type=submit].primary"))
        assert page_name(page) == "learning-1"
        assert "Please choose Peaky or Stretchy." in page.locator("p.error").inner_text()
        audit(page, "refused trial (phone)")
        # the scene fits a phone's screen
        box = page.locator("img[data-scene]").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= SIZES["phone"]["width"]
    finally:
        context.close()
