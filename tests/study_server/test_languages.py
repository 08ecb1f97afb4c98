"""The study in German: the participant's pages, the study file's texts, the catalogs,
and the start-up checks that refuse a language with a missing translation."""

from __future__ import annotations

import re
import shutil
from html import unescape
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from server_helpers import answer_all, current_page, enter, filled_study_file, make_app

from simulation.client import Behavior, ParticipantClient, fill_form
from simulation.parse import parse_page
from simulation.transport import FlaskTransport
from study_server import languages, study_context
from study_server.study import load_study, parse_study
from xaistudy.errors import UserError
from xaistudy.vocabulary import Status

REPO = Path(__file__).resolve().parents[2]
CATALOGS = REPO / "study_server" / "translations"


def _german_study(folder: Path) -> Path:
    path = filled_study_file(folder)
    path.write_text(path.read_text().replace('language = "en"', 'language = "de"'))
    return path


@pytest.fixture
def german_app(bundle_dir, database_url, backend, tmp_path):
    # the database is shared on PostgreSQL: each test here enters with its own PIDs
    return make_app(
        bundle_dir,
        database_url,
        migrate=backend == "postgres",
        XAISTUDY_STUDY=str(_german_study(tmp_path)),
    )


def _english_messages() -> set[str]:
    """The catalog's English messages long enough to be told apart from names."""
    with open(CATALOGS / "messages.pot", "rb") as pot:
        ids = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(pot) if m.id}
    heads = {re.split(r"%\(", i)[0].strip() for i in ids}  # the words before a value
    return {head for head in heads if len(head) > 12}


def _visible_text(html: str) -> str:
    """What a participant reads, pictures' text for screen readers (alt) included."""
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r'<img[^>]*\balt="([^"]*)"[^>]*>', r" \1 ", html)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _assert_german(html: str, study) -> None:
    assert '<html lang="de">' in html
    text = _visible_text(html)
    english = [m for m in _english_messages() if m and m in text]
    assert not english, f"English on page {current_page(html)}: {english}"
    for attribute in load_study(None, "en").attributes:  # the English study texts
        assert attribute.name.capitalize() not in text


def test_a_german_participant_reads_german_on_every_page(german_app):
    client = german_app.test_client()
    study = study_context(german_app).study
    html = enter(client, "PDEWALK").get_data(as_text=True)
    behavior = Behavior(answer=answer_all, demographics={"age": 30})
    seen = []
    while True:
        _assert_german(html, study)
        seen.append(current_page(html))
        shown = parse_page(html)
        if shown.action is None and not shown.hidden:
            break
        data = fill_form(study, shown, behavior, shown.meta.get("xaistudy-condition"))
        html = client.post(f"/study/{seen[-1]}", data=data, follow_redirects=True).get_data(
            as_text=True
        )
    assert seen[0] == "consent" and seen[-1] == "complete"
    assert "Vielen Dank!" in html and "Das sind Peaky und Stretchy" not in html


def test_a_german_refusal_and_error_page_are_german(german_app):
    client = german_app.test_client()
    html = enter(client, "PDEREFUSED").get_data(as_text=True)
    shown = parse_page(html)
    html = client.post("/study/consent", data=shown.hidden, follow_redirects=True).get_data(
        as_text=True
    )
    assert "Bitte wählen Sie eine Antwort." in html
    missing = client.get("/study/no-such-page").get_data(as_text=True)
    assert "Diese Seite gibt es in dieser Studie nicht." in missing
    assert '<html lang="de">' in missing


def test_the_simulated_participant_completes_the_study_in_german(german_app):
    result = ParticipantClient(FlaskTransport(german_app), prolific_pid="PDE1").run(answer_all)
    assert result.status == Status.COMPLETED
    assert result.completion_code


def test_a_link_chooses_an_offered_language(app):
    client = app.test_client()
    german = client.get(
        "/?PROLIFIC_PID=P7&STUDY_ID=S1&SESSION_ID=X1&lang=de", follow_redirects=True
    ).get_data(as_text=True)
    assert '<html lang="de">' in german and "Willkommen" in german
    english = (
        app.test_client()
        .get("/?PROLIFIC_PID=P8&STUDY_ID=S1&SESSION_ID=X1&lang=fr", follow_redirects=True)
        .get_data(as_text=True)
    )
    assert '<html lang="en">' in english and "Welcome" in english


