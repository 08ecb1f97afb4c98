"""Questionnaires: Likert items and free text at named points of either design's walk,
pre/post blocks asked twice, one stored row per item answered, the long export, and one
start-up error per bad study file."""

from __future__ import annotations

import tomllib
from html import unescape

import pytest
from server_helpers import (
    current_page,
    enter,
    filled_study_file,
    forward_study,
    hidden_fields,
    make_app,
    middle_answers,
    walk_to,
)

from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server.export import export_frames
from study_server.extensions import db
from study_server.models import QuestionnaireAnswer
from study_server.pages import page_sequence
from study_server.study import default_study_path, load_study, parse_study, shipped_studies
from xaistudy.errors import UserError

ITEM = """
[[questionnaires.items]]
id = "trust"
kind = "likert"
statement = "I trust it."
statement_de = "Ich vertraue ihm."
points = 7
low = "No"
low_de = "Nein"
high = "Yes"
high_de = "Ja"
"""


def _default_data() -> dict:
    return tomllib.loads(default_study_path().read_text())


def _with_questionnaire(data: dict, **changes) -> dict:
    """``data`` with one extra questionnaire (``changes`` replace its keys; an item key
    given as ``item_<key>`` replaces its first item's)."""
    block = tomllib.loads(f'[[questionnaires]]\nid = "extra"\ntitle = "T"\ntitle_de = "T"\n'
                          f'at = "after-intro"\n{ITEM}')["questionnaires"][0]  # fmt: skip
    for key, value in changes.items():
        target = block["items"][0] if key.startswith("item_") else block
        target[key.removeprefix("item_")] = value
    return {**data, "questionnaires": [*data.get("questionnaires", []), block]}


def test_the_shipped_studies_place_their_questionnaires_in_the_walk():
    rating = load_study(None)
    names = [p.name for p in page_sequence(rating)]
    assert names[names.index("rating-7") + 1 : names.index("complete")] == [
        "questionnaire-post",
        "demographics",
    ]
    post = rating.questionnaire("post")
    assert [(i.id, i.kind, i.points, i.required) for i in post.items] == [
        ("understanding", "likert", 5, True),
        ("usefulness", "likert", 5, True),
        ("trust", "likert", 5, True),
        ("comment", "text", 0, False),
    ]
    forward = load_study(shipped_studies()["forward-simulation"], "de")
    names = [p.name for p in page_sequence(forward)]
    assert names[:3] == ["consent", "intro", "questionnaire-predict-after-intro"]
    assert names[names.index("feedback-8") + 1] == "questionnaire-predict-after-learning"
    assert names[names.index("test-16") + 1] == "questionnaire-post"
    assert forward.questionnaire("predict").items[0].text == (
        "Ich kann die Entscheidungen des Modells vorhersagen."
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"item_kind": "slider"},
         r"items\[0\].kind = 'slider' is not known; allowed are likert, text"),
        ({"item_points": 6}, r"items\[0\].points = 6; allowed are 5 or 7"),
        ({"item_colour": "red"}, r"unknown key\(s\) colour in questionnaires\[0\].items\[0\]"),
        ({"item_statement_de": None}, r"questionnaires\[0\].items\[0\].statement_de is missing"),
        ({"at": "after-learning"}, r"names point\(s\) \['after-learning'\] that design "
         r"'attribute-rating' does not have; allowed are after-intro, after-explanations, "
         "after-ratings"),
        ({"at": []}, "names no point; allowed are after-intro"),
        ({"at": ["after-ratings", "after-intro"]}, "must list distinct points in the order"),
        ({"conditions": ["nobody"]}, r"conditions names unknown condition\(s\) \['nobody'\]"),
        ({"id": "Bad-Id"}, "must be 1 to 24 lowercase letters, digits or _"),
        ({"id": "a_rather_long_block_id", "at": ["after-intro", "before-demographics"]},
         "makes the page name 'questionnaire-a_rather_long_block_id-before-demographics' "
         "longer than 40 characters"),
        ({"items": []}, r"questionnaires\[0\] needs at least one \[\[questionnaires.items\]\]"),
    ],
)  # fmt: skip
def test_a_bad_questionnaire_stops_start_up_with_one_message(changes, message):
    data = _default_data()
    data.pop("questionnaires")
    block = _with_questionnaire(data, **{k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:
        del block["questionnaires"][0]["items"][0][key.removeprefix("item_")]
    with pytest.raises(UserError, match=message):
        for language in ("en", "de"):  # as the server reads the study: in each language
            parse_study(block, language)


def test_repeated_ids_are_refused():
    data = _with_questionnaire(_default_data(), id="post")
    with pytest.raises(UserError, match="questionnaire ids repeat: post"):
        parse_study(data)
    data = _with_questionnaire(_default_data())
    items = data["questionnaires"][-1]["items"]
    items.append(dict(items[0]))
    with pytest.raises(UserError, match="item ids of questionnaire 'extra' repeat: trust"):
        parse_study(data)


def test_a_forward_simulation_point_is_refused_in_the_other_design_and_back():
    forward = tomllib.loads(shipped_studies()["forward-simulation"].read_text())
    forward["questionnaires"][1]["at"] = "after-ratings"
    with pytest.raises(UserError, match="that design 'forward-simulation' does not have"):
        parse_study(forward)


def test_the_walk_stores_one_row_per_item_answered_and_none_for_empty_text(bundle_dir, tmp_path):
    app = make_app(
        bundle_dir,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        XAISTUDY_STUDY=str(filled_study_file(tmp_path)),
    )
    answers = {"understanding": "4", "usefulness": "2", "trust": "5", "comment": "Clear."}

    def scale(questionnaire, point, item, condition, points):
        return answers[item] if item != "comment" or condition == "baseline" else ""

    conditions = {}
    for i in range(3):
        result = ParticipantClient(FlaskTransport(app), prolific_pid=f"PQ{i}").run(
            lambda key, condition: (3, "a reason"), scale=scale
        )
        assert result.status == "completed"
        assert "questionnaire-post" in result.pages
        conditions[result.condition] = i
    with app.app_context():
        rows = db.session.scalars(db.select(QuestionnaireAnswer)).all()
    assert len(rows) == 3 * 3 + 1  # the comment only where one was written
    assert {(r.item, r.value, r.text) for r in rows} == {
        ("understanding", 4, None),
        ("usefulness", 2, None),
        ("trust", 5, None),
        ("comment", None, "Clear."),
    }
    assert {r.point for r in rows} == {"after-ratings"}
    frame = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])["questionnaire"]
    assert list(frame.columns) == [
        "participant_id", "prolific_pid", "condition", "questionnaire", "point", "item",
        "value", "text", "answered_at",
    ]  # fmt: skip
    assert len(frame) == 10 and str(frame["value"].dtype) == "Int64"
    comment = frame[frame["item"] == "comment"].iloc[0]
    assert comment["condition"] == "baseline" and comment["text"] == "Clear."
    assert set(frame["condition"]) == set(conditions)


