"""Chromium drives the researcher's control room as a researcher would.

The real server (werkzeug in a thread, SQLite migrated by Alembic) with an admin
password; Debian's Chromium through playwright (never a downloaded browser). Simulated
participants walk the study over HTTP at the same time. Screenshots of the dashboard
and the participant table go to ``test-artifacts/screenshots/admin/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import SCREENSHOTS

PASSWORD = "control room password"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    from simulation.runs import local_server
    from study_server import create_app

    root = tmp_path_factory.mktemp("control")
    url = f"sqlite:///{root / 'study.sqlite'}"
    app = create_app(
        {
            "SECRET_KEY": "e2e-control-secret",
            "SQLALCHEMY_DATABASE_URI": url,
            "XAISTUDY_BUNDLE": str(bundle_dir),
            "XAISTUDY_ADMIN_PASSWORD": PASSWORD,
            "XAISTUDY_ARRIVAL_LIMITS": "off",  # every participant here comes from 127.0.0.1
            "XAISTUDY_ALLOW_INCOMPLETE_CONSENT": True,  # simulated participants only
        }
    )
    with local_server(app) as base:
        yield base, url


@pytest.fixture
def researcher(browser, server):
    """A logged-in researcher's page on the dashboard."""
    base, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")
    yield page
    context.close()


def participant(base: str, pid: str, bundle_dir: Path, **behavior):
    """A simulated participant over HTTP; it reads the served study to answer the
    comprehension question drawn from the bundle."""
    from explain.bundle_format import load_manifest
    from simulation.client import ParticipantClient
    from simulation.transport import HttpTransport
    from study_server.study import load_study

    def answer(key, condition):
        return 4, "the pictures change with it"

    study = load_study(None).with_bundle(load_manifest(bundle_dir))
    client = ParticipantClient(HttpTransport(base), prolific_pid=pid, study=study)
    return client.run(answer=answer, **behavior)


def screenshot(page, name: str) -> None:
    out = SCREENSHOTS / "admin"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def test_pausing_a_condition_keeps_new_participants_out_of_it(server, researcher, bundle_dir):
    base, _ = server
    page = researcher
    page.get_by_label("Study or condition").select_option("baseline")
    page.get_by_label("New state").select_option("paused")
    page.get_by_label("Reason (optional)").fill("one image looks wrong")
    page.get_by_label("Your name or initials").fill("RB")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").first.inner_text() == "Condition baseline is now paused."
    row = page.locator("#conditions tr", has_text="baseline")
    assert "paused" in row.inner_text()
    assert "one image looks wrong" in page.locator("#audit").inner_text()
    screenshot(page, "dashboard-paused")

    conditions = {
        participant(base, f"PAUSED{i}", bundle_dir, stop_after="consent").condition
        for i in range(4)
    }
    assert conditions == {"counterfactuals", "concepts"}

    page.get_by_label("Study or condition").select_option("baseline")
    page.get_by_label("New state").select_option("open")
    page.get_by_role("button", name="Apply").click()  # the name is remembered
    page.wait_for_load_state()
    assert "open" in page.locator("#conditions tr", has_text="baseline").inner_text()


def test_the_live_view_updates_without_reloading_the_page(server, browser, researcher):
    base, _ = server
    page = researcher
    page.evaluate("window.notReloaded = true")
    live = page.locator("#live")
    assert "LIVE1" not in live.inner_text()

    other = browser.new_context()
    tab = other.new_page()
    tab.goto(f"{base}/?PROLIFIC_PID=LIVE1&STUDY_ID=S1&SESSION_ID=X1")
    tab.get_by_label("I agree to take part").check()
    tab.locator("form.step button[type=submit]").click()
    tab.wait_for_load_state()
    # A tab coming back into view refreshes at once (otherwise every 10 s).
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    row = page.locator("#active-participants tr", has_text="LIVE1")
    row.wait_for(timeout=15_000)
    assert "intro" in row.inner_text()
    assert page.evaluate("window.notReloaded") is True
    assert "could not be refreshed" not in page.locator("#live-status").inner_text()
    other.close()


def test_bulk_exclusion_of_those_who_failed_the_attention_check(server, researcher, bundle_dir):
    from study_server.export import export_frames

    base, database_url = server
    for pid in ("INATTENTIVE1", "INATTENTIVE2"):
        assert participant(base, pid, bundle_dir, attention="fail").status == "completed"
    assert participant(base, "ATTENTIVE", bundle_dir).status == "completed"
    page = researcher
    page.get_by_role("link", name="Participants").first.click()
    page.get_by_label("Rule").select_option("attention_failed")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    table = page.locator("#participants")
    assert "INATTENTIVE1" in table.inner_text() and "ATTENTIVE\t" not in table.inner_text()
    page.get_by_label("Reason", exact=True).fill("failed the attention check")
    page.get_by_label("Your name or initials").fill("RB")
    page.get_by_role("button", name="Exclude all 2 matching").click()
    page.wait_for_load_state()
    assert "Excluded 2 participant(s)" in page.get_by_role("status").first.inner_text()
    assert page.locator("#participants tr.excluded").count() == 2
    screenshot(page, "participants-excluded")

    people = export_frames(database_url)["participants"].set_index("prolific_pid")
    assert people.loc["INATTENTIVE2", "exclusion_reason"] == "failed the attention check"
    assert not people.loc["ATTENTIVE", "excluded"]


def test_a_preview_opens_a_page_of_a_condition_and_keeps_the_researcher_logged_in(
    server, researcher
):
    base, _ = server
    page = researcher
    page.get_by_label("Condition", exact=True).select_option("concepts")
    page.get_by_label("Page", exact=True).select_option("rating-2")
    page.get_by_role("button", name="Open the preview").click()
    page.wait_for_load_state()
    meta = page.locator('meta[name="xaistudy-page"]')
    assert meta.get_attribute("content") == "rating-2"
    banner = page.locator(".preview-banner").inner_text()
    assert "Preview of the concepts condition, page rating-2" in " ".join(banner.split())
    screenshot(page, "preview-rating-2")

    page.get_by_label("Jump to").select_option("tutorial")
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()
    assert meta.get_attribute("content") == "tutorial"

    page.goto(f"{base}/?PROLIFIC_PID=SAMEBROWSER&STUDY_ID=S1&SESSION_ID=X1")
    assert meta.get_attribute("content") == "consent"
    page.goto(f"{base}/admin/")
    assert page.url == f"{base}/admin/"  # still logged in, not sent to the login page
    assert page.locator("h1").inner_text() == "Dashboard"