def test_answers_are_stored_in_the_first_language_whatever_was_read(app):
    result = ParticipantClient(FlaskTransport(app), prolific_pid="PDE2", language="de").run(
        answer_all
    )
    assert result.status == Status.COMPLETED
    from study_server.extensions import db
    from study_server.models import CheckAnswer

    with app.app_context():
        answers = {a.question: a.answer for a in db.session.query(CheckAnswer)}
    assert answers["a2"] == "Peaky and Stretchy"


def test_the_researchers_pages_stay_english(german_app):
    html = german_app.test_client().get("/admin/login").get_data(as_text=True)
    assert '<html lang="en">' in html


# a page's message, and a word of the bundle's grids (explain/wording.py)
@pytest.mark.parametrize("message", ["Check my answers", "original picture"])
def test_a_missing_translation_refuses_to_start(bundle_dir, tmp_path, monkeypatch, message):
    copy = tmp_path / "translations"
    shutil.copytree(CATALOGS, copy)
    po_path = copy / "de" / "LC_MESSAGES" / "messages.po"
    with open(po_path, "rb") as po:
        catalog = read_po(po)
    catalog[message].string = ""
    with open(po_path.with_suffix(".mo"), "wb") as mo:
        write_mo(mo, catalog)
    monkeypatch.setattr(languages, "TRANSLATIONS_DIR", copy)
    with pytest.raises(UserError, match=f"lacks 1 translation.*'{message}'"):
        make_app(
            bundle_dir,
            f"sqlite:///{tmp_path / 'db.sqlite'}",
            XAISTUDY_STUDY=str(_german_study(tmp_path)),
        )


def test_the_template_lists_every_marked_message():
    """messages.pot is extracted from the sources as they are (docs/deploy.md recipe)."""
    from babel.messages.frontend import parse_mapping_cfg

    with open(REPO / "babel.cfg") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None}
    extracted = {
        m[2] if isinstance(m[2], str) else m[2][0]
        for m in extract_from_dir(str(REPO), method_map, options_map, keywords=keywords)
    }
    with open(CATALOGS / "messages.pot", "rb") as pot:
        listed = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(pot) if m.id}
    assert extracted == listed


def _flat(message):
    return message if isinstance(message, str) else tuple(message)


def test_the_compiled_catalog_matches_its_source():
    with open(CATALOGS / "de" / "LC_MESSAGES" / "messages.po", "rb") as po:
        source = {_flat(m.id): _flat(m.string) for m in read_po(po) if m.id and not m.fuzzy}
    with open(CATALOGS / "de" / "LC_MESSAGES" / "messages.mo", "rb") as mo:
        compiled = {_flat(m.id): _flat(m.string) for m in read_mo(mo) if m.id}
    assert compiled == source
    assert languages.missing_messages("de") == []


def _study_data(**changes):
    import tomllib

    from study_server.study import default_study_path

    data = tomllib.loads(default_study_path().read_text())
    data.update(changes)
    return data


def test_every_participant_text_of_an_offered_language_is_required():
    data = _study_data()
    del data["attributes"][2]["name_de"]
    with pytest.raises(
        UserError, match=r"attributes\[2\]\.name_de is missing: the study offers de"
    ):
        parse_study(data, "de")
    question = _study_data()
    question["attention_checks"][0]["options_de"] = ["Ja", "Nein"]
    with pytest.raises(UserError, match="options_de must have as many entries as options"):
        parse_study(question, "de")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"languages": ["en", "fr"]}, "languages = .* must list distinct languages out of en, de"),
        ({"languages": ["en"], "language": "de"}, "language = 'de' must be one of languages"),
    ],
)
def test_bad_language_settings_are_named(changes, message):
    data = _study_data(**changes)
    if changes.get("languages") == ["en"]:
        data = {k: v for k, v in data.items() if not k.endswith("_de")}
    with pytest.raises(UserError, match=message):
        parse_study(data)


def test_an_english_only_study_rejects_german_variants():
    data = {k: v for k, v in _study_data().items() if k not in ("languages", "language")}
    with pytest.raises(UserError, match="unknown key.*statement_de"):
        parse_study(data)


def test_wtforms_own_messages_follow_the_participants_language(sqlite_app):
    from flask_babel import force_locale
    from werkzeug.datastructures import MultiDict

    from study_server.forms import ContinueForm

    seen = {}
    for locale in ("en", "de", "en"):  # a cached catalog never leaks into another language
        with sqlite_app.test_request_context(), force_locale(locale):
            form = ContinueForm(formdata=MultiDict({}), meta={"csrf": False})
            form.validate()
            seen.setdefault(locale, set()).add(form.errors["rev"][0])
    assert seen == {"en": {"This field is required."}, "de": {"Dieses Feld wird benötigt."}}
