"""Chromium through each attribution-map condition at desktop size, and a signed and an
unsigned one at phone size: every page audited with axe-core, the grids (a scene with its
map under it) fitting the screen."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import study_app, study_makers
from tests.e2e.test_browser import SIZES, known_answers, walk
from xaistudy.vocabulary import ATTRIBUTION_METHODS


def _serve(tmp_path_factory, bundle_dir, conditions):
    from simulation.runs import local_server

    attribution_study = study_makers().attribution_study
    app = study_app(
        tmp_path_factory.mktemp("e2e-attribution"),
        bundle_dir,
        lambda root: attribution_study(root, conditions=conditions),
    )
    return app, local_server(app)


def _walk_all(app, base, browser, size: str, conditions) -> None:
    """Arrivals until each condition was walked (assignment fills the least-filled one,
    so n arrivals cover n conditions)."""
    answers = known_answers(app)
    seen = [
        _one(browser, base, f"MAP{size.upper()}{i}", size, answers) for i in range(len(conditions))
    ]
    assert sorted(seen) == sorted(conditions)


def _one(browser, base, pid, size, answers) -> str:
    context = browser.new_context(viewport=SIZES[size])
    try:
        return walk(context.new_page(), base, pid, size, answers, extras=False)
    finally:
        context.close()


@pytest.mark.browser
def test_chromium_completes_every_attribution_condition_on_a_desktop(
    tmp_path_factory, bundle_dir, browser
):
    app, serving = _serve(tmp_path_factory, bundle_dir, ATTRIBUTION_METHODS)
    with serving as base:
        _walk_all(app, base, browser, "desktop", ATTRIBUTION_METHODS)


@pytest.mark.browser
def test_chromium_completes_a_signed_and_an_unsigned_one_on_a_phone(
    tmp_path_factory, bundle_dir, browser
):
    conditions = ("integrated_gradients", "grad_cam")
    app, serving = _serve(tmp_path_factory, bundle_dir, conditions)
    with serving as base:
        _walk_all(app, base, browser, "phone", conditions)
