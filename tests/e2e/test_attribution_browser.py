"""Chromium through each attribution-map condition, at desktop and phone size: every page
audited with axe-core, the grids (a scene with its map under it) fitting the screen."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ROOT
from tests.e2e.test_browser import SIZES, known_answers, walk

METHODS = ("integrated_gradients", "grad_cam")  # the fixture bundle's: signed, unsigned


@pytest.fixture(scope="module")
def attribution_server(tmp_path_factory, bundle_dir):
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "study_server"))
    from server_helpers import attribution_study

    from simulation.runs import local_server
    from study_server import create_app

    root = tmp_path_factory.mktemp("e2e-attribution")
    app = create_app(
        {
            "TESTING": False,
            "SECRET_KEY": "e2e-secret",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{root / 'study.sqlite'}",
            "XAISTUDY_BUNDLE": str(bundle_dir),
            "XAISTUDY_ARRIVAL_LIMITS": "off",  # every browser here comes from 127.0.0.1
            "XAISTUDY_STUDY": str(attribution_study(root)),
        }
    )
    with local_server(app) as base:
        yield app, base


@pytest.mark.browser
@pytest.mark.parametrize("size", list(SIZES))
def test_chromium_completes_each_attribution_condition(attribution_server, browser, size):
    app, base = attribution_server
    answers = known_answers(app)
    seen = []
    for i in range(len(METHODS)):
        context = browser.new_context(viewport=SIZES[size])
        page = context.new_page()
        seen.append(walk(page, base, f"MAP{size.upper()}{i}", size, answers, extras=False))
        context.close()
    assert sorted(seen) == sorted(METHODS)
