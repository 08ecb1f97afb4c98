"""Chromium completes the verification study in each kind of condition (maps with every
scene in both phases, an explanation page before the trials, the explanation-free
control seeing the decision alone), answering Right and Wrong with the F and J keys and
with the mouse, every kind of page audited with axe-core; the verdicts stored are those
given, each scored against the true animal, with the browser's response time."""

from __future__ import annotations

import pytest

from tests.e2e.test_browser import SIZES, audit, follow, page_name
from tests.e2e.test_forward_simulation_browser import (
    CONDITIONS,
    stored_walks,
    trial_server,
    walk_each_condition,
)

# The kinds of page that look different per condition: audited in each.
BY_CONDITION = (
    "verification-intro",
    "verification-learning-trial",
    "verification-feedback",
    "verification-test-trial",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    yield from trial_server(tmp_path_factory, bundle_dir, "verification")


@pytest.mark.browser
def test_chromium_completes_the_verification_study_by_keyboard_and_mouse(server, browser):
    app, base = server
    walked = walk_each_condition(
        browser, base, "VER", CONDITIONS, set(), answers=("right", "wrong"),
        by_condition=BY_CONDITION, folder="verification",
    )  # fmt: skip
    with app.app_context():
        for _, rows, given in stored_walks(walked):
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
