"""Browser tests: Debian's Chromium driven by playwright, never a downloaded browser."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def study_app(root: Path, bundle_dir: Path, make_study):
    """The study server (a real app, not a test client) for a browser: ``make_study(root)``
    writes its study file (tests/study_server/server_helpers.py has the makers)."""
    from study_server import create_app

    return create_app(
        {
            "TESTING": False,
            "SECRET_KEY": "e2e-secret",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{root / 'study.sqlite'}",
            "XAISTUDY_BUNDLE": str(bundle_dir),
            "XAISTUDY_ARRIVAL_LIMITS": "off",  # every browser here comes from 127.0.0.1
            "XAISTUDY_STUDY": str(make_study(root)),
        }
    )


def study_makers():
    """tests/study_server/server_helpers.py, whose study-file makers the browser tests use."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "study_server"))
    import server_helpers

    return server_helpers
