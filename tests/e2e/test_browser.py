"""Chromium completes the study in each condition, at desktop and at phone size, as a
participant would, with an accessibility audit of every page state.

Starts the real server (werkzeug in a thread, SQLite migrated by Alembic, a study file
with its consent details filled as for a launch) on a free port, drives Debian's Chromium
(/usr/bin/chromium, never a downloaded browser) through playwright, and saves a
screenshot of every page under ``test-artifacts/screenshots/<size>/<condition>/NN-<page>.png``.
Every page state (each page, a refused answer, a refused questionnaire, a failed
comprehension attempt, the explanations and review pages, the end pages) is audited with axe-core
(axe-playwright-python ships axe.min.js: it runs offline): no critical or serious
violation. The condition grids must fit the viewport whole, at 360 px too.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ROOT, SCREENSHOTS

SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 360, "height": 740}}
CONDITIONS = ["baseline", "counterfactuals", "concepts"]
GRID_PAGES = ("tutorial", "comprehension", "explanations")


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "study_server"))
    from server_helpers import filled_study_file

    from simulation.runs import local_server
    from study_server import create_app

    root = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{root / 'study.sqlite'}"
    app = create_app(
        {
            "TESTING": False,
            "SECRET_KEY": "e2e-secret",
            "SQLALCHEMY_DATABASE_URI": url,
            "XAISTUDY_BUNDLE": str(bundle_dir),
            "XAISTUDY_ARRIVAL_LIMITS": "off",  # every browser here comes from 127.0.0.1
            "XAISTUDY_STUDY": str(filled_study_file(root)),
        }
    )
    with local_server(app) as base:
        yield app, base, url


def audit(page, state: str) -> None:
    """axe-core on the page as shown: no critical or serious violation."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("critical", "serious")]
    assert not bad, f"{state}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in bad
    )


def follow(page, control) -> None:
    """Click ``control`` (a submit button or a link) and wait for the page it leads to."""
    with page.expect_navigation():
        control.click()


def page_name(page) -> str:
    return page.locator('meta[name="xaistudy-page"]').get_attribute("content")


def known_answers(app) -> dict[str, str]:
    from study_server import study_context

    study = study_context(app).study
    return {q.question: q.correct for q in (*study.comprehension, *study.attention_checks)}


COMMENT = "The arms told me most."


def answer_questionnaire(page, point: str = "4") -> None:
    """Each statement's radio group found by its legend, its ``point`` clicked by its
    label; the comment typed."""
    for fieldset in page.locator("form fieldset").all():
        assert fieldset.locator("legend").inner_text().strip()
        fieldset.get_by_label(point, exact=True).check()
    for area in page.locator("form textarea").all():
        area.fill(COMMENT)


def answer_page(page, name: str, answers: dict[str, str]) -> None:
    """Fill the visible form as a person would: click labels, type text, submit."""
    if name == "consent":
        page.get_by_label("I agree to take part").check()
    elif name == "comprehension" or name.startswith("attention-"):
        for fieldset in page.locator("form fieldset").all():
            question = " ".join(fieldset.locator("legend").inner_text().split())
            fieldset.get_by_label(answers[question], exact=True).check()
    elif name.startswith("rating-"):
        page.get_by_label("Agree", exact=True).check()
        page.locator("textarea").fill("The pictures change with it.")
    elif name.startswith("questionnaire-"):
        answer_questionnaire(page)
    elif name == "demographics":
        page.locator("#age").fill("34")
    follow(page, page.locator("form.step button[type=submit].primary"))


def assert_grid_fits(page, size: str, state: str) -> None:
    """The whole grid is on screen across: every column and picture inside the viewport,
    the pictures large enough to see the arms, the column labels readable."""
    width = page.viewport_size["width"]
    grid = page.locator("table.grid").first
    box = grid.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (state, box, width)
    smallest = 44 if size == "phone" else 96
    for image in grid.locator("img").all()[:40]:
        image.scroll_into_view_if_needed()
        pic = image.bounding_box()
        assert pic["x"] >= 0 and pic["x"] + pic["width"] <= width + 0.5, (state, pic)
        assert pic["width"] >= smallest, (state, pic["width"])
    for header in grid.locator("thead th").all():
        font = header.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert font >= 11, (state, font)
        assert header.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), (state, "clipped")


