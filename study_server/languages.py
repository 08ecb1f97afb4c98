"""The languages participants read the study in (Flask-Babel), and the check at start-up
that every participant message has its translation.

Participant text in templates and code is English marked for translation; the catalogs
are ``translations/<lang>/LC_MESSAGES/messages.po`` (compiled ``.mo`` committed next to
them), extracted into ``translations/messages.pot`` (docs/deploy.md has the recipe). The
researcher's pages stay English. A participant reads the study in its ``language``, or
in the one their link asks for with ``lang=`` when the study offers it (docs/study.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, has_request_context, request, session
from flask_babel import Babel

from xaistudy.errors import UserError

TRANSLATIONS_DIR = Path(__file__).parent / "translations"
SOURCE_LANGUAGE = "en"  # the language the marked messages are written in
SESSION_KEY = "lang"  # the participant's language, chosen at entry
MISSING_SHOWN = 10  # how many missing messages a start-up error names


@functools.cache
def _catalog(directory: Path, language: str) -> NullTranslations:
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(directory), [language])


def translator(language: str) -> Callable[[str], str]:
    """The gettext of ``language``'s catalog, for text built outside a request."""
    return _catalog(TRANSLATIONS_DIR, language).gettext


def missing_messages(language: str, directory: Path | None = None) -> list[str]:
    """The messages of ``messages.pot`` that ``language``'s compiled catalog lacks (a
    missing or fuzzy msgstr)."""
    directory = directory or TRANSLATIONS_DIR
    if language == SOURCE_LANGUAGE:
        return []
    with open(directory / "messages.pot", "rb") as pot:
        wanted = [message.id for message in read_po(pot) if message.id]
    catalog = Translations.load(str(directory), [language])
    known = getattr(catalog, "_catalog", {})
    return [m if isinstance(m, str) else m[0] for m in wanted if _key(m) not in known]


def _key(message_id: str | tuple[str, ...]) -> str | tuple[str, int]:
    # a plural message is stored under (singular, 0)
    return message_id if isinstance(message_id, str) else (message_id[0], 0)


def check_catalogs(languages: tuple[str, ...]) -> None:
    """Refuse to serve a study in a language whose catalog lacks a participant message."""
    for language in languages:
        missing = missing_messages(language)
        if missing:
            shown = "; ".join(repr(m) for m in missing[:MISSING_SHOWN])
            more = (
                f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
            )
            raise UserError(
                f"the study offers {language}, but its catalog "
                f"({TRANSLATIONS_DIR / language / 'LC_MESSAGES' / 'messages.po'}) lacks "
                f"{len(missing)} translation(s): {shown}{more}. Translate them and compile "
                "(docs/deploy.md, Translations)"
            )


def participant_language(app: Flask) -> str:
    """The language of this request: English on the researcher's pages, else the
    participant's choice at entry, else the study's ``language``."""
    study = app.extensions["xaistudy"].study
    if not has_request_context():
        return study.language
    if request.blueprint == "admin":
        return SOURCE_LANGUAGE
    chosen = session.get(SESSION_KEY)
    return chosen if chosen in study.languages else study.language


def choose_language(app: Flask, asked: str | None) -> None:
    """Keep the language a participant's link asks for (``lang=``) when the study offers
    it; any other value leaves the study's default."""
    if asked in app.extensions["xaistudy"].study.languages:
        session[SESSION_KEY] = asked


def init_babel(app: Flask) -> None:
    check_catalogs(app.extensions["xaistudy"].study.languages)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS_DIR)
    Babel(app, locale_selector=lambda: participant_language(app))
