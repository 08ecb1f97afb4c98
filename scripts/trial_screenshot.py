"""A trial page of a trial design as Chromium shows it, for the docs.

Usage: ``.venv/bin/python scripts/trial_screenshot.py BUNDLE [--study verification]
[--condition integrated_gradients] [--page test-2] [--answer wrong] [--out PATH]``
(a distinction study's feedback: ``--study distinction --page feedback-1 --answer ''``).
Serves the bundle with the shipped study (its consent details unfilled: only this
script's own participant sees it) for the one condition, walks a participant there
answering the first option of every trial on the way, chooses ``--answer`` on the page
and writes a 900 x 700 screenshot, ``docs/images/verification-trial.png`` by default.
Needs Debian's Chromium at /usr/bin/chromium (playwright drives it).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "images" / "verification-trial.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
# a trial's answers: an animal or verdict, or a distinction trial's panel
ANSWERS = 'input[name="prediction"], input[name="panel"]'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--study", default="verification", help="a shipped study's name")
    parser.add_argument("--condition", default="integrated_gradients")
    parser.add_argument("--page", default="test-2", help="the trial page, e.g. learning-3")
    parser.add_argument(
        "--answer", default="wrong", help="the option chosen on it; '' for a page without one"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(args.bundle, args.study, args.condition, Path(tmp))
        _screenshot(app, args.page, args.answer, args.out)
    print(args.out)


def _app(bundle: Path, study: str, condition: str, folder: Path):
    from study_server import create_app
    from study_server.study import study_file, study_for_conditions, write_study

    data = study_for_conditions([condition], source=study_file(study))
    path = write_study(data, folder / "study.toml", "scripts/trial_screenshot.py")
    return create_app(
        {
            "SECRET_KEY": "screenshot",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'study.sqlite'}",
            "XAISTUDY_BUNDLE": str(bundle),
            "XAISTUDY_STUDY": str(path),
            "XAISTUDY_ALLOW_INCOMPLETE_CONSENT": True,
        }
    )


def _screenshot(app, target: str, answer: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from simulation.runs import local_server

    with local_server(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(f"{base}/?PROLIFIC_PID=SCREENSHOT&STUDY_ID=DOCS&SESSION_ID=DOCS")
        page.locator('input[name="consent"][value="yes"]').check()
        while (name := _page_name(page)) != target:
            if name == "complete":
                raise SystemExit(f"the walk ended without reaching page {target!r}")
            options = page.locator(ANSWERS)
            if options.count():  # a trial: its first option
                options.first.check()
            with page.expect_navigation():
                page.locator("form.step button[type=submit].primary").click()
        if answer:  # a trial page: the answer chosen on it
            page.locator(ANSWERS).and_(page.locator(f'[value="{answer}"]')).check()
        page.screenshot(path=str(out))
        browser.close()


def _page_name(page) -> str:
    return page.locator('meta[name="xaistudy-page"]').get_attribute("content")


if __name__ == "__main__":
    main()