def walk(page, base: str, pid: str, size: str, answers: dict[str, str], extras: bool) -> str:
    """One participant from the link to the completion page; returns the condition."""
    page.goto(f"{base}/?PROLIFIC_PID={pid}&STUDY_ID=S1&SESSION_ID=X{pid}")
    condition = page.locator('meta[name="xaistudy-condition"]').get_attribute("content")
    out = SCREENSHOTS / size / condition
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    for step in range(40):
        name = page_name(page)
        page.screenshot(path=str(out / f"{step:02d}-{name}.png"), full_page=True)
        audit(page, f"{size} {condition} {name}")
        if name in GRID_PAGES:
            assert_grid_fits(page, size, f"{size} {condition} {name}")
        if name == "complete":
            return condition
        if extras and name == "rating-1":
            check_rating_states(page, size, condition)
        if extras and name.startswith("questionnaire-"):
            check_questionnaire_refused(page, f"{size} {condition}")
        answer_page(page, name, answers)
    raise AssertionError(f"{pid} did not reach the completion page")


def check_rating_states(page, size: str, condition: str) -> None:
    """A refused answer, the explanations opened from a rating page and back, the scale."""
    state = f"{size} {condition}"
    if size == "desktop":  # the five-point scale on one row
        tops = {round(o.bounding_box()["y"]) for o in page.locator(".scale-options label").all()}
        assert len(tops) == 1, (state, tops)
    page.locator("textarea").fill("No rating chosen yet.")
    follow(page, page.locator("form.step button[type=submit].primary"))
    assert page.locator("p.error").count() == 1
    assert page.locator("textarea").input_value() == "No rating chosen yet."
    audit(page, f"{state} rating refused")
    follow(page, page.get_by_role("button", name="Look at the explanations again"))
    assert page.locator("table.grid img").count() >= 10
    audit(page, f"{state} explanations again")
    assert_grid_fits(page, size, f"{state} explanations again")
    follow(page, page.get_by_role("link", name="Back to the questions").first)
    assert page_name(page) == "rating-1"
    assert page.locator("textarea").input_value() == "No rating chosen yet."


def check_questionnaire_refused(page, state: str) -> None:
    """Sent with only the comment: each unanswered statement says so beside its group,
    and the comment is kept."""
    page.locator("form textarea").fill(COMMENT)
    follow(page, page.locator("form.step button[type=submit].primary"))
    errors = page.locator("fieldset p.error")
    assert errors.count() == page.locator("form fieldset").count() == 3, state
    assert errors.first.inner_text() == "Please choose a point of the scale."
    assert page.locator("form textarea").input_value() == COMMENT
    audit(page, f"{state} questionnaire refused")


@pytest.mark.browser
@pytest.mark.parametrize("size", list(SIZES))
def test_chromium_completes_the_study_in_each_condition(server, browser, size):
    from study_server.export import export_frames

    app, base, url = server
    answers = known_answers(app)
    seen = []
    for i in range(3):
        context = browser.new_context(viewport=SIZES[size])
        page = context.new_page()
        seen.append(walk(page, base, f"{size.upper()}{i}", size, answers, extras=True))
        assert page.locator("#completion-code").inner_text() == "C7XSTUDY"
        context.close()
    assert sorted(seen) == sorted(CONDITIONS)
    participants = export_frames(url)["participants"]
    mine = participants[participants["prolific_pid"].str.startswith(size.upper())]
    assert mine["status"].tolist() == ["completed"] * 3
    assert mine["age"].tolist() == [34] * 3
    visits = export_frames(url)["explanation_visits"]
    assert (visits["prolific_pid"].str.startswith(size.upper())).sum() == 3
    scales = export_frames(url)["questionnaire"]
    mine = scales[scales["prolific_pid"].str.startswith(size.upper())]
    assert len(mine) == 3 * 4 and set(mine["point"]) == {"after-ratings"}
    assert mine["value"].dropna().tolist() == [4] * 9
    assert mine["text"].dropna().tolist() == [COMMENT] * 3


