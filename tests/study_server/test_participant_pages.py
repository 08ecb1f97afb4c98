"""What participants read and do on their pages: plain words, one tutorial text, the
comprehension question made from the bundle, consent details, new tabs, drafts, and the
looks at the explanations while answering."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from html import unescape

import pytest
from server_helpers import (
    answer_all,
    count,
    current_page,
    enter,
    filled_study_file,
    hidden_fields,
    make_app,
    sign_in_as,
    walk_to,
)

from explain.bundle_format import load_manifest
from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server import study_context
from study_server.comprehension import example_questions
from study_server.extensions import db
from study_server.models import Answer, ExplanationVisit, Participant
from study_server.pages import page_sequence
from study_server.participant import NOT_STORED
from study_server.study import default_study_path, load_study, parse_study
from xaistudy.errors import UserError


def _condition(app, pid: str = "P1") -> str:
    with app.app_context():
        condition = db.session.query(Participant).filter_by(prolific_pid=pid).one().condition
        db.session.rollback()
        return condition


def _visible_text(html: str) -> str:
    """What a participant reads: the body's text, without tags, attribute values or meta."""
    body = html[html.index("<body") :]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    alts = re.findall(r'alt="([^"]*)"', body)
    return unescape(re.sub(r"<[^>]+>", " ", body) + " " + " ".join(alts))


# ------------------------------------------------------------------------ words


JARGON = re.compile(r"logit|test set|test image|program|concept|\bpeaky\b|\bstretchy\b|\d\.\d")


def test_every_page_speaks_plain_words_in_one_voice(sqlite_app):
    """Every page of every condition (and the explanations and review pages) reads without
    jargon, raw numbers or lowercase animal names."""
    conditions = set()
    for pid in ("W0", "W1", "W2"):  # balanced assignment: one per condition
        client = sqlite_app.test_client()
        html = enter(client, pid).get_data(as_text=True)
        conditions.add(_condition(sqlite_app, pid))
        while True:
            name = current_page(html)
            assert not JARGON.findall(_visible_text(html)), (name, JARGON.findall(html))
            if name == "rating-1":
                for extra in ("/explanations", "/review/intro", "/review/tutorial"):
                    text = _visible_text(client.get(extra).get_data(as_text=True))
                    assert not JARGON.findall(text), (extra, JARGON.findall(text))
            if name == "complete":
                break
            html = walk_to(client, _next_page(sqlite_app, name), pid=pid)
    assert conditions == {"baseline", "counterfactuals", "concepts"}


def _next_page(app, name: str) -> str:
    names = [page.name for page in page_sequence(study_context(app).study)]
    return names[names.index(name) + 1]


def test_the_tutorial_shows_one_text_the_study_files_when_given(sqlite_app, bundle_dir, tmp_path):
    client = sqlite_app.test_client()
    html = walk_to(client, "tutorial")
    condition = study_context(sqlite_app).manifest.conditions[_condition(sqlite_app)]
    assert unescape(html).count(condition.description.split(".")[0]) == 1

    data = tomllib.loads(default_study_path().read_text())
    for table in data["conditions"].values():
        table["tutorial"] = "Read the rows from left to right."
    study = parse_study(data)
    assert (
        study.how_to_read("baseline", "the bundle's words") == "Read the rows from left to right."
    )
    assert load_study(None).how_to_read("baseline", "the bundle's words") == "the bundle's words"


# -------------------------------------------------------------- comprehension


def test_the_example_question_is_answered_by_the_bundle(bundle_dir):
    manifest = load_manifest(bundle_dir)
    by_condition = {q.conditions[0]: q for q in example_questions(manifest)}
    assert by_condition["baseline"].correct == "the picture in the middle"  # the unsure column
    assert by_condition["counterfactuals"].correct == "the leftmost picture"  # the original
    assert by_condition["concepts"].correct == "Stretchy"  # feature 1 pushes toward it
    for question in by_condition.values():
        assert question.correct in question.options and len(question.options) >= 3
        assert question.example_row == 0

    # The answer follows the bundle: the first feature pushing the other way flips it.
    concepts = manifest.conditions.concepts
    flipped_row = dataclasses.replace(concepts.concepts[0], toward="peaky", importance=-2.1)
    flipped = dataclasses.replace(
        manifest,
        conditions=dataclasses.replace(
            manifest.conditions,
            concepts=dataclasses.replace(concepts, concepts=(flipped_row, *concepts.concepts[1:])),
        ),
    )
    assert example_questions(flipped)[2].correct == "Peaky"


