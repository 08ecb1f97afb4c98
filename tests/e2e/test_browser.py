"""Chromium completes the study once per condition, as a participant would.

Starts the real server (werkzeug in a thread, SQLite migrated by Alembic) on a free port,
drives Debian's Chromium (/usr/bin/chromium, never a downloaded browser) through
playwright, and saves a screenshot of every page under
``test-artifacts/screenshots/<condition>/NN-<page>.png``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import flask_migrate
import pytest
from werkzeug.serving import make_server

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
def server(tmp_path_factory, bundle_dir):
    from study_server import create_app
    from study_server.extensions import db

    root = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{root / 'study.sqlite'}"
    app = create_app(
        {
            "TESTING": False,
            "SECRET_KEY": "e2e-secret",
            "SQLALCHEMY_DATABASE_URI": url,
            "XAISTUDY_BUNDLE": str(bundle_dir),
            "XAISTUDY_ARRIVAL_LIMITS": "off",  # every browser here comes from 127.0.0.1
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{httpd.server_port}", url
    httpd.shutdown()
    with app.app_context():
        db.engine.dispose()


def _answer_page(page, name: str, study) -> None:
    """Fill the visible form as a person would: click labels, type text, submit."""
    if name == "consent":
        page.get_by_label("I agree to take part").check()
    elif name == "comprehension" or name.startswith("attention-"):
        for fieldset in page.locator("fieldset").all():
            question = " ".join(fieldset.locator("legend").inner_text().split())
            known = {q.question: q.correct for q in (*study.comprehension, *study.attention_checks)}
            fieldset.get_by_label(known[question], exact=True).check()
    elif name.startswith("rating-"):
        page.get_by_label("Agree", exact=True).check()
        page.locator("textarea").fill("The pictures change with it.")
    elif name == "demographics":
        page.locator("#age").fill("34")
    page.locator("form.step button[type=submit]").click()


@pytest.mark.browser
def test_chromium_completes_the_study_in_each_condition(server):
    from playwright.sync_api import sync_playwright

    from study_server.export import export_frames
    from study_server.study import load_study

    app, base, url = server
    study = load_study(None)
    seen = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            for i in range(3):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.goto(f"{base}/?PROLIFIC_PID=BROWSER{i}&STUDY_ID=S1&SESSION_ID=X{i}")
                condition = page.locator('meta[name="xaistudy-condition"]').get_attribute("content")
                seen.append(condition)
                out = SCREENSHOTS / condition
                out.mkdir(parents=True, exist_ok=True)
                for old in out.glob("*.png"):
                    old.unlink()
                for step in range(40):
                    name = page.locator('meta[name="xaistudy-page"]').get_attribute("content")
                    page.screenshot(path=str(out / f"{step:02d}-{name}.png"), full_page=True)
                    if name == "complete":
                        break
                    if name == "explanations":
                        images = page.locator("table.grid img")
                        assert images.count() >= 10
                        box = images.first.bounding_box()
                        assert box["width"] >= 96  # large enough to see the arms
                    _answer_page(page, name, study)
                    page.wait_for_load_state()
                assert page.locator("#completion-code").inner_text() == study.completed_code
                context.close()
        finally:
            browser.close()
    assert sorted(seen) == ["baseline", "concepts", "counterfactuals"]
    frames = export_frames(url)
    assert frames["participants"]["status"].tolist() == ["completed"] * 3
    assert len(frames["answers"]) == 3 * 7
    assert set(frames["answers"]["rating"]) == {4}
    assert frames["participants"]["age"].tolist() == [34] * 3
