"""Chromium completes the distinction study in two attribution conditions (signed and
unsigned maps), picking explanations with the F and J keys and with the mouse, every kind
of page audited with axe-core; the stored rows hold the animal whose map was picked, each
with the browser's response time."""

from __future__ import annotations

import pytest

from tests.e2e.test_forward_simulation_browser import (
    stored_walks,
    trial_server,
    walk_each_condition,
)

CONDITIONS = ("integrated_gradients", "grad_cam")
# The kinds of page that look different per condition: audited in each.
BY_CONDITION = ("learning-intro", "distinction-trial", "distinction-feedback")


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    yield from trial_server(tmp_path_factory, bundle_dir, "distinction", CONDITIONS)


@pytest.mark.browser
def test_chromium_completes_the_distinction_study_by_keyboard_and_mouse(server, browser):
    app, base = server
    walked = walk_each_condition(
        browser, base, "DST", CONDITIONS, set(), answers=("A", "B"),
        by_condition=BY_CONDITION, folder="distinction",
    )  # fmt: skip

    from study_server import study_context
    from study_server.pages import distinction_panels

    with app.app_context():
        ctx = study_context(app)
        for participant, rows, given in stored_walks(walked):
            assert len(rows) == 24 and {r.design for r in rows} == {"distinction"}
            for row in rows:  # the stored animal is the one the picked panel explains
                _, panels = distinction_panels(ctx, participant, row.phase, row.position + 1)
                picked = next(p for p in panels if p.letter == given[row.phase, row.position + 1])
                assert row.prediction == picked.explains
                assert row.correct == (picked.explains == row.model_decision)
                assert row.response_ms is not None and 0 < row.response_ms < 60_000