def test_no_fixed_answer_position_passes_the_comprehension_check(sqlite_app):
    """A participant who always picks the first (or the last) option fails every condition."""
    study = study_context(sqlite_app).study
    for condition in study.condition_names:
        questions = study.comprehension_for(condition)
        assert len(questions) >= 2
        for pick in (0, -1):
            assert not all(q.options[pick] == q.correct for q in questions), condition


def test_comprehension_shows_the_example_row_and_offers_the_tutorial_after_a_failure(sqlite_app):
    client = sqlite_app.test_client()
    html = walk_to(client, "comprehension")
    assert "one row of the explanations" in html and '<table class="grid"' in html
    assert "/review/tutorial" not in html  # only after a failed attempt
    study = study_context(sqlite_app).study
    wrong = {
        f"q_{q.id}": next(o for o in q.options if o != q.correct)
        for q in study.comprehension_for(_condition(sqlite_app))
    }
    html = client.post(
        "/study/comprehension", data={**hidden_fields(html), **wrong}, follow_redirects=True
    ).get_data(as_text=True)
    assert current_page(html) == "comprehension" and "1 attempt left" in html
    for page, heading in (("intro", "Meet Peaky and Stretchy"), ("tutorial", "How to read")):
        assert f"/review/{page}" in html
        review = client.get(f"/review/{page}").get_data(as_text=True)
        assert heading in review and "Back to the questions" in review
        assert 'method="post"' not in review  # read only: it moves nothing
    assert client.get("/review/consent").status_code == 404
    assert current_page(client.get("/study/comprehension").get_data(as_text=True)) == (
        "comprehension"
    )


def test_review_pages_wait_until_the_questions(sqlite_app):
    client = sqlite_app.test_client()
    walk_to(client, "tutorial")
    assert client.get("/review/intro").status_code == 403


# -------------------------------------------------------------------- consent