@pytest.mark.browser
def test_the_column_headers_stay_in_view_on_a_long_grid(server, browser):
    app, base, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 500})
    page = context.new_page()
    page.goto(f"{base}/?PROLIFIC_PID=STICKY&STUDY_ID=S1&SESSION_ID=X")
    answers = known_answers(app)
    while page_name(page) != "explanations":
        answer_page(page, page_name(page), answers)
    header = page.locator("table.grid thead th").first
    page.locator("table.grid tbody").last.scroll_into_view_if_needed()
    page.mouse.wheel(0, 200)
    top = header.bounding_box()["y"]
    assert page.evaluate("window.scrollY") > 100 and abs(top) < 2, top
    context.close()


@pytest.mark.browser
def test_failed_checks_review_and_end_pages_pass_the_audit(server, browser):
    app, base, _ = server
    answers = known_answers(app)
    for size in SIZES:
        context = browser.new_context(viewport=SIZES[size])
        page = context.new_page()
        page.goto(f"{base}/?PROLIFIC_PID=FAIL{size}&STUDY_ID=S1&SESSION_ID=X")
        while page_name(page) != "comprehension":
            answer_page(page, page_name(page), answers)
        for attempt in range(2):
            for fieldset in page.locator("form fieldset").all():
                question = " ".join(fieldset.locator("legend").inner_text().split())
                labels = fieldset.locator("label").all_inner_texts()
                wrong = next(t.strip() for t in labels if t.strip() != answers[question])
                fieldset.get_by_label(wrong, exact=True).check()
            follow(page, page.get_by_role("button", name="Check my answers"))
            if attempt == 0:
                audit(page, f"{size} comprehension failed once")
                for link in ("Read the introduction again", "Read how to read the explanations"):
                    follow(page, page.get_by_role("link", name=link))
                    audit(page, f"{size} review: {link}")
                    follow(page, page.get_by_role("link", name="Back to the questions"))
                    assert page_name(page) == "comprehension"
        assert page_name(page) == "screened-out"
        assert page.locator("progress").count() == 0
        audit(page, f"{size} screened out")
        declined = context.new_page()
        declined.goto(f"{base}/?PROLIFIC_PID=NO{size}&STUDY_ID=S1&SESSION_ID=X")
        declined.get_by_label("I do not want to take part").check()
        follow(declined, declined.get_by_role("button", name="Continue"))
        assert page_name(declined) == "declined"
        audit(declined, f"{size} declined")
        context.close()


def tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector``."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def choose_by_keyboard(page, name: str, index: int) -> None:
    """Tab into a radio group and pick its ``index``-th option with the arrow keys."""
    tab_to(page, f"input[name='{name}']")
    page.keyboard.press("Space")  # checks the focused (first) option
    for _ in range(index):
        page.keyboard.press("ArrowDown")


@pytest.mark.browser
def test_the_whole_study_can_be_completed_with_the_keyboard_alone(server, browser):
    app, base, _ = server
    answers = known_answers(app)
    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    page.goto(f"{base}/?PROLIFIC_PID=KEYBOARD&STUDY_ID=S1&SESSION_ID=X")
    for _ in range(40):
        name = page_name(page)
        if name == "complete":
            break
        for group in page.locator("form.step fieldset").all():
            radio = group.locator("input[type=radio]").first.get_attribute("name")
            labels = [t.strip() for t in group.locator("label").all_inner_texts()]
            if name == "consent":
                index = 0
            elif name.startswith(("rating-", "questionnaire-")):
                index = 3  # Agree; the fourth point
            else:
                question = " ".join(group.locator("legend").inner_text().split())
                index = labels.index(answers[question])
            choose_by_keyboard(page, radio, index)
        if page.locator("textarea").count():
            tab_to(page, "textarea")
            page.keyboard.type("Typed with the keyboard only.")
        if name == "demographics":
            tab_to(page, "#age")
            page.keyboard.type("29")
        tab_to(page, "form.step button.primary")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page_name(page) != name or name == "comprehension", f"{name} did not advance"
    assert page_name(page) == "complete"
    assert page.locator("#completion-code").inner_text() == "C7XSTUDY"
    tab_to(page, "a.button")  # the way back to Prolific is a focusable link
    context.close()


