"""Chromium completes the forward-simulation study in each kind of condition (maps per
scene, an explanation page before the trials, the explanation-free control), answering
trials with the F and J keys and with the mouse, every kind of page audited with
axe-core; the answers stored are those given, each with the browser's response time."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import ROOT, SCREENSHOTS
from tests.e2e.test_browser import SIZES, audit, follow, page_name

CONDITIONS = ("integrated_gradients", "baseline", "none")
# The kinds of page that look different per condition: audited in each.
BY_CONDITION = ("learning-intro", "learning-trial", "feedback")


def trial_server(root, bundle_dir, study: str, conditions: tuple[str, ...]):
    """The shipped study ``study`` serving ``conditions`` (server_helpers.trial_study) on
    a local server: ``with trial_server(...) as (app, base)``."""
    import contextlib
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "study_server"))
    from server_helpers import trial_study

    from simulation.runs import local_server
    from study_server import create_app

    app = create_app(
        {
            "TESTING": False,
            "SECRET_KEY": "e2e-secret",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{root / 'study.sqlite'}",
            "XAISTUDY_BUNDLE": str(bundle_dir),
            "XAISTUDY_ARRIVAL_LIMITS": "off",  # every browser here comes from 127.0.0.1
            "XAISTUDY_STUDY": str(trial_study(study, root, conditions=conditions)),
        }
    )

    @contextlib.contextmanager
    def served():
        with local_server(app) as base:
            yield app, base

    return served()


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    root = tmp_path_factory.mktemp("e2e-forward")
    with trial_server(root, bundle_dir, "forward-simulation", CONDITIONS) as served:
        yield served


def _key_for(page, animal: str) -> str:
    return page.locator(f'input[name="prediction"][value="{animal}"]').get_attribute("data-key")


TRIAL_KINDS = ("learning-trial", "test-trial", "pair-trial")


def walk(
    page, base: str, pid: str, audited: set[str], folder: str = "forward"
) -> tuple[str, dict[tuple[str, int], str]]:
    """One participant from the link to the completion page, the trials answered in turn
    by key and by mouse (Stretchy on even trials, Peaky on odd ones); returns the
    condition and the prediction given per (phase, trial). Each kind of page not yet in
    ``audited`` is audited and added (``BY_CONDITION`` kinds once per condition), its
    screenshot in ``SCREENSHOTS/folder/condition``."""
    page.goto(f"{base}/?PROLIFIC_PID={pid}&STUDY_ID=S1&SESSION_ID=X{pid}")
    condition = page.locator('meta[name="xaistudy-condition"]').get_attribute("content")
    out = SCREENSHOTS / folder / condition
    out.mkdir(parents=True, exist_ok=True)
    given: dict[tuple[str, int], str] = {}
    step = 0
    while True:
        name = page_name(page)
        kind = page.locator('meta[name="xaistudy-kind"]').get_attribute("content")
        seen = f"{condition} {kind}" if kind in BY_CONDITION else kind
        if seen not in audited:
            audited.add(seen)
            page.screenshot(path=str(out / f"{step:02d}-{name}.png"), full_page=True)
            audit(page, f"{condition} {name}")
        step += 1
        if name == "complete":
            return condition, given
        if name == "consent":
            page.get_by_label("I agree to take part").check()
        if kind in TRIAL_KINDS:
            phase, number = name.split("-")
            animal = "stretchy" if int(number) % 2 == 0 else "peaky"
            given[phase, int(number)] = animal
            if int(number) % 2 == 1:  # by key: F or J chooses and sends at once
                with page.expect_navigation():
                    page.keyboard.press(_key_for(page, animal).lower())
                continue
            page.get_by_label(animal.capitalize(), exact=False).check()
        if kind == "feedback" and step % 4 == 0:
            with page.expect_navigation():
                page.keyboard.press(" ")  # the space bar goes on
            continue
        follow(page, page.locator("form.step button[type=submit].primary"))


@pytest.mark.browser
def test_chromium_completes_the_forward_simulation_study_by_keyboard_and_mouse(server, browser):
    app, base = server
    context = browser.new_context(viewport=SIZES["desktop"])
    walked, audited = {}, set()
    try:
        for i in range(len(CONDITIONS)):
            page = context.new_page()
            condition, given = walk(page, base, f"FWD{i}", audited)
            walked[condition] = (f"FWD{i}", given)
            page.close()
    finally:
        context.close()
    assert sorted(walked) == sorted(CONDITIONS)

    from study_server.extensions import db
    from study_server.models import Participant, Trial

    with app.app_context():
        for condition, (pid, given) in walked.items():
            participant = db.session.scalars(
                db.select(Participant).where(Participant.prolific_pid == pid)
            ).one()
            assert participant.status == "completed" and participant.condition == condition
            rows = db.session.scalars(
                db.select(Trial).where(Trial.participant_id == participant.id)
            ).all()
            stored = {(r.phase, r.position + 1): r.prediction for r in rows}
            assert stored == given and len(rows) == 24
            # every answer timed by the browser: the scene was on screen before it
            assert all(r.response_ms is not None and 0 < r.response_ms < 60_000 for r in rows)
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
