"""Chromium completes the distinction study in two attribution conditions (signed and
unsigned maps), picking explanations with the F and J keys and with the mouse, every kind
of page audited with axe-core; the stored rows hold the animal whose map was picked, each
with the browser's response time."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SCREENSHOTS, study_app, study_makers
from tests.e2e.test_browser import SIZES, audit, follow, page_name

CONDITIONS = ("integrated_gradients", "grad_cam")


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    from simulation.runs import local_server

    forward_study = study_makers().forward_study
    app = study_app(
        tmp_path_factory.mktemp("e2e-distinction"),
        bundle_dir,
        lambda root: forward_study(root, CONDITIONS, shipped="distinction"),
    )
    with local_server(app) as base:
        yield app, base


def walk(page, base: str, pid: str, audited: set[str]) -> tuple[str, dict[tuple[str, int], str]]:
    """One participant from the link to the completion page, trials answered by key (odd)
    and by mouse (even), A on trials divisible by 3, else B; returns the condition and the
    panel letter given per (phase, trial)."""
    page.goto(f"{base}/?PROLIFIC_PID={pid}&STUDY_ID=S1&SESSION_ID=X{pid}")
    condition = page.locator('meta[name="xaistudy-condition"]').get_attribute("content")
    out = SCREENSHOTS / "distinction" / condition
    out.mkdir(parents=True, exist_ok=True)
    given: dict[tuple[str, int], str] = {}
    step = 0
    while True:
        name = page_name(page)
        kind = page.locator('meta[name="xaistudy-kind"]').get_attribute("content")
        if f"{condition} {kind}" not in audited:
            audited.add(f"{condition} {kind}")
            page.screenshot(path=str(out / f"{step:02d}-{name}.png"), full_page=True)
            audit(page, f"{condition} {name}")
        step += 1
        if name == "complete":
            return condition, given
        if name == "consent":
            page.get_by_label("I agree to take part").check()
        if kind == "distinction-trial":
            phase, number = name.split("-")
            letter = "A" if int(number) % 3 == 0 else "B"
            given[phase, int(number)] = letter
            if int(number) % 2 == 1:  # by key: F (A) or J (B) picks and sends at once
                with page.expect_navigation():
                    page.keyboard.press("f" if letter == "A" else "j")
                continue
            page.locator(f'input[name="panel"][value="{letter}"]').check()
        follow(page, page.locator("form.step button[type=submit].primary"))


@pytest.mark.browser
def test_chromium_completes_the_distinction_study_by_keyboard_and_mouse(server, browser):
    app, base = server
    context = browser.new_context(viewport=SIZES["desktop"])
    walked, audited = {}, set()
    try:
        for i in range(len(CONDITIONS)):
            page = context.new_page()
            condition, given = walk(page, base, f"DST{i}", audited)
            walked[condition] = (f"DST{i}", given)
            page.close()
    finally:
        context.close()
    assert sorted(walked) == sorted(CONDITIONS)

    from study_server import study_context
    from study_server.extensions import db
    from study_server.models import Participant, Trial
    from study_server.pages import distinction_panels

    with app.app_context():
        ctx = study_context(app)
        for condition, (pid, given) in walked.items():
            participant = db.session.scalars(
                db.select(Participant).where(Participant.prolific_pid == pid)
            ).one()
            assert participant.status == "completed" and participant.condition == condition
            rows = db.session.scalars(
                db.select(Trial).where(Trial.participant_id == participant.id)
            ).all()
            assert len(rows) == 24 and {r.design for r in rows} == {"distinction"}
            for row in rows:  # the stored animal is the one the picked panel explains
                _, panels = distinction_panels(ctx, participant, row.phase, row.position + 1)
                picked = next(p for p in panels if p.letter == given[row.phase, row.position + 1])
                assert row.prediction == picked.explains
                assert row.correct == (picked.explains == row.model_decision)
                assert row.response_ms is not None and 0 < row.response_ms < 60_000
