"""Chromium completes the counterfactual-simulation study in each kind of condition (maps
per scene, an explanation page before the learning trials, the explanation-free control):
the pre-test pairs, the learning trials and the post-test pairs answered with the F and J
keys and with the mouse, every kind of page audited with axe-core; the answers stored are
those given, each scored against the model's decision on the pair's changed scene."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_browser import SIZES, follow, page_name
from tests.e2e.test_forward_simulation_browser import (
    CONDITIONS,
    stored_walks,
    trial_server,
    walk_each_condition,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    yield from trial_server(tmp_path_factory, bundle_dir, "counterfactual-simulation")


@pytest.mark.browser
def test_chromium_completes_the_counterfactual_simulation_study(server, browser):
    app, base = server
    audited: set[str] = set()
    walked = walk_each_condition(browser, base, "CFS", CONDITIONS, audited, folder="counterfactual")
    assert {"pair-intro", "pair-trial"} <= audited

    from study_server import study_context

    pairs = study_context(app).manifest.counterfactual_simulation
    with app.app_context():
        for participant, rows, given in stored_walks(walked):
            assert {(r.phase, r.position + 1): r.prediction for r in rows} == given
            assert sorted({r.phase for r in rows}) == ["learning", "post", "pre"]
            assert len(rows) == 24
            assert all(r.response_ms is not None and 0 < r.response_ms < 60_000 for r in rows)
            order = json.loads(participant.trial_order)
            for row in rows:
                if row.phase == "learning":
                    continue
                pair = getattr(pairs, row.phase)[order[row.phase][row.position]]
                assert row.model_decision == pair.changed_decision
                assert row.correct == (row.prediction == pair.changed_decision)


@pytest.mark.browser
def test_a_pairs_pictures_load_and_fit_a_phone_screen(server, browser):
    app, base = server
    context = browser.new_context(viewport=SIZES["phone"])
    page = context.new_page()
    try:
        page.goto(f"{base}/?PROLIFIC_PID=CFSPHONE&STUDY_ID=S1&SESSION_ID=XCFSPHONE")
        page.get_by_label("I agree to take part").check()
        while page_name(page) != "pre-1":
            follow(page, page.locator("form.step button[type=submit].primary"))
        images = page.locator(".trial-scene img").all()
        assert len(images) == 2
        for image in images:  # both pictures loaded, neither wider than the screen
            image.evaluate("i => i.decode()")
            assert image.evaluate("i => i.naturalWidth") > 0
            box = image.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= SIZES["phone"]["width"]
        assert "What does the model say now?" in page.locator("h1").inner_text()
    finally:
        context.close()