def test_a_required_item_left_out_is_refused_with_its_message_and_keeps_the_rest(
    bundle_dir, tmp_path
):
    app = make_app(
        bundle_dir,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        XAISTUDY_STUDY=str(filled_study_file(tmp_path)),
    )
    client = app.test_client()
    html = walk_to(client, "questionnaire-post")
    assert '<fieldset class="scale points-5">' in html
    assert "<legend>I understand how the model tells Peaky from Stretchy.</legend>" in html
    assert '<label class="field-label" for="i_comment">' in html  # the text area's label
    assert "(optional)" in html and "1 (Strongly disagree)" in html
    data = {**hidden_fields(html), "i_understanding": "4", "i_trust": "9", "i_comment": "x"}
    shown = unescape(
        client.post("/study/questionnaire-post", data=data, follow_redirects=True).get_data(
            as_text=True
        )
    )
    assert current_page(shown) == "questionnaire-post"
    assert shown.count("Please choose a point of the scale.") == 1  # usefulness left out
    assert "Not a valid choice" in shown  # trust = 9
    assert '<input checked id="i_understanding-3"' in shown  # what was chosen stays
    assert 'aria-describedby="i_usefulness-error"' in shown
    with app.app_context():
        assert db.session.scalars(db.select(QuestionnaireAnswer)).first() is None


def test_a_pre_post_block_is_asked_twice_and_a_limited_one_only_in_its_condition(
    bundle_dir, tmp_path
):
    extra = f"""
[[questionnaires]]
id = "maps"
title = "The maps"
title_de = "Die Karten"
at = "after-test"
conditions = ["integrated_gradients"]
{ITEM}
"""
    study = forward_study(
        tmp_path, conditions=("none", "integrated_gradients"), extra=extra,
        learning_trials=1, test_trials=1,
    )  # fmt: skip
    app = make_app(bundle_dir, f"sqlite:///{tmp_path / 'db.sqlite'}", XAISTUDY_STUDY=str(study))
    seen = {}
    for i in range(2):
        result = ParticipantClient(FlaskTransport(app), prolific_pid=f"PP{i}").run(
            lambda key, condition: (3, "")
        )
        seen[result.condition] = result.pages
    assert "questionnaire-maps" in seen["integrated_gradients"]
    assert "questionnaire-maps" not in seen["none"]
    for pages in seen.values():
        first = pages.index("questionnaire-predict-after-intro")
        assert pages.index("questionnaire-predict-after-learning") > first
    with app.app_context():
        rows = db.session.scalars(
            db.select(QuestionnaireAnswer).where(QuestionnaireAnswer.item == "can_predict")
        ).all()
    assert sorted(r.point for r in rows) == ["after-intro"] * 2 + ["after-learning"] * 2
    assert {r.value for r in rows} == {4}  # the middle of the 7-point scale


def test_the_questionnaire_page_speaks_german(bundle_dir, tmp_path):
    app = make_app(
        bundle_dir,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        XAISTUDY_STUDY=str(forward_study(tmp_path)),
    )
    client = app.test_client()
    client.get("/?PROLIFIC_PID=PDE&STUDY_ID=S1&SESSION_ID=X1&lang=de")
    html = walk_to(client, "questionnaire-predict-after-intro", pid="PDE")
    text = unescape(html)
    assert "Wie gut können Sie das Modell vorhersagen?" in text
    assert "Es gibt keine richtigen oder falschen Antworten" in text
    data = {**hidden_fields(html)}
    shown = unescape(
        client.post(
            "/study/questionnaire-predict-after-intro", data=data, follow_redirects=True
        ).get_data(as_text=True)
    )
    assert "Bitte wählen Sie einen Punkt der Skala." in shown
    client.post(
        "/study/questionnaire-predict-after-intro",
        data={**hidden_fields(shown), **middle_answers(shown)},
    )
    assert current_page(enter(client, "PDE").get_data(as_text=True)) == "learning-intro"