@pytest.mark.browser
def test_a_new_tab_of_the_link_keeps_the_first_tabs_typed_answer(server, browser):
    from study_server.export import export_frames

    app, base, url = server
    answers = known_answers(app)
    context = browser.new_context(viewport=SIZES["desktop"])
    first = context.new_page()
    link = f"{base}/?PROLIFIC_PID=TWOTABS&STUDY_ID=S1&SESSION_ID=X"
    first.goto(link)
    while page_name(first) != "rating-1":
        answer_page(first, page_name(first), answers)
    first.get_by_label("Agree", exact=True).check()
    first.locator("textarea").fill("Typed before opening the second tab.")
    second = context.new_page()
    second.goto(link)
    assert page_name(second) == "rating-1"
    follow(first, first.locator("form.step button[type=submit].primary"))
    assert page_name(first) == "rating-2"
    # The second tab's answer to the answered page is not stored, and it says so.
    second.get_by_label("Disagree", exact=True).check()
    second.locator("textarea").fill("From the second tab.")
    follow(second, second.locator("form.step button[type=submit].primary"))
    assert page_name(second) == "rating-2"
    assert "was not stored again" in second.locator("p.notice").inner_text()
    audit(second, "note after a second tab's answer")
    answers_frame = export_frames(url)["answers"]
    mine = answers_frame[answers_frame["prolific_pid"] == "TWOTABS"]
    assert mine["reason"].tolist() == ["Typed before opening the second tab."]
    context.close()


def answer_by_value(page, name: str, correct: dict[str, str]) -> None:
    """Fill the form by the options' values, whatever language their labels are in."""
    if name == "consent":
        page.locator('input[name="consent"][value="yes"]').check()
    elif name == "comprehension" or name.startswith("attention-"):
        for field, value in correct.items():
            option = page.locator(f'input[name="{field}"][value="{value}"]')
            if option.count():
                option.check()
    elif name.startswith("rating-"):
        page.locator('input[name="rating"][value="4"]').check()
        page.locator("textarea").fill("Die Bilder ändern sich damit.")
    elif name.startswith("questionnaire-"):
        for field in {r.get_attribute("name") for r in page.locator("input[type=radio]").all()}:
            page.locator(f'input[name="{field}"][value="2"]').check()
        page.locator("textarea").fill("Die Arme haben mir am meisten gesagt.")
    follow(page, page.locator("form.step button[type=submit].primary"))


def german_walk(browser, base: str, study, pid: str) -> str:
    """One German participant on a phone, from the link to the completion page, every
    page audited and every grid (with its German labels) fitting; returns the condition."""
    context = browser.new_context(viewport=SIZES["phone"], locale="de-DE")
    page = context.new_page()
    page.goto(f"{base}/?PROLIFIC_PID={pid}&STUDY_ID=S1&SESSION_ID=X&lang=de")
    condition = page.locator('meta[name="xaistudy-condition"]').get_attribute("content")
    questions = (*study.comprehension_for(condition), *study.attention_checks)
    correct = {f"q_{q.id}": q.correct for q in questions}
    out = SCREENSHOTS / "phone-de" / condition
    out.mkdir(parents=True, exist_ok=True)
    for step in range(40):
        name = page_name(page)
        assert page.locator("html").get_attribute("lang") == "de", name
        page.screenshot(path=str(out / f"{step:02d}-{name}.png"), full_page=True)
        audit(page, f"de {condition} {name}")
        if name in GRID_PAGES:
            assert_grid_fits(page, "phone", f"de {condition} {name}")
        if name == "complete":
            break
        answer_by_value(page, name, correct)
    else:
        raise AssertionError(f"the German participant {pid} did not reach the completion page")
    assert page.get_by_role("link", name="Zurück zu Prolific").count() == 1
    context.close()
    return condition


@pytest.mark.browser
def test_a_participant_whose_link_asks_for_german_completes_it_in_german(server, browser):
    """German participants on a phone until each condition was walked (assignment is
    balanced, so a few arrivals cover all three)."""
    from study_server import study_context

    app, base, _ = server
    study = study_context(app).study
    walked = set()
    for n in range(2 * len(CONDITIONS)):
        walked.add(german_walk(browser, base, study, f"GERMAN{n}"))
        if walked == set(CONDITIONS):
            break
    assert walked == set(CONDITIONS)