def test_participants_are_turned_away_while_consent_details_are_unfilled(bundle_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    app = make_app(bundle_dir, url, XAISTUDY_ALLOW_INCOMPLETE_CONSENT=False)
    response = enter(app.test_client(), "EARLY", follow=False)
    assert response.status_code == 503
    assert "not open yet" in response.get_data(as_text=True)
    assert count(app, Participant) == 0

    filled = make_app(
        bundle_dir,
        f"sqlite:///{tmp_path / 'f.sqlite'}",
        XAISTUDY_ALLOW_INCOMPLETE_CONSENT=False,
        XAISTUDY_STUDY=str(filled_study_file(tmp_path)),
    )
    html = enter(filled.test_client(), "READY").get_data(as_text=True)
    assert current_page(html) == "consent"
    assert "the ethics approval of this study" in html and "not filled in" not in html


def test_a_preview_shows_the_unfilled_consent_details_marked(sqlite_app):
    from study_server.participant import start_preview

    with sqlite_app.test_request_context():
        preview_id = start_preview("baseline").id
    client = sqlite_app.test_client()
    sign_in_as(sqlite_app, client, preview_id)
    html = client.get("/study/consent").get_data(as_text=True)
    assert "[researcher contact: not filled in]" in html


@pytest.mark.parametrize(
    "consent,message",
    [
        ("Plain text without the details.", "add {researcher_contact}"),
        ("{researcher_contact} {ethics_approval} {payment} {data_controller} {retention} "
         "{withdrawal} {salary}", "unknown placeholder(s) {salary}"),
    ],
)  # fmt: skip
def test_a_consent_text_must_state_every_detail(consent, message):
    data = tomllib.loads(default_study_path().read_text())
    data["consent"] = consent
    with pytest.raises(UserError, match=re.escape(message)):
        parse_study(data)


# ------------------------------------------------------------------- end pages


def test_screened_out_page_offers_its_code_pay_and_no_progress(bundle_dir, tmp_path):
    path = filled_study_file(tmp_path)
    path.write_text(
        path.read_text().replace(
            '# screened_out_payment = "£0.50"', 'screened_out_payment = "£0.50"'
        )
    )
    app = make_app(bundle_dir, f"sqlite:///{tmp_path / 's.sqlite'}", XAISTUDY_STUDY=str(path))
    client = ParticipantClient(FlaskTransport(app), prolific_pid="OUT")
    assert client.run(answer=answer_all, comprehension="fail").status == "screened_out"
    test_client = FlaskTransport(app).client
    with app.app_context():
        participant_id = db.session.query(Participant).one().id
    sign_in_as(app, test_client, participant_id)
    html = test_client.get("/study/screened-out").get_data(as_text=True)
    assert "paid £0.50 for the time you spent" in html
    assert "return the study" not in html.lower()  # the button sends the code instead
    assert "Return to Prolific" in html and "<progress" not in html


def test_the_completion_page_never_redirects_on_a_timer(sqlite_app):
    client = sqlite_app.test_client()
    html = walk_to(client, "complete")
    assert 'http-equiv="refresh"' not in html and "Return to Prolific" in html


# ---------------------------------------------------------------- new tabs


def test_opening_the_link_again_in_a_new_tab_keeps_the_old_tabs_form_valid(sqlite_app):
    client = sqlite_app.test_client()
    old_tab = walk_to(client, "rating-1")
    enter(client)  # the same participant opens the link in a new tab
    data = {**hidden_fields(old_tab), "rating": "4", "reason": "typed in the first tab"}
    response = client.post("/study/rating-1", data=data)
    assert response.status_code == 303 and response.headers["Location"].endswith("rating-2")
    assert count(sqlite_app, Answer, Answer.reason == "typed in the first tab") == 1


def test_a_second_tabs_answer_to_an_answered_page_is_reported_not_dropped(sqlite_app):
    client = sqlite_app.test_client()
    tab = walk_to(client, "rating-1")
    first = {**hidden_fields(tab), "rating": "4", "reason": "first tab"}
    assert client.post("/study/rating-1", data=first).status_code == 303
    second = {**hidden_fields(tab), "rating": "1", "reason": "second tab"}
    html = client.post("/study/rating-1", data=second, follow_redirects=True).get_data(as_text=True)
    assert current_page(html) == "rating-2"
    assert unescape(NOT_STORED.split(",")[0]) in unescape(html)
    assert count(sqlite_app, Answer) == 1
    # The note is shown once.
    assert NOT_STORED.split(",")[0] not in client.get("/study/rating-2").get_data(as_text=True)


def test_a_refused_answer_is_shown_again_from_a_redirect(sqlite_app):
    client = sqlite_app.test_client()
    html = walk_to(client, "rating-1")
    refused = {**hidden_fields(html), "reason": "I typed this but chose no rating"}
    response = client.post("/study/rating-1", data=refused)
    assert response.status_code == 303  # Back and reload never resend the form
    shown = client.get("/study/rating-1").get_data(as_text=True)
    assert "Please choose a rating." in shown
    assert "I typed this but chose no rating</textarea>" in shown
    ok = {**hidden_fields(shown), "rating": "2", "reason": "now complete"}
    assert client.post("/study/rating-1", data=ok).status_code == 303
    with sqlite_app.app_context():
        assert db.session.query(Participant).one().draft is None
        db.session.rollback()


# ------------------------------------------------------- explanation visits


def test_every_look_at_the_explanations_is_recorded_and_what_was_typed_kept(sqlite_app):
    client = sqlite_app.test_client()
    html = walk_to(client, "rating-2")
    typed = {**hidden_fields(html), "rating": "5", "reason": "half a thought"}
    response = client.post("/explanations", data=typed)
    assert response.status_code == 303 and response.headers["Location"].endswith("/explanations")
    shown = client.get("/explanations").get_data(as_text=True)
    assert "Back to the questions" in shown and "/study/rating-2" in shown
    client.get("/explanations")  # a reload continues the same look
    back = client.get("/study/rating-2").get_data(as_text=True)
    assert "half a thought</textarea>" in back and '<input checked id="rating-4"' in back
    client.get("/explanations")  # a second look, never closed
    with sqlite_app.app_context():
        visits = db.session.query(ExplanationVisit).order_by(ExplanationVisit.id).all()
        assert [v.from_page for v in visits] == ["rating-2", "rating-2"]
        assert visits[0].closed_at >= visits[0].opened_at and visits[1].closed_at is None
        db.session.rollback()
    assert count(sqlite_app, Answer) == 1  # opening the explanations answers nothing


def test_the_explanations_button_needs_the_form_and_the_walk(sqlite_app):
    client = sqlite_app.test_client()
    html = walk_to(client, "tutorial")
    assert client.post("/explanations", data=hidden_fields(html)).status_code == 403
    assert client.post("/explanations", data={}).status_code == 400  # no CSRF token
    assert count(sqlite_app, ExplanationVisit) == 0
