"""Chromium completes the verification study in each kind of condition (maps with every
scene in both phases, an explanation page before the trials, the explanation-free
control seeing the decision alone), answering Right and Wrong with the F and J keys and
with the mouse, every kind of page audited with axe-core; the verdicts stored are those
given, each scored against the true animal, with the browser's response time. The
picture of a test trial in docs/designs/verification.md is this walk's screenshot."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_browser import SIZES, audit, follow, page_name
from tests.e2e.test_forward_simulation_browser import CONDITIONS, trial_server, walk

# The kinds of page that look different per condition: audited in each.
BY_CONDITION = (
    "verification-intro",
    "verification-learning-trial",
    "verification-feedback",
    "verification-test-trial",
)
# A test trial of the attribution condition, as docs/images/verification-trial.png shows it.
DOCS_TRIAL = SCREENSHOTS / "verification" / "docs-test-trial.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    yield from trial_server(tmp_path_factory, bundle_dir, "verification")


def _docs_picture(page, condition: str, name: str) -> None:
    """The docs' picture of a test trial with its map, a verdict chosen (900 px wide)."""
    if condition != "integrated_gradients" or name != "test-2":
        return
    page.set_viewport_size({"width": 900, "height": 700})
    page.get_by_label("Wrong", exact=False).check()
    page.screenshot(path=str(DOCS_TRIAL), full_page=False)
    page.set_viewport_size(SIZES["desktop"])


@pytest.mark.browser
def test_chromium_completes_the_verification_study_by_keyboard_and_mouse(server, browser):
    app, base = server
    context = browser.new_context(viewport=SIZES["desktop"])
    walked, audited = {}, set()
    try:
        for i in range(len(CONDITIONS)):
            page = context.new_page()
            condition, given = walk(
                page, base, f"VER{i}", audited, ("right", "wrong"), BY_CONDITION,
                "verification", _docs_picture,
            )  # fmt: skip
            walked[condition] = (f"VER{i}", given)
            page.close()
    finally:
        context.close()
    assert sorted(walked) == sorted(CONDITIONS)
    assert DOCS_TRIAL.is_file()

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
            assert {(r.phase, r.position + 1): r.prediction for r in rows} == given
            assert len(rows) == 24
            for r in rows:  # scored against the truth, not against the model
                assert r.correct == (
                    (r.prediction == "right") == (r.model_decision == r.true_label)
                )
                assert r.response_ms is not None and 0 < r.response_ms < 60_000


@pytest.mark.browser
def test_a_trial_sent_without_a_verdict_is_shown_again_with_its_error(server, browser):
    app, base = server
    context = browser.new_context(viewport=SIZES["phone"])
    page = context.new_page()
    try:
        page.goto(f"{base}/?PROLIFIC_PID=VERERR&STUDY_ID=S1&SESSION_ID=XVERERR")
        page.get_by_label("I agree to take part").check()
        while page_name(page) != "learning-1":
            follow(page, page.locator("form.step button[type=submit].primary"))
        follow(page, page.locator("form.step button[type=submit].primary"))
        assert page_name(page) == "learning-1"
        assert "Please choose Right or Wrong." in page.locator("p.error").inner_text()
        assert "The model says" in page.locator("p.model-says").inner_text()
        audit(page, "refused verification trial (phone)")
        box = page.locator("img[data-scene]").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= SIZES["phone"]["width"]
    finally:
        context.close()
